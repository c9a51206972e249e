"""Training of the Fusion U-Net on cached latents: AdamW, EMA weights, resumable checkpoints."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..models.fusion_unet import FusionUNet, UNetConfig, load_unet, save_unet
from ..models.tiny_ae import load_taef2
from ..models.weights import fusion_unet_path, weight_path
from .dataset import LatentStacks, build_cache
from .loop import start_run, train_loop, training_device

DEFAULT_CONFIG = Path(__file__).with_name("default.toml")


def load_config(path: Path | None = None, overrides: list[str] | None = None) -> dict:
    """The TOML recipe with ``section.key=value`` overrides (values parsed as TOML)."""
    with open(path or DEFAULT_CONFIG, "rb") as f:
        cfg = tomllib.load(f)
    for item in overrides or []:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        if not name or section not in cfg:
            raise ValueError(f"override {item!r} must look like section.key=value")
        try:
            cfg[section][name] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            cfg[section][name] = value
    return cfg


def train(cfg: dict, *, resume: bool = True, log=print) -> Path:
    """Run the recipe; returns the path of the exported EMA weights (safetensors)."""
    t, d, m = cfg["train"], cfg["data"], cfg["model"]
    out = start_run(cfg)
    device = training_device(t)

    # the encoder prepares the data on the training device, its decoder scores the pixel term
    ae = load_taef2(weight_path("taef2_encoder"), weight_path("taef2_decoder")).to(device)
    enc_dtype = getattr(torch, d.get("encode_dtype", "float32"))
    families = d.get("families")
    if families:  # one cache per physics family, n_stacks of each
        paths = [p for fam in families
                 for p in build_cache(ae, Path(d["cache"]), d["first_seed"], d["n_stacks"],
                                      d["size"], enc_dtype, log=log, family=fam,
                                      noisy_share=d.get("noisy_share", 0.5),
                                      workers=d.get("workers", 1))]
    else:
        paths = build_cache(ae, Path(d["cache"]), d["first_seed"], d["n_stacks"], d["size"],
                            enc_dtype, log=log, workers=d.get("workers", 1))
    data = LatentStacks(paths)
    log(f"{len(data)} cached stacks")

    config = UNetConfig(widths=tuple(m["widths"]), attention=tuple(m["attention"]),
                        heads=m["heads"])
    model = FusionUNet(config).to(device)
    init = None
    if t.get("init"):  # warm start: "shipped" (the packaged EMA weights) or a safetensors path
        init_path = fusion_unet_path() if t["init"] == "shipped" else Path(t["init"])
        init = load_unet(init_path, device=device)

    pixel_weight, pixel_crop = float(t.get("pixel_weight", 0.0)), int(t.get("pixel_crop", 8))
    if pixel_weight > 0 and not 1 <= pixel_crop <= t["crop"]:
        raise ValueError(f"train.pixel_crop must be 1 to train.crop ({t['crop']}) latent cells, "
                         f"got {pixel_crop}")

    def losses(rng: np.random.Generator) -> dict[str, torch.Tensor]:
        x, y = data.batch(rng, t["batch"], t["crop"])
        pred, y = model(x.to(device)), y.to(device)
        latent = F.l1_loss(pred, y)
        if pixel_weight <= 0:
            return {"loss": latent}
        # the error where it shows: both latents of one window decoded by the frozen decoder
        # (the same window, so the decoder's border effects cancel), L1 in [0, 1] pixel units
        i, j = (int(v) for v in rng.integers(0, t["crop"] - pixel_crop + 1, size=2))
        window = (Ellipsis, slice(i, i + pixel_crop), slice(j, j + pixel_crop))
        with torch.no_grad():
            target = ae.decode(y[window])
        pixel = F.l1_loss(ae.decode(pred[window]), target)
        return {"loss": latent + pixel_weight * pixel, "latent": latent, "pixel": pixel}

    def export(ema_model: torch.nn.Module, step: int) -> None:
        save_unet(ema_model, out / "fusion_unet.safetensors", _provenance(cfg, step))

    train_loop(t, model, losses, export, init=init, init_name=str(t.get("init")),
               resume=resume, log=log)
    return out / "fusion_unet.safetensors"


def _provenance(cfg: dict, step: int) -> dict[str, str]:
    return {"status": "trained", "steps": str(step), "recipe": json.dumps(cfg),
            "weights": "EMA of the training weights"}
