"""The `napari-vaeedof` command: fuse stacks, manage weights, train and evaluate."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .engine.stack import StackError
from .models.weights import WeightsError


def _fuse(args: argparse.Namespace) -> int:
    from .api import fuse_stack
    from .io import StackFile, read_stack, write_tiff

    if args.sample:
        from ._sample_data import sample_stack

        stack = StackFile(sample_stack(), "ZYXS", 0, 3, source=["synthetic sample (seed 0)"])
    elif args.inputs:
        stack = read_stack(args.inputs)
    else:
        raise StackError("Give input files or a folder, or --sample for the bundled sample stack.")
    axis = args.axis if args.axis is not None else stack.axis
    channel_axis = args.channel_axis if args.channel_axis is not None else stack.channel_axis
    t0 = time.perf_counter()

    def report(done: int, total: int) -> None:
        if not args.quiet:
            print(f"\rtiles {done}/{total}", end="" if done < total else "\n", file=sys.stderr)

    maps = {"error": args.error_map, "depth": args.depth_map,
            "confidence": args.confidence_map, "fill": args.fill_map}
    if args.mode == "latent" and any(maps[k] for k in ("depth", "confidence", "fill")):
        raise StackError("--depth-map, --confidence-map and --fill-map need --mode pixel.")
    n_planes = stack.data.shape[axis]
    z_positions = None if stack.z_spacing is None else stack.z_spacing * np.arange(n_planes)
    result = fuse_stack(stack.data, axis=axis, channel_axis=channel_axis,
                        tile_size=args.tile_size, overlap=args.overlap, device=args.device,
                        precision=args.precision, error_map=args.error_map is not None,
                        unet_path=args.unet, z_positions=z_positions, progress=report,
                        **({"mode": args.mode} if args.mode else {}))
    elapsed = time.perf_counter() - t0
    meta = {**result.metadata, "inputs": stack.source, "seconds": round(elapsed, 3)}
    for name, path in maps.items():
        if path is None:
            continue
        extra = {"output": name}
        if name == "depth":
            extra["depth_unit"] = stack.unit if stack.z_spacing is not None else "plane index"
        write_tiff(path, getattr(result, name), pixel_size=stack.pixel_size, unit=stack.unit,
                   info=json.dumps({**meta, **extra}))
    write_tiff(args.output, result.image, pixel_size=stack.pixel_size, unit=stack.unit,
               info=json.dumps({**meta, "output": "fused"}))
    if not args.quiet:
        shape = "x".join(map(str, stack.data.shape))
        print(f"fused {shape} {stack.data.dtype} in {elapsed:.1f} s on {meta['device']} "
              f"-> {args.output}", file=sys.stderr)
    return 0


def _weights(args: argparse.Namespace) -> int:
    from .models.weights import (
        REGISTRY,
        cache_dir,
        fusion_unet_path,
        selection_net_path,
        weight_path,
    )

    for name in REGISTRY:
        print(f"{name}: {weight_path(name, allow_download=args.download)}")
    print(f"fusion_unet: {fusion_unet_path()}")
    print(f"selection_net: {selection_net_path()}")
    print(f"cache: {cache_dir()}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluation.heldout import run, to_markdown, write

    result = run(args.n, args.size, args.unet, log=lambda m: print(m, file=sys.stderr))
    write(result, args.out)
    print(to_markdown(result))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-vaeedof", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    fuse = sub.add_parser("fuse", help="fuse a focus stack into one all-in-focus TIFF")
    fuse.add_argument("inputs", nargs="*", help="a multi-page TIFF/OME-TIFF, a folder of "
                      "planes, or several plane files in focus order")
    fuse.add_argument("-o", "--output", required=True, type=Path, help="fused image (.tif)")
    fuse.add_argument("--mode", choices=["pixel", "latent"],
                      help="pixel: the planes' own pixels where in focus, latent fusion where "
                      "no plane holds the content (the default); latent: the paper's pure "
                      "latent fusion")
    fuse.add_argument("--error-map", type=Path, help="also write the reconstruction-error map")
    fuse.add_argument("--depth-map", type=Path, help="also write the depth map (focus position "
                      "per pixel: z units from the file's metadata, else plane index)")
    fuse.add_argument("--confidence-map", type=Path, help="also write the depth confidence")
    fuse.add_argument("--fill-map", type=Path, help="also write the fill map (1 where content "
                      "was synthesised, 0 where it is the planes' own pixels)")
    fuse.add_argument("--sample", action="store_true", help="fuse the bundled synthetic stack")
    fuse.add_argument("--axis", type=int, help="focus axis (default: from the file, else 0)")
    fuse.add_argument("--channel-axis", type=int, help="channel axis of a multichannel stack")
    fuse.add_argument("--tile-size", type=int, default=512)
    fuse.add_argument("--overlap", type=int, help="tile overlap in px (default: tile/4)")
    fuse.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    fuse.add_argument("--precision", default="auto",
                      choices=["auto", "float32", "float16", "bfloat16"])
    fuse.add_argument("--unet", type=Path, help="Fusion U-Net weights (default: the shipped ones)")
    fuse.add_argument("-q", "--quiet", action="store_true")
    fuse.set_defaults(func=_fuse)

    weights = sub.add_parser("weights", help="show (and fetch) the model weights")
    weights.add_argument("--download", action="store_true", help="download missing files")
    weights.set_defaults(func=_weights)

    evaluate = sub.add_parser("evaluate", help="held-out synthetic evaluation beside baselines")
    evaluate.add_argument("--n", type=int, default=50, help="number of held-out stacks")
    evaluate.add_argument("--size", type=int, default=256, help="plane size in px")
    evaluate.add_argument("--unet", type=Path, help="Fusion U-Net weights to evaluate")
    evaluate.add_argument("--out", type=Path, default=Path("docs/evaluation"))
    evaluate.set_defaults(func=_evaluate)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands():
    from .training.cli import register as register_train

    return [register_train]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (StackError, WeightsError, ValueError, FileNotFoundError) as exc:
        print(f"napari-vaeedof {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
