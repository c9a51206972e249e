"""`napari-vaeedof train`: the training command."""

from __future__ import annotations

import argparse
from pathlib import Path

RECIPES = {"unet": "default.toml", "selection": "selection.toml", "families": "families.toml",
           "families-pixel": "families_pixel.toml",
           "selection-families": "selection_families.toml"}


def _train(args: argparse.Namespace) -> int:
    from .train import load_config, train

    config = args.config
    if config is not None and str(config) in RECIPES:
        config = Path(__file__).with_name(RECIPES[str(config)])
    cfg = load_config(config, args.set)
    if cfg.get("model", {}).get("kind") == "selection":
        from .train_selection import train_selection

        path = train_selection(cfg, resume=not args.fresh)
    else:
        path = train(cfg, resume=not args.fresh)
    print(f"EMA weights: {path}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("train", help="train the Fusion U-Net or the selection head on "
                       "synthetic stacks")
    p.add_argument("--config", type=Path,
                   help="TOML recipe, or a shipped one: 'unet' (the default), 'families', "
                   "'families-pixel', 'selection', 'selection-families'")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a recipe value, e.g. --set train.steps=200")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    p.set_defaults(func=_train)
