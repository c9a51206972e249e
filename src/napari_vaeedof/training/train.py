"""Training of the Fusion U-Net on cached latents: AdamW, EMA weights, resumable checkpoints."""

from __future__ import annotations

import copy
import json
import math
import time
import tomllib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..models.fusion_unet import FusionUNet, UNetConfig, load_unet, save_unet
from ..models.tiny_ae import load_taef2
from ..models.weights import fusion_unet_path, weight_path
from .dataset import LatentStacks, build_cache

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


class EMA:
    """Exponential moving average of a model's weights (the weights we ship)."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))  # warm start: follow closely at first
        for e, p in zip(self.model.parameters(), model.parameters(), strict=True):
            e.lerp_(p.detach(), 1 - d)


def load_checkpoint(path: Path, model: torch.nn.Module, ema: EMA,
                    opt: torch.optim.Optimizer) -> int:
    """Restore model, EMA and optimiser from ``path``; returns the step it was saved at."""
    state = torch.load(path, weights_only=False)
    model.load_state_dict(state["model"])
    ema.model.load_state_dict(state["ema"])
    opt.load_state_dict(state["opt"])
    return int(state["step"])


def save_checkpoint(path: Path, model: torch.nn.Module, ema: EMA, opt: torch.optim.Optimizer,
                    step: int) -> None:
    """Write model, EMA and optimiser atomically (a temp file moved into place)."""
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "ema": ema.model.state_dict(),
                "opt": opt.state_dict(), "step": step}, tmp)
    tmp.replace(path)


def _lr(step: int, cfg: dict) -> float:
    t = cfg["train"]
    if step < t["warmup"]:
        return t["lr"] * (step + 1) / t["warmup"]
    progress = (step - t["warmup"]) / max(1, t["steps"] - t["warmup"])
    return t["lr"] * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train(cfg: dict, *, resume: bool = True, log=print) -> Path:
    """Run the recipe; returns the path of the exported EMA weights (safetensors)."""
    t, d, m = cfg["train"], cfg["data"], cfg["model"]
    torch.set_num_threads(int(t.get("threads", torch.get_num_threads())))
    out = Path(t["out"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    device = torch.device(t.get("device", "cuda" if torch.cuda.is_available() else "cpu"))

    ae = load_taef2(weight_path("taef2_encoder"), weight_path("taef2_decoder"))
    enc_dtype = getattr(torch, d.get("encode_dtype", "float32"))
    families = d.get("families")
    if families:  # one cache per physics family, n_stacks of each
        paths = [p for fam in families
                 for p in build_cache(ae, Path(d["cache"]), d["first_seed"], d["n_stacks"],
                                      d["size"], enc_dtype, log=log, family=fam,
                                      noisy_share=d.get("noisy_share", 0.5))]
    else:
        paths = build_cache(ae, Path(d["cache"]), d["first_seed"], d["n_stacks"], d["size"],
                            enc_dtype, log=log)
    data = LatentStacks(paths)
    log(f"{len(data)} cached stacks")

    config = UNetConfig(widths=tuple(m["widths"]), attention=tuple(m["attention"]),
                        heads=m["heads"])
    model = FusionUNet(config).to(device)
    if m.get("init"):  # warm start: "shipped" (the packaged EMA weights) or a safetensors path
        init = fusion_unet_path() if m["init"] == "shipped" else Path(m["init"])
        model.load_state_dict(load_unet(init).state_dict())
        log(f"warm start from {init}")
    ema = EMA(model, t["ema"])
    opt = torch.optim.AdamW(model.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
    step = 0
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.exists():
        step = load_checkpoint(ckpt, model, ema, opt)
        log(f"resumed at step {step}")
    rng = np.random.default_rng([t["seed"], step])
    torch.manual_seed(t["seed"] + step)
    log_path = out / "loss.csv"
    if step == 0:
        log_path.write_text("step,loss,lr,seconds\n")
    t0 = time.perf_counter()
    running = []
    while step < t["steps"]:
        x, y = data.batch(rng, t["batch"], t["crop"])
        lr = _lr(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = F.l1_loss(model(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update(model, step)
        step += 1
        running.append(loss.item())
        if step % 50 == 0 or step == t["steps"]:
            mean = float(np.mean(running))
            running.clear()
            elapsed = time.perf_counter() - t0
            with open(log_path, "a") as f:
                f.write(f"{step},{mean:.5f},{lr:.2e},{elapsed:.1f}\n")
            if step % 500 == 0:
                log(f"step {step}: loss {mean:.4f} lr {lr:.1e} ({elapsed:.0f} s)")
        if step % t["checkpoint_every"] == 0 or step == t["steps"]:
            save_checkpoint(ckpt, model, ema, opt, step)
            save_unet(ema.model, out / "fusion_unet.safetensors", _provenance(cfg, step))
    return out / "fusion_unet.safetensors"


def _provenance(cfg: dict, step: int) -> dict[str, str]:
    return {"status": "trained", "steps": str(step), "recipe": json.dumps(cfg),
            "weights": "EMA of the training weights"}
