"""Training of the selection head on prepared stacks: AdamW, EMA weights, resumable checkpoints.

Per example the head's selection and fill logits are composed exactly as at inference
(`engine.compose`), and the loss is the composite's L1 to the ground truth, plus the negative
log of the weight given to planes that hold the pixel (the free "best plane" target), plus a
binary cross-entropy of the fill logit against where no plane holds the pixel and the decoded
latent fusion is closer to the truth than every plane (by the recipe's ``fill_margin``: 0.5 asks
for half the best plane's error).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.compose import compose, pixel_blend
from ..engine.fusion import head_inputs
from ..engine.runtime import load_models
from ..models.selection_net import SelectionConfig, SelectionNet, load_selection, save_selection
from ..models.weights import selection_net_path
from .loop import start_run, train_loop, training_device
from .pixel_data import PixelStacks, build_pixel_cache


def example_losses(model: SelectionNet, ex: dict[str, torch.Tensor],
                   fill_margin: float = 1.0, fill_target: str = "planes"
                   ) -> dict[str, torch.Tensor]:
    """The three loss terms of one example (see the module docstring). The fill's target,
    ``fill_target="planes"``: where no plane holds the pixel and the decoded fusion's error is
    below ``fill_margin`` times the best plane's; ``"blend"``: the latent cells (8 px) where
    the decoded fusion's mean error is below ``fill_margin`` times that of the planes' blend
    the head composes (what the fill replaces), wherever that is."""
    planes, truth, decoded, good = ex["planes"], ex["truth"], ex["decoded"], ex["good"]
    logits, fill_logit = model(head_inputs(model.config.inputs, planes, ex.get("latents")))
    blend, weights, fill = pixel_blend(logits[0], fill_logit[0], planes)
    out = compose(blend, decoded, fill)
    pixel = (out - truth).abs().mean()

    any_good, all_good = good.any(0), good.all(0)
    informative = any_good & ~all_good
    p_good = (weights * good).sum(0)
    select = -torch.log(p_good + 1e-4)[informative].mean() if informative.any() \
        else pixel.new_zeros(())

    if fill_target == "blend":
        err_decoded = F.avg_pool2d((decoded - truth).abs().mean(0)[None, None], 8)[0, 0]
        err_blend = F.avg_pool2d((blend.detach() - truth).abs().mean(0)[None, None], 8)[0, 0]
        target = (err_decoded < fill_margin * err_blend).float()
    elif fill_target == "planes":
        err_decoded = (decoded - truth).abs().amax(0)
        err_planes = (planes - truth[None]).abs().amax(1).amin(0)
        target = (~any_good & (err_decoded < fill_margin * err_planes)).float()
        target = F.avg_pool2d(target[None, None], 8)[0, 0]
    else:
        raise ValueError(f"train.fill_target must be 'planes' or 'blend', got {fill_target!r}")
    fill_loss = F.binary_cross_entropy_with_logits(fill_logit[0], target)
    return {"pixel": pixel, "select": select, "fill": fill_loss}


def warm_start(model: SelectionNet, source: SelectionNet, log=print) -> SelectionNet:
    """A copy of ``model`` with every tensor of ``source`` whose name and shape match (a head
    of another input kind differs only in its first convolution, which keeps its fresh
    initialisation)."""
    state, src = model.state_dict(), source.state_dict()
    kept = [k for k in state if k in src and src[k].shape == state[k].shape]
    fresh = sorted(set(state) - set(kept))
    state.update({k: src[k] for k in kept})
    init = SelectionNet(model.config)
    init.load_state_dict(state)
    if fresh:
        log(f"warm start: {len(kept)} tensors loaded, fresh: {', '.join(fresh)}")
    return init


def train_selection(cfg: dict, *, resume: bool = True, log=print) -> Path:
    """Run the selection recipe; returns the path of the exported EMA weights (safetensors)."""
    t, d, m = cfg["train"], cfg["data"], cfg["model"]
    out = start_run(cfg)

    device = training_device(t)
    # the U-Net whose decoded fusion the fill stands in for: data.unet, default the packaged one
    models = load_models(str(device), "float32", d.get("unet"))
    families = d.get("families") or [None]  # one cache per physics family, n_stacks of each
    paths = [p for fam in families
             for p in build_pixel_cache(models, Path(d["cache"]), d["first_seed"], d["n_stacks"],
                                        d["size"], log=log, family=fam,
                                        noisy_share=d.get("noisy_share", 0.5),
                                        max_planes=d.get("max_planes", 12),
                                        workers=d.get("workers", 1))]
    data = PixelStacks(paths)
    log(f"{len(data)} prepared stacks")

    model = SelectionNet(SelectionConfig(width=m["width"], inputs=m.get("inputs", "latents"))
                         ).to(device)
    weights = {k: float(t[f"loss_{k}"]) for k in ("pixel", "select", "fill")}
    init = None
    if t.get("init"):
        # Warm start: a previous run's EMA weights ("shipped": the packaged head), so that
        # sessions add up; training and EMA weights both start from them.
        init = warm_start(model, load_selection(selection_net_path() if t["init"] == "shipped"
                                                else Path(t["init"])), log)

    def losses(rng: np.random.Generator) -> dict[str, torch.Tensor]:
        terms = [example_losses(model, {k: v.to(device) for k, v in
                                        data.sample(rng, t["crop"]).items()},
                                t.get("fill_margin", 1.0), t.get("fill_target", "planes"))
                 for _ in range(t["batch"])]
        parts = {k: torch.stack([x[k] for x in terms]).mean() for k in weights}
        return {"loss": sum(weights[k] * parts[k] for k in weights), **parts}

    def export(ema_model: torch.nn.Module, step: int) -> None:
        save_selection(ema_model, out / "selection_net.safetensors",
                       {"status": "trained", "steps": str(step), "recipe": json.dumps(cfg),
                        "weights": "EMA of the training weights",
                        "fusion_unet_sha256": models.hashes["fusion_unet"]})

    train_loop(t, model, losses, export, init=init, init_name=str(t.get("init")),
               resume=resume, log=log, log_every=25, report_every=250)
    return out / "selection_net.safetensors"
