"""What both networks' training shares: the shard cache of prepared data, and the one training
loop (AdamW with warm-up and cosine decay, gradient clipping, EMA weights, resumable
checkpoints, a loss log)."""

from __future__ import annotations

import contextlib
import copy
import json
import math
import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch


def cache_shards(out: Path, prefix: str, suffix: str, first_seed: int, n_stacks: int,
                 shard: int, prepare: Callable[[list[int]], dict], log=print) -> list[Path]:
    """Prepared data of seeds ``first_seed .. first_seed + n_stacks`` in shards of ``shard``
    seeds, ``out/{prefix}{first seed:07d}_{count}{suffix}.pt``: ``prepare(seeds)`` makes a
    shard's payload; finished shards are skipped (a shard is written to a temporary file and
    moved into place, so an interrupted run leaves none half-written)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for s0 in range(first_seed, first_seed + n_stacks, shard):
        seeds = list(range(s0, min(s0 + shard, first_seed + n_stacks)))
        path = out / f"{prefix}{s0:07d}_{len(seeds)}{suffix}.pt"
        paths.append(path)
        if path.exists():
            continue
        t0 = time.perf_counter()
        payload = prepare(seeds)
        tmp = path.with_suffix(".tmp")
        torch.save({"seeds": seeds, **payload}, tmp)
        tmp.replace(path)
        log(f"cached {path.name}: {len(seeds)} stacks in {time.perf_counter() - t0:.1f} s")
    return paths


def training_device(train: dict) -> torch.device:
    """The ``[train]`` recipe's device (default: CUDA where there is one); on CUDA, fp32
    matrix products in TF32, the speed of the tensor cores."""
    device = torch.device(train.get("device", "cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return device


def _one_thread() -> None:
    torch.set_num_threads(1)  # one core per worker: the workers are the parallelism


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """Processes that generate training stacks while the block runs (``workers`` > 1; None:
    generate in this process). Spawned, not forked: the parent may hold a CUDA context."""
    if workers <= 1:
        yield None
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_one_thread) as pool:
        yield pool


def start_run(cfg: dict) -> Path:
    """Set the recipe's thread count, make its output folder and record the recipe there
    (``config.json``); returns the folder."""
    t = cfg["train"]
    torch.set_num_threads(int(t.get("threads", torch.get_num_threads())))
    out = Path(t["out"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    return out


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


def learning_rate(step: int, train: dict) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 5 % at ``steps``."""
    if step < train["warmup"]:
        return train["lr"] * (step + 1) / train["warmup"]
    progress = (step - train["warmup"]) / max(1, train["steps"] - train["warmup"])
    return train["lr"] * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def train_loop(train: dict, model: torch.nn.Module,
               losses: Callable[[np.random.Generator], dict[str, torch.Tensor]],
               export: Callable[[torch.nn.Module, int], None], *,
               init: torch.nn.Module | None = None, init_name: str = "the given weights",
               resume: bool = True, log=print, log_every: int = 50,
               report_every: int = 500) -> None:
    """Train ``model`` to ``train["steps"]`` under the ``[train]`` recipe.

    ``losses(rng)`` draws one batch and returns {"loss": the total to minimise, other terms to
    log}; ``export(ema_model, step)`` writes the shipped weights at each checkpoint. Resumes
    from ``out/checkpoint.pt`` when ``resume`` and it exists; otherwise ``init`` (a warm start:
    a previous run's weights) seeds both the training and the EMA weights. ``out/loss.csv``
    gets the mean of every term over each ``log_every`` steps; ``log`` a line every
    ``report_every``. With ``train["max_seconds"]`` it stops (checkpoint and export first) once
    that much time has gone, wherever the schedule is; a later run resumes there.
    """
    out = Path(train["out"])
    out.mkdir(parents=True, exist_ok=True)
    ema = EMA(model, train["ema"])
    opt = torch.optim.AdamW(model.parameters(), lr=train["lr"],
                            weight_decay=train["weight_decay"])
    step = 0
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.exists():
        step = load_checkpoint(ckpt, model, ema, opt)
        log(f"resumed at step {step}")
    elif init is not None:
        model.load_state_dict(init.state_dict())
        ema.model.load_state_dict(init.state_dict())
        log(f"warm start from {init_name}")
    rng = np.random.default_rng([train["seed"], step])
    torch.manual_seed(train["seed"] + step)
    log_path = out / "loss.csv"
    fresh = step == 0
    t0 = time.perf_counter()
    running: list[dict[str, float]] = []
    while step < train["steps"]:
        lr = learning_rate(step, train)
        for g in opt.param_groups:
            g["lr"] = lr
        terms = losses(rng)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update(model, step)
        step += 1
        running.append({k: float(v.detach()) for k, v in terms.items()})
        out_of_time = time.perf_counter() - t0 > train.get("max_seconds", math.inf)
        if step % log_every == 0 or step == train["steps"] or out_of_time:
            names = ["loss", *(k for k in running[0] if k != "loss")]
            mean = {k: float(np.mean([r[k] for r in running])) for k in names}
            running.clear()
            elapsed = time.perf_counter() - t0
            if fresh:
                log_path.write_text("step," + ",".join(names) + ",lr,seconds\n")
                fresh = False
            with open(log_path, "a") as f:
                f.write(f"{step}," + ",".join(f"{mean[k]:.5f}" for k in names)
                        + f",{lr:.2e},{elapsed:.1f}\n")
            if step % report_every == 0:
                detail = ", ".join(f"{k} {mean[k]:.4f}" for k in names[1:])
                log(f"step {step}: loss {mean['loss']:.4f}" + (f" ({detail})" if detail else "")
                    + f" lr {lr:.1e} ({elapsed:.0f} s)")
        if step % train["checkpoint_every"] == 0 or step == train["steps"] or out_of_time:
            save_checkpoint(ckpt, model, ema, opt, step)
            export(ema.model, step)
        if out_of_time:  # a time budget (one device call): stop here, resumable
            log(f"stopped at step {step} after train.max_seconds = {train['max_seconds']} s")
            break
