import numpy as np

from napari_vaeedof.engine.tiling import TileGrid
from napari_vaeedof.evaluation.seams import border_lines, seam_report


def _textured(size: int) -> np.ndarray:
    from skimage import data, transform

    return transform.resize(data.camera(), (size, size)).astype(np.float32) * 255


def test_border_lines_are_the_inner_tile_edges():
    grid = TileGrid.build(1024, 1024, 256, 64)
    assert border_lines(grid.ys, 1024) == [192, 256, 384, 448, 576, 640, 768, 832]


def test_identical_outputs_have_no_seam():
    image = _textured(1024)
    report = seam_report(image, image, TileGrid.build(1024, 1024, 256, 64))
    assert report["mean_abs_diff"] == 0 and report["border_excess"] == 1


def test_a_step_of_two_grey_levels_at_tile_borders_is_detected():
    """The bound used for real outputs (border_excess < 1.05) fails for a 2/255 seam."""
    image = _textured(1024)
    grid = TileGrid.build(1024, 1024, 256, 64)
    stepped = image.copy()
    for k, (y0, y1, x0, x1) in enumerate(grid.boxes):  # tiles alternately 2 levels up/down
        stepped[y0:y1, x0:x1] = image[y0:y1, x0:x1] + (2 if k % 2 else -2)
    report = seam_report(stepped, image, grid)
    assert report["border_excess"] > 1.05
