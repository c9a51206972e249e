"""`napari-vaeedof train`: the training command."""

from __future__ import annotations

import argparse
from pathlib import Path


def _train(args: argparse.Namespace) -> int:
    from .train import load_config, train

    cfg = load_config(args.config, args.set)
    path = train(cfg, resume=not args.fresh)
    print(f"EMA weights: {path}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train the Fusion U-Net on synthetic stacks")
    p.add_argument("--config", type=Path, help="TOML recipe (default: the shipped one)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a recipe value, e.g. --set train.steps=200")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    p.set_defaults(func=_train)
