"""The weight registry against a real HTTP server on 127.0.0.1 serving good and bad files."""

import functools
import http.server
import shutil
import threading

import pytest

from napari_vaeedof.models import weights
from napari_vaeedof.models.weights import REGISTRY, WeightsError, weight_path


@pytest.fixture
def server(tmp_path, weights_dir):
    """Serves good/, corrupt/ (one byte flipped) and truncated/ copies of the TAEF2 files."""
    root = tmp_path / "www"
    for kind in ("good", "corrupt", "truncated"):
        (root / kind).mkdir(parents=True)
        for entry in REGISTRY.values():
            blob = (weights_dir / entry.filename).read_bytes()
            if kind == "corrupt":
                blob = blob[:1000] + bytes([blob[1000] ^ 0xFF]) + blob[1001:]
            elif kind == "truncated":
                blob = blob[: len(blob) // 2]
            (root / kind / entry.filename).write_bytes(blob)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("VAEEDOF_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("VAEEDOF_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "weights"


def test_weights_dir_wins(weights_dir):
    assert weight_path("taef2_encoder") == weights_dir / "taef2_encoder.pth"


def test_download_verifies_and_caches(server, empty_cache, monkeypatch):
    monkeypatch.setenv("VAEEDOF_WEIGHTS_URL", server + "/good/")
    path = weight_path("taef2_decoder")
    assert path == empty_cache / "taef2_decoder.pth"
    assert weights.sha256_of(path) == REGISTRY["taef2_decoder"].sha256
    monkeypatch.setenv("VAEEDOF_WEIGHTS_URL", server + "/missing/")
    assert weight_path("taef2_decoder") == path  # second lookup: from the cache, no network


@pytest.mark.parametrize("kind", ["corrupt", "truncated"])
def test_bad_download_is_refused_and_leaves_nothing(server, empty_cache, monkeypatch, kind):
    monkeypatch.setenv("VAEEDOF_WEIGHTS_URL", f"{server}/{kind}/")
    with pytest.raises(WeightsError, match="sha256" if kind == "corrupt" else "truncated"):
        weight_path("taef2_encoder")
    assert not empty_cache.exists() or not any(empty_cache.iterdir())


def test_no_network_names_the_files_and_the_folder(empty_cache, monkeypatch):
    monkeypatch.setenv("VAEEDOF_WEIGHTS_URL", "http://127.0.0.1:9/")  # discard port: refused
    with pytest.raises(WeightsError) as err:
        weight_path("taef2_encoder")
    message = str(err.value)
    assert "taef2_encoder.pth" in message and "taef2_decoder.pth" in message
    assert str(empty_cache) in message and "VAEEDOF_WEIGHTS_DIR" in message


def test_offline_lookup_without_download(empty_cache):
    with pytest.raises(WeightsError, match="not available offline"):
        weight_path("taef2_encoder", allow_download=False)


def test_wrong_file_in_weights_dir_is_refused(tmp_path, weights_dir, monkeypatch):
    shutil.copy(weights_dir / "taef2_decoder.pth", tmp_path / "taef2_encoder.pth")
    monkeypatch.setenv("VAEEDOF_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsError, match="does not match the pinned sha256"):
        weight_path("taef2_encoder")


def test_packaged_weights_are_verified_before_loading(tmp_path, monkeypatch):
    """The shipped files match the sha256 the release records (update PACKAGED_SHA256 when
    shipping new weights); a damaged copy is refused with a message saying what to do."""
    assert weights.fusion_unet_path() == weights.FUSION_UNET_FILE
    assert weights.selection_net_path() == weights.SELECTION_NET_FILE
    damaged = tmp_path / "selection_net.safetensors"
    blob = bytearray(weights.SELECTION_NET_FILE.read_bytes())
    blob[-1] ^= 0xFF
    damaged.write_bytes(bytes(blob))
    monkeypatch.setattr(weights, "SELECTION_NET_FILE", damaged)
    with pytest.raises(WeightsError, match=r"damaged.*reinstall"):
        weights.selection_net_path()

