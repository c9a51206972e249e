"""Training of the selection head on prepared stacks: AdamW, EMA weights, resumable checkpoints.

Per example the head's selection and fill logits are composed exactly as at inference
(`engine.compose`), and the loss is the composite's L1 to the ground truth, plus the negative
log of the weight given to planes that hold the pixel (the free "best plane" target), plus a
binary cross-entropy of the fill logit against where no plane holds the pixel and the decoded
latent fusion is closer to the truth than every plane.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.compose import compose, pixel_blend, sharpness_features
from ..engine.runtime import load_models
from ..models.selection_net import SelectionConfig, SelectionNet, load_selection, save_selection
from ..models.weights import selection_net_path
from .pixel_data import PixelStacks, build_pixel_cache
from .train import EMA, _lr, load_checkpoint, save_checkpoint


def example_losses(model: SelectionNet, ex: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The three loss terms of one example (see the module docstring)."""
    planes, truth, decoded, good = ex["planes"], ex["truth"], ex["decoded"], ex["good"]
    logits, fill_logit = model(ex["latents"][None], sharpness_features(planes)[None])
    blend, weights, fill = pixel_blend(logits[0], fill_logit[0], planes)
    out = compose(blend, decoded, fill)
    pixel = (out - truth).abs().mean()

    any_good, all_good = good.any(0), good.all(0)
    informative = any_good & ~all_good
    p_good = (weights * good).sum(0)
    select = -torch.log(p_good + 1e-4)[informative].mean() if informative.any() \
        else pixel.new_zeros(())

    err_decoded = (decoded - truth).abs().amax(0)
    err_planes = (planes - truth[None]).abs().amax(1).amin(0)
    target = (~any_good & (err_decoded < err_planes)).float()
    target = F.avg_pool2d(target[None, None], 8)[0, 0]
    fill_loss = F.binary_cross_entropy_with_logits(fill_logit[0], target)
    return {"pixel": pixel, "select": select, "fill": fill_loss}


def train_selection(cfg: dict, *, resume: bool = True, log=print) -> Path:
    """Run the selection recipe; returns the path of the exported EMA weights (safetensors)."""
    t, d, m = cfg["train"], cfg["data"], cfg["model"]
    torch.set_num_threads(int(t.get("threads", torch.get_num_threads())))
    out = Path(t["out"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))

    models = load_models("cpu", "float32")
    paths = build_pixel_cache(models, Path(d["cache"]), d["first_seed"], d["n_stacks"],
                              d["size"], log=log)
    data = PixelStacks(paths)
    log(f"{len(data)} prepared stacks")

    model = SelectionNet(SelectionConfig(width=m["width"]))
    ema = EMA(model, t["ema"])
    opt = torch.optim.AdamW(model.parameters(), lr=t["lr"], weight_decay=t["weight_decay"])
    weights = {k: float(t[f"loss_{k}"]) for k in ("pixel", "select", "fill")}
    step = 0
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.exists():
        step = load_checkpoint(ckpt, model, ema, opt)
        log(f"resumed at step {step}")
    elif t.get("init"):
        # Warm start: a previous run's EMA weights ("shipped": the packaged head), so that
        # sessions add up; training and EMA weights both start from them.
        init = selection_net_path() if t["init"] == "shipped" else Path(t["init"])
        start = load_selection(init)
        model.load_state_dict(start.state_dict())
        ema.model.load_state_dict(start.state_dict())
        log(f"warm start from {init}")
    rng = np.random.default_rng([t["seed"], step])
    log_path = out / "loss.csv"
    if step == 0:
        log_path.write_text("step,loss,pixel,select,fill,lr,seconds\n")
    t0 = time.perf_counter()
    running = []
    while step < t["steps"]:
        lr = _lr(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr
        terms = [example_losses(model, data.sample(rng, t["crop"])) for _ in range(t["batch"])]
        parts = {k: torch.stack([x[k] for x in terms]).mean() for k in weights}
        loss = sum(weights[k] * parts[k] for k in weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update(model, step)
        step += 1
        running.append([loss.item(), *(parts[k].item() for k in weights)])
        if step % 25 == 0 or step == t["steps"]:
            mean = np.mean(running, axis=0)
            running.clear()
            elapsed = time.perf_counter() - t0
            with open(log_path, "a") as f:
                f.write(f"{step}," + ",".join(f"{v:.5f}" for v in mean)
                        + f",{lr:.2e},{elapsed:.1f}\n")
            if step % 250 == 0:
                log(f"step {step}: loss {mean[0]:.4f} (pixel {mean[1]:.4f}, select "
                    f"{mean[2]:.3f}, fill {mean[3]:.3f}) "
                    f"lr {lr:.1e} ({elapsed:.0f} s)")
        if step % t["checkpoint_every"] == 0 or step == t["steps"]:
            save_checkpoint(ckpt, model, ema, opt, step)
            save_selection(ema.model, out / "selection_net.safetensors",
                           {"status": "trained", "steps": str(step), "recipe": json.dumps(cfg),
                            "weights": "EMA of the training weights",
                            "fusion_unet_sha256": models.hashes["fusion_unet"]})
    return out / "selection_net.safetensors"
