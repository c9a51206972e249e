"""The `napari-vaeedof` command: fuse stacks, manage weights, train and evaluate."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from .engine.options import ALIGNMENTS, MODES, MULTIPLE, PRECISIONS
from .engine.stack import StackError
from .errors import USER_ERRORS, system_errors

#: The optional maps beside the fused image.
MAPS = ("error", "depth", "confidence", "fill")


def _check_maps(mode: str | None, maps: dict, s: str = "") -> None:
    if mode == "latent" and any(maps.get(k) for k in ("depth", "confidence", "fill")):
        raise StackError(f"--depth-map{s}, --confidence-map{s} and --fill-map{s} need "
                         f"--mode pixel.")


def fusion_options(args: argparse.Namespace):
    """The command's `FusionOptions` (checked: a bad value stops the command before any
    work); the error map is decided by the maps asked for."""
    from .engine.options import DEFAULT_MODE, FusionOptions

    return FusionOptions(mode=args.mode or DEFAULT_MODE, tile_size=args.tile_size,
                         overlap=args.overlap, device=args.device, precision=args.precision,
                         unet_path=args.unet, align=args.align, match_gain=args.match_gain,
                         fill=args.fill)


def _fuse_and_write(stack, args: argparse.Namespace, output: Path, maps: dict,
                    progress=None) -> tuple[float, dict]:
    """The work of one stack for `fuse` and `batch`: fuse it with the command's options and
    write the image and the asked-for maps ({name: path or None}) all or nothing.
    Returns (seconds, metadata)."""
    from .api import fuse_stack, fuse_to_zarr
    from .engine.stack import resolve_layout
    from .io import is_zarr_path, write_tiffs

    axis = args.axis if args.axis is not None else stack.axis
    channel_axis = args.channel_axis if args.channel_axis is not None else stack.channel_axis
    layout = resolve_layout(stack.data.shape, stack.data.dtype, axis=axis,
                            channel_axis=channel_axis)
    t0 = time.perf_counter()
    n_planes = stack.data.shape[layout.axis]
    z_positions = None if stack.z_spacing is None else stack.z_spacing * np.arange(n_planes)
    options = fusion_options(args).kwargs()
    del options["error_map"]  # from the maps asked for
    placement = dict(axis=axis, channel_axis=channel_axis, z_positions=z_positions)
    scheduler = getattr(args, "tile_scheduler", None)
    where = {"pixel_size": stack.pixel_size, "unit": stack.unit}
    if is_zarr_path(output):  # streamed to disk chunk by chunk, never whole in memory
        meta = fuse_to_zarr(stack.data, output, maps=maps, **where,
                            info={"inputs": stack.source}, scheduler=scheduler or "sync",
                            **placement, **options)
        elapsed = time.perf_counter() - t0
        return elapsed, {**meta, "inputs": stack.source, "seconds": round(elapsed, 3)}
    result = fuse_stack(stack.data, error_map=maps.get("error") is not None,
                        progress=None if scheduler else progress,
                        scheduler=scheduler or "sync", **placement, **options)
    elapsed = time.perf_counter() - t0
    meta = {**result.metadata, "inputs": stack.source, "seconds": round(elapsed, 3)}
    outputs = [(output, result.image, {**where, "info": json.dumps({**meta, "output": "fused"})})]
    for name, path in maps.items():
        if path is None:
            continue
        extra = {"output": name}
        if name == "depth":
            extra["depth_unit"] = stack.unit if stack.z_spacing is not None else "plane index"
        outputs.append((path, getattr(result, name), {**where,
                                                      "info": json.dumps({**meta, **extra})}))
    write_tiffs(outputs)  # all or nothing
    return elapsed, meta


def _fuse(args: argparse.Namespace) -> int:
    from .cluster import is_address
    from .io import (
        OutputPathError,
        StackFile,
        check_outputs,
        expand_inputs,
        is_zarr_path,
        read_stack,
    )

    maps = {name: getattr(args, f"{name}_map") for name in MAPS}
    _check_maps(args.mode, maps)
    fusion_options(args)
    if not args.sample and not args.inputs:
        raise StackError("Give input files or a folder, or --sample for the bundled sample stack.")
    if args.tile_scheduler is not None and not is_address(args.tile_scheduler):
        raise ValueError(f"--scheduler takes the address of a dask.distributed scheduler "
                         f"(tcp://host:8786), not {args.tile_scheduler!r}.")
    zarr_out = is_zarr_path(args.output)
    odd = [f"--{k}-map {v}" for k, v in maps.items() if v is not None and is_zarr_path(v) !=
           zarr_out]
    if odd:
        raise OutputPathError(f"{', '.join(odd)}: maps are written in the format of -o "
                              f"{args.output} ({'.ome.zarr' if zarr_out else '.tif'}).")
    # Every output path is checked once, before any work.
    inputs = [] if args.sample else expand_inputs(args.inputs)
    check_outputs({"-o": args.output, **{f"--{k}-map": v for k, v in maps.items()}}, inputs)
    if args.sample:
        from ._sample_data import sample_stack

        stack = StackFile(sample_stack(), "ZYXS", 0, 3, source=["synthetic sample (seed 0)"])
    else:
        stack = read_stack(inputs, samples_as_planes=args.samples_as_planes, lazy=zarr_out)
    report = None if args.quiet or zarr_out or args.tile_scheduler else \
        _progress_printer(sys.stderr)
    elapsed, meta = _fuse_and_write(stack, args, args.output, maps, progress=report)
    if not args.quiet:
        shape = "x".join(map(str, stack.data.shape))
        print(f"fused {shape} {stack.data.dtype} in {elapsed:.1f} s on {meta['device']} "
              f"-> {args.output}", file=sys.stderr)
    return 0


def _base_name(path: Path) -> str:
    """`stack.ome.tif` -> `stack`, folder `planes/` -> `planes`."""
    from .io import IMAGE_SUFFIXES

    if path.is_dir():
        return path.name or path.resolve().name
    name = path.name
    while Path(name).suffix.lower() in IMAGE_SUFFIXES | {".ome"} and Path(name).stem:
        name = Path(name).stem
    return name


def _complete(paths: list[Path]) -> bool:
    """Every output is there and opens as a TIFF with at least one image, or is an OME-Zarr
    store with its image array (written atomically, so one there is whole unless something
    else wrote it)."""
    import tifffile

    from .io import is_zarr_path

    try:
        for path in paths:
            if is_zarr_path(path):
                if not (path / "zarr.json").is_file() or not (path / "0" / "zarr.json").is_file():
                    return False
                continue
            with tifffile.TiffFile(path) as tif:
                if not tif.series or 0 in tif.series[0].shape:
                    return False
    except Exception:  # missing, truncated, not a TIFF: fuse it again
        return False
    return True


def _batch_job(given: str, output: Path, maps: dict, args: argparse.Namespace
               ) -> tuple[str, str]:
    """One stack of a batch, where it runs (here or on a dask worker): read, fuse, write.
    Returns ("fused", "<seconds> s"), or ("user" | "system", the one-line reason); a bug
    raises."""
    from .io import check_outputs, expand_inputs, read_stack

    try:
        inputs = expand_inputs([given])
        check_outputs({"output": output, **{f"{m} map": p for m, p in maps.items()}}, inputs)
        stack = read_stack(inputs, samples_as_planes=args.samples_as_planes, lazy=args.zarr)
        elapsed, _meta = _fuse_and_write(stack, args, output, maps)
    except USER_ERRORS as exc:
        return "user", _one_line(exc)
    except system_errors() as exc:
        return "system", f"{type(exc).__name__}: {_one_line(exc)}"
    return "fused", f"{elapsed:.1f} s"


def _run_batch(todo: list, args: argparse.Namespace):
    """Yield (i, name, output, _batch_job's result) per stack: in order here, or as they
    finish on the dask cluster of ``--scheduler`` (one task per stack; the workers read the
    inputs and write the outputs, so both must be on a file system they share)."""
    if args.scheduler is None:
        for i, given, name, output, maps in todo:
            yield i, name, output, _batch_job(given, output, maps, args)
        return
    from .cluster import connect

    with connect(args.scheduler) as client:
        from distributed import as_completed

        remote = argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "func"})
        if remote.unet is not None:  # workers may start elsewhere
            remote.unet = Path(remote.unet).resolve()
        futures = {client.submit(_batch_job, str(Path(given).resolve()), output.resolve(),
                                 {m: p and p.resolve() for m, p in maps.items()}, remote,
                                 pure=False): (i, name, output)
                   for i, given, name, output, maps in todo}
        for future in as_completed(futures):
            yield *futures[future], future.result()


def _batch(args: argparse.Namespace) -> int:
    """Each input is one stack (a stack file or a folder of planes) fused into
    OUT_DIR/NAME.tif; one line per stack on stderr, a failed stack does not stop the others.
    Exit 0 if none failed, 1 if any failed on the machine (files, memory), else 2."""
    from .cluster import is_address
    from .io import OutputPathError

    wanted = [name for name in MAPS if getattr(args, f"{name}_maps")]
    _check_maps(args.mode, {name: True for name in wanted}, "s")
    fusion_options(args)
    if args.scheduler is not None and not is_address(args.scheduler):
        raise ValueError(f"--scheduler takes the address of a dask.distributed scheduler "
                         f"(tcp://host:8786), not {args.scheduler!r}.")
    out_dir: Path = args.out_dir
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputPathError(f"--out-dir {out_dir} is a file; give a folder.")
    jobs, seen = [], {}
    for given in args.inputs:
        path = Path(given)
        name = _base_name(path)
        key = name.casefold()  # one file on a case-insensitive file system
        if key in seen:
            raise OutputPathError(f"{seen[key]} and {given} would both be written to "
                                  f"{out_dir / (name + '.tif')}; rename one or fuse them in "
                                  f"separate batches.")
        seen[key] = given
        ext = ".ome.zarr" if args.zarr else ".tif"
        maps = {m: (out_dir / f"{name}_{m}{ext}" if m in wanted else None) for m in MAPS}
        jobs.append((given, name, out_dir / f"{name}{ext}", maps))
    out_dir.mkdir(parents=True, exist_ok=True)

    n = len(jobs)
    counts = {"fused": 0, "skipped": 0, "failed": 0}
    system_failed = False
    todo = []
    for i, (given, name, output, maps) in enumerate(jobs, 1):
        targets = [output, *(p for p in maps.values() if p is not None)]
        is_input = Path(given).is_file() and output.is_file() and output.samefile(given)
        if not args.overwrite and not is_input and _complete(targets):
            counts["skipped"] += 1
            if not args.quiet:
                print(f"[{i}/{n}] {name}: skipped (exists) {output}", file=sys.stderr,
                      flush=True)
            continue
        todo.append((i, given, name, output, maps))
    for i, name, output, (status, message) in _run_batch(todo, args):
        head = f"[{i}/{n}] {name}:"
        if status == "fused":
            counts["fused"] += 1
            if not args.quiet:
                print(f"{head} fused in {message} -> {output}", file=sys.stderr, flush=True)
        else:
            counts["failed"] += 1
            system_failed |= status == "system"
            print(f"{head} failed: {message}", file=sys.stderr, flush=True)
    if not args.quiet or counts["failed"]:
        print(f"{n} stack{'s' if n != 1 else ''}: {counts['fused']} fused, "
              f"{counts['skipped']} skipped, {counts['failed']} failed", file=sys.stderr)
    if counts["failed"]:
        return 1 if system_failed else 2
    return 0


def _progress_printer(stream):
    """A ``progress`` callback for `fuse_stack`: on a terminal one line rewritten in place at
    every step; piped or redirected, one plain line per tile (no carriage returns)."""
    tty = stream.isatty()
    width = 0

    def report(p) -> None:
        nonlocal width
        if tty:
            text = str(p)
            end = "\n" if p.event == "tile" and p.tiles_done == p.n_tiles else ""
            print("\r" + text.ljust(width), end=end, file=stream, flush=True)
            width = 0 if end else len(text)
        elif p.event == "tile":
            print(str(p), file=stream, flush=True)

    return report


def _weights(args: argparse.Namespace) -> int:
    """Status of every weights file: found or missing, where it looked, what to download.
    Exits 0 unless --fetch was asked for and could not get a file."""
    import os

    from .models.weights import (
        BASE_URL,
        FUSION_UNET_FILE,
        REGISTRY,
        SELECTION_NET_FILE,
        WeightsError,
        cache_dir,
        fusion_unet_path,
        lookup,
        selection_net_path,
        weight_path,
    )

    if args.fetch:
        for name in REGISTRY:
            weight_path(name)  # downloads what is missing (a WeightsError says why it failed)
    missing = []
    print("TAEF2 VAE (MIT, madebyollin/taesd; downloaded once, sha256-checked):")
    for name, entry in REGISTRY.items():
        places = lookup(name)
        first = next(((path, state) for path, state in places if state != "not there"), None)
        if first is not None and first[1] == "ok":
            print(f"  {entry.filename}: found {first[0]} (sha256 verified)")
            continue
        missing.append(entry)
        if first is None:
            print(f"  {entry.filename}: MISSING")
        else:
            print(f"  {entry.filename}: REFUSED {first[0]}: {first[1]}")
        for path, state in places:
            print(f"      looked in {path.parent}: {state}")
    print("Shipped with the package:")
    for label, path, check in (("Fusion U-Net", FUSION_UNET_FILE, fusion_unet_path),
                               ("selection head", SELECTION_NET_FILE, selection_net_path)):
        try:
            check()
            state = "found (sha256 verified)"
        except WeightsError:
            state = ("DAMAGED (sha256 differs; reinstall napari-vaeedof)" if path.is_file()
                     else "MISSING (reinstall napari-vaeedof)")
        print(f"  {label}: {state} {path}")
    env = os.environ.get("VAEEDOF_WEIGHTS_DIR")
    print(f"VAEEDOF_WEIGHTS_DIR: {env if env else 'not set'}")
    print(f"download cache: {cache_dir()}")
    if missing:
        size = sum(e.size for e in missing) / 1e6
        print(f"\n{len(missing)} file(s) missing ({size:.1f} MB). The first fusion downloads them; "
              f"to fetch them now: napari-vaeedof weights --fetch. Offline, download")
        for entry in missing:
            print(f"  {BASE_URL}{entry.filename}")
        print(f"into {cache_dir()}, or into any folder and set VAEEDOF_WEIGHTS_DIR to it.")
    else:
        print("\nAll weights are in place.")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluation import heldout

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    if args.legacy:
        result = heldout.run(args.n or 50, args.size, args.unet, log=log)
        heldout.write(result, args.out)
        print(heldout.to_markdown(result))
        return 0
    families = heldout.FAMILIES if "all" in args.family else tuple(dict.fromkeys(args.family))
    result = heldout.evaluate_families(heldout.method_table(args.unet), families,
                                       args.n or 6, args.size, args.noise, log=log)
    heldout.write_families(result, args.out)
    print(heldout.families_markdown(result))
    return 0


def _add_fuse_options(parser: argparse.ArgumentParser) -> None:
    """The options of one stack's fusion, shared by `fuse` and `batch`."""
    parser.add_argument("--mode", choices=MODES,
                        help="pixel: the planes' own pixels where in focus, latent fusion where "
                        "no plane holds the content (the default); latent: the paper's pure "
                        "latent fusion")
    parser.add_argument("--no-fill", dest="fill", action="store_false",
                        help="pixel mode: never synthesise content; every output value is a "
                        "blend of the planes' own values, and the VAE does not run (faster "
                        "where much of the sample is out of focus in every plane)")
    parser.add_argument("--axis", type=int, help="focus axis (default: from the file, else 0)")
    parser.add_argument("--channel-axis", type=int, help="channel axis of a multichannel stack")
    parser.add_argument("--samples-as-planes", action="store_true", help="a TIFF without a focus "
                        "axis whose samples are the planes (axes SYX: tifffile writes a (3, Y, X) "
                        "array so)")
    parser.add_argument("--tile-size", type=int, help=f"tile side in px, a multiple of {MULTIPLE} "
                        "(default: from the plane size, up to 768: a plane that fits is one tile)")
    parser.add_argument("--overlap", type=int, help="tile overlap in px (default: tile/4)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--precision", default="auto",
                        choices=PRECISIONS)
    parser.add_argument("--unet", type=Path,
                        help="Fusion U-Net weights (default: the shipped ones)")
    parser.add_argument("--align", choices=ALIGNMENTS, default="none",
                        help="register the planes to the middle one before fusing: translation "
                        "(drift), similarity (drift and focus breathing; for handheld or macro "
                        "stacks) or affine (default: none)")
    parser.add_argument("--match-gain", action="store_true",
                        help="also match each plane's brightness to the middle one's (exposure "
                        "flicker)")
    parser.add_argument("-q", "--quiet", action="store_true")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-vaeedof", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    fuse = sub.add_parser("fuse", help="fuse a focus stack into one all-in-focus TIFF")
    fuse.add_argument("inputs", nargs="*", help="a multi-page TIFF/OME-TIFF, a folder of "
                      "planes, or several plane files in focus order")
    fuse.add_argument("-o", "--output", required=True, type=Path,
                      help="fused image: .tif, or a .ome.zarr store (written chunk by chunk, "
                      "the stack read lazily: for planes larger than memory; needs the "
                      "distributed extra); maps in the same format")
    fuse.add_argument("--error-map", type=Path,
                      help="also write the error map (pixel mode: departure from the planes; "
                      "latent mode: VAE reconstruction error)")
    fuse.add_argument("--depth-map", type=Path, help="also write the depth map (focus position "
                      "per pixel: z units from the file's metadata, else plane index)")
    fuse.add_argument("--confidence-map", type=Path, help="also write the depth confidence")
    fuse.add_argument("--fill-map", type=Path, help="also write the fill map (1 where content "
                      "was synthesised, 0 where it is the planes' own pixels)")
    fuse.add_argument("--sample", action="store_true", help="fuse the bundled synthetic stack")
    fuse.add_argument("--scheduler", dest="tile_scheduler", metavar="ADDRESS",
                      help="run the tiles on a dask.distributed cluster (tcp://host:8786; needs "
                      "the distributed extra); no progress bar")
    _add_fuse_options(fuse)
    fuse.set_defaults(func=_fuse)

    batch = sub.add_parser("batch", help="fuse many stacks, one output each, into a folder")
    batch.add_argument("inputs", nargs="+", help="stacks: each a multi-page TIFF/OME-TIFF or a "
                       "folder of planes; each is fused into OUT_DIR/NAME.tif, NAME the file's "
                       "or folder's name without its extensions")
    batch.add_argument("--out-dir", required=True, type=Path,
                       help="folder for the fused images (created if missing)")
    for name in MAPS:
        batch.add_argument(f"--{name}-maps", action="store_true",
                           help=f"also write each stack's {name} map as NAME_{name}.tif")
    batch.add_argument("--scheduler", metavar="ADDRESS",
                       help="run the stacks on a dask.distributed cluster (tcp://host:8786; "
                       "needs the distributed extra), one task per stack; inputs and --out-dir "
                       "must be on a file system the workers share")
    batch.add_argument("--zarr", action="store_true", help="write NAME.ome.zarr stores "
                       "(chunk by chunk, stacks read lazily) instead of TIFFs")
    batch.add_argument("--overwrite", action="store_true", help="fuse again the stacks whose "
                       "outputs exist (default: skip them)")
    _add_fuse_options(batch)
    batch.set_defaults(func=_batch)

    weights = sub.add_parser("weights", help="where the model weights are, what is missing "
                             "(exits 0); --fetch downloads what is missing")
    weights.add_argument("--fetch", "--download", dest="fetch", action="store_true",
                         help="download missing files (exit 2 if that fails)")
    weights.set_defaults(func=_weights)

    from .data.families import FAMILIES

    evaluate = sub.add_parser("evaluate", help="held-out synthetic evaluation beside baselines, "
                              "by physics family (writes families.json and families.md)")
    evaluate.add_argument("--family", nargs="+", default=["all"], choices=[*FAMILIES, "all"],
                          help="families to evaluate (default: all)")
    evaluate.add_argument("--noise", choices=["none", "noisy", "both"], default="both",
                          help="noise-free planes, noisy planes or both (always scored against "
                          "the noise-free truth)")
    evaluate.add_argument("--n", type=int, help="held-out stacks per family (default 6; "
                          "50 with --legacy)")
    evaluate.add_argument("--size", type=int, default=256, help="plane size in px")
    evaluate.add_argument("--unet", type=Path, help="Fusion U-Net weights to evaluate")
    evaluate.add_argument("--out", type=Path, default=Path("."),
                          help="folder for the tables (default: the current folder)")
    evaluate.add_argument("--legacy", action="store_true", help="the original held-out set "
                          "(make_stack, noisy layered scenes; writes heldout.json and heldout.md)")
    evaluate.set_defaults(func=_evaluate)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands():
    from .training.cli import register as register_train

    return [register_train]


def _one_line(message) -> str:
    return " ".join(str(message).split())


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every error meant for the user, and Ctrl-C, becomes one line on stderr
    and a non-zero exit: 2 for the command's input, 1 for the machine, 130 when interrupted."""
    args = build_parser().parse_args(argv)
    prefix = f"napari-vaeedof {args.command}"
    # tifffile logs each oddity of a damaged file on its own line; the error says what matters.
    logging.getLogger("tifffile").setLevel(logging.ERROR)

    def show(message, category, *_args, **_kwargs) -> None:
        print(f"{prefix}: warning: {_one_line(message)}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.simplefilter("ignore", category)  # libraries' notes to developers
        try:
            return args.func(args)
        except KeyboardInterrupt:
            newline = "\n" if sys.stderr.isatty() else ""  # after a progress line
            print(f"{newline}{prefix}: interrupted", file=sys.stderr)
            return 130
        except USER_ERRORS as exc:  # what to change in the command
            print(f"{prefix}: error: {_one_line(exc)}", file=sys.stderr)
            return 2
        except system_errors() as exc:  # the machine: files, memory
            print(f"{prefix}: error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
