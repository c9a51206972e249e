"""Could a rule that sees the decoded latent fusion everywhere find the cells where it beats
pixel mode? (issue 11: a fill that earns its place; `fill_oracle.py` measures the most it could
add.) Per 8 px cell of tuning stacks (neither training nor held-out seeds): the label is the
oracle's (latent mode's squared error below ``margin`` times pixel mode's without fill), the
features are what inference could compute once the VAE has run on the whole tile:

- log |latent - pixel| (luma), log of how far latent mode departs from every plane;
- the planes' focus contrast (log max over mean of the Laplacian energy) and its maximum;
- log of pixel mode's Laplacian energy over latent mode's; log of the planes' spread.

A quadratic logistic regression is fitted on one set of seeds (weighted by how much the cell's
choice matters) and scored on another: PSNR of pixel mode, of the oracle and of swapping the
cells where the rule's probability is above 0.5 / 0.7 / 0.9, and the share swapped.

    VAEEDOF_WEIGHTS_DIR=../shared/models python scripts/fill_rule.py --fit 3300000 \\
        --test 3300100 --n 10
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import laplace

from napari_vaeedof import fuse_stack
from napari_vaeedof.data.families import make_family_stack

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fill_oracle import cell_means as cells

GROUPS = (("layered", False), ("layered", True), ("heightfield", False),
          ("fluorescence", True), ("brightfield", True))
NAMES = ("|latent-pixel|", "latent departure", "focus contrast", "pixel/latent detail",
         "plane spread", "most detail")
THRESHOLDS = (0.5, 0.7, 0.9)


def stack_record(family: str, noise: bool, seed: int) -> dict:
    st = make_family_stack(family, seed, size=256, noise=noise)
    truth = np.asarray(make_family_stack(family, seed, size=256, noise=False).ground_truth,
                       np.float64)
    common = dict(error_map=False, precision="float32", device="cpu")
    pixel = np.asarray(fuse_stack(st.planes, fill=False, **common).image, np.float64)
    latent = np.asarray(fuse_stack(st.planes, mode="latent", **common).image, np.float64)
    planes = np.asarray(st.planes, np.float64)
    lum = [x.mean(-1) if x.ndim == 3 else x for x in (pixel, latent, truth)]
    yp, yl, _ = lum
    pl = planes.mean(-1) if planes.ndim == 4 else planes
    energy = np.stack([cells(laplace(q) ** 2) for q in pl])
    feats = np.stack([
        np.log(cells(np.abs(yl - yp)) + 1e-5),
        np.log(np.min([cells(np.abs(yl - q)) for q in pl], 0) + 1e-5),
        np.log(energy.max(0) + 1e-9) - np.log(energy.mean(0) + 1e-9),
        np.log(cells(laplace(yp) ** 2) + 1e-9) - np.log(cells(laplace(yl) ** 2) + 1e-9),
        np.log(cells(pl.max(0) - pl.min(0)) + 1e-5),
        np.log(energy.max(0) + 1e-9),
    ], -1)
    se = [((x - truth) ** 2).mean(-1) if x.ndim == 3 else (x - truth) ** 2
          for x in (pixel, latent)]
    return {"family": family, "noise": noise, "seed": seed, "feats": feats,
            "err_pixel": cells(se[0]), "err_latent": cells(se[1])}


def records(first: int, n: int, cache: Path) -> list[dict]:
    path = cache / f"fill_rule_{first}_{n}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    recs = []
    for family, noise in GROUPS:
        for seed in range(first, first + n):
            recs.append(stack_record(family, noise, seed))
            print(f"{family} noise={noise} seed {seed}", flush=True)
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(recs))
    return recs


def table(recs: list[dict], margin: float):
    x = np.concatenate([r["feats"].reshape(-1, len(NAMES)) for r in recs])
    y = np.concatenate([(r["err_latent"] < margin * r["err_pixel"]).ravel() for r in recs])
    w = np.concatenate([np.abs(r["err_pixel"] - r["err_latent"]).ravel() for r in recs])
    return x, y, w


def auc(score: np.ndarray, label: np.ndarray) -> float:
    rank = np.argsort(np.argsort(score)) + 1
    pos = int(label.sum())
    return float((rank[label].sum() - pos * (pos + 1) / 2) / max(pos * (len(label) - pos), 1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fit", type=int, default=3_300_000, help="first seed of the fitting set")
    p.add_argument("--test", type=int, default=3_300_100, help="first seed of the test set")
    p.add_argument("--n", type=int, default=10, help="stacks per family and split in each set")
    p.add_argument("--margin", type=float, default=0.64)
    p.add_argument("--cache", type=Path, default=Path("runs/fill_rule"))
    args = p.parse_args(argv)
    fit, test = records(args.fit, args.n, args.cache), records(args.test, args.n, args.cache)

    x, y, w = table(fit, args.margin)
    mu, sd = x.mean(0), x.std(0) + 1e-9

    def design(x: np.ndarray) -> torch.Tensor:
        z = (x - mu) / sd
        pairs = [z[:, i : i + 1] * z[:, j : j + 1] for i in range(z.shape[1])
                 for j in range(i, z.shape[1])]
        return torch.tensor(np.concatenate([z, *pairs, np.ones((len(z), 1))], 1))

    a, target = design(x), torch.tensor(y, dtype=torch.float64)
    weight = torch.tensor(w / w.mean())
    beta = torch.zeros(a.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([beta], max_iter=300)

    def closure():
        opt.zero_grad()
        loss = (weight * F.binary_cross_entropy_with_logits(a @ beta, target, reduction="none")
                ).mean() + 1e-4 * beta.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    print(f"fitting set: {y.mean():.3f} of the cells are the oracle's; AUC of each feature: "
          + ", ".join(f"{n} {auc(x[:, i], y):.2f}" for i, n in enumerate(NAMES)))
    print("\n| family | split | AUC | oracle's cells | pixel | oracle | "
          + " | ".join(f"p > {t}" for t in THRESHOLDS) + " | swapped |")
    print("|---|---|---:|---:|---:|---:|" + "---:|" * len(THRESHOLDS) + "---|")
    for family, noise in GROUPS:
        rs = [r for r in test if (r["family"], r["noise"]) == (family, noise)]
        xt, yt, _ = table(rs, args.margin)
        prob = torch.sigmoid(design(xt) @ beta).detach().numpy()
        scores = {"pixel": [], "oracle": [], **{t: [] for t in THRESHOLDS}}
        share = {t: [] for t in THRESHOLDS}
        k = 0
        for r in rs:
            ep, el = r["err_pixel"], r["err_latent"]
            pr = prob[k : k + ep.size].reshape(ep.shape)
            k += ep.size
            scores["pixel"].append(ep.mean())
            scores["oracle"].append(np.where(el < args.margin * ep, el, ep).mean())
            for t in THRESHOLDS:
                scores[t].append(np.where(pr > t, el, ep).mean())
                share[t].append((pr > t).mean())
        db = {key: np.mean([10 * np.log10(1 / max(v, 1e-12)) for v in vals])
              for key, vals in scores.items()}
        print(f"| {family} | {'noisy' if noise else 'none'} | {auc(prob, yt):.2f} | "
              f"{yt.mean():.3f} | {db['pixel']:.2f} | {db['oracle']:.2f} | "
              + " | ".join(f"{db[t]:.2f}" for t in THRESHOLDS) + " | "
              + " / ".join(f"{np.mean(share[t]):.3f}" for t in THRESHOLDS) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
