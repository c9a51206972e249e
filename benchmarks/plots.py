"""Log-log plots of the benchmark tables; runs with the peers venv's Python (it has matplotlib).

    benchmarks/.peers-venv/bin/python benchmarks/plots.py --dir docs/benchmarks

Reads ``speed_planes.csv``, ``speed_size.csv`` and ``quality_synthetic.csv`` where present and
writes ``speed_planes.png``, ``speed_size.png`` and ``quality_vs_speed.png`` beside them.
"""

from __future__ import annotations

import argparse
import csv
import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

MARKERS = "osD^v<>pP*XhH8d"
# ours first (strong), then distinct tab20 hues for the rest
COLOURS = ["#d62728", "#ff7f0e", "#2ca02c", "#98df8a", "#1f77b4", "#aec7e8", "#9467bd",
           "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#7f7f7f", "#bcbd22",
           "#17becf", "#9edae5", "#dbdb8d"]


def _rows(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _style(label: str, k: int) -> dict:
    ours = "(ours)" in label
    baseline = "our baseline" in label
    return {"marker": MARKERS[k % len(MARKERS)], "linewidth": 2.6 if ours else 1.2,
            "markersize": 7 if ours else 5, "linestyle": "-" if ours else
            (":" if baseline else "--"), "zorder": 3 if ours else 2}


def speed_plot(rows: list[dict], x_key: str, x_label: str, title: str, out: Path) -> None:
    ok = [r for r in rows if r["status"] == "ok"]
    labels = list(dict.fromkeys(r["label"] for r in ok))
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    colours = itertools.cycle(COLOURS)
    for k, label in enumerate(labels):
        mine = sorted((r for r in ok if r["label"] == label), key=lambda r: float(r[x_key]))
        xs = [float(r[x_key]) for r in mine]
        colour = next(colours)
        for ax, y_key in zip(axes, ("seconds", "max_rss_mib"), strict=True):
            ax.plot(xs, [float(r[y_key]) for r in mine], color=colour, label=label,
                    **_style(label, k))
    for ax, y_label in zip(axes, ("wall seconds (median)", "peak RSS of the process (MiB)"),
                           strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.grid(True, which="both", alpha=0.3)
    names = {float(r[x_key]): r["input"] for r in ok}
    xs = sorted(names)
    for ax in axes:
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{x:g}" if x_key == "planes" else f"{names[x]}\n{x:.2g}"
                            for x in xs])
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def quality_plot(rows: list[dict], out: Path) -> None:
    fig, ax = plt.subplots(figsize=(8.5, 5.2))
    for k, r in enumerate(r for r in rows if r["method"] != "vae_ceiling"):
        ours = "(ours)" in r["label"]
        ax.scatter(float(r["s_per_stack"]), float(r["psnr"]), marker=MARKERS[k % len(MARKERS)],
                   s=80 if ours else 40, label=r["label"], zorder=3 if ours else 2,
                   color=COLOURS[k % len(COLOURS)])
    ceiling = [r for r in rows if r["method"] == "vae_ceiling"]
    if ceiling:
        ax.axhline(float(ceiling[0]["psnr"]), color="gray", linestyle="--", linewidth=1)
        ax.text(0.01, float(ceiling[0]["psnr"]), "VAE ceiling D(E(GT))", va="bottom",
                color="gray", fontsize=8, transform=ax.get_yaxis_transform())
    ax.set_xscale("log")
    ax.set_xlabel("seconds per 256 px stack (CPU)")
    ax.set_ylabel("PSNR vs ground truth (dB), mean")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
    ax.set_title("Held-out synthetic stacks: quality versus time")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dir", type=Path, default=Path(__file__).resolve().parents[1] / "docs"
                   / "benchmarks")
    d = p.parse_args().dir
    made = []
    if (d / "speed_planes.csv").is_file():
        rows = _rows(d / "speed_planes.csv")
        size = rows[0]["height"] if rows else "?"
        speed_plot(rows, "planes", "planes", f"Time and memory versus number of planes "
                   f"({size} px RGB, CPU)", d / "speed_planes.png")
        made.append("speed_planes.png")
    if (d / "speed_size.csv").is_file():
        rows = _rows(d / "speed_size.csv")
        n = rows[0]["planes"] if rows else "?"
        speed_plot(rows, "mpx", "megapixels per plane", f"Time and memory versus plane size "
                   f"({n} RGB planes, CPU)", d / "speed_size.png")
        made.append("speed_size.png")
    if (d / "quality_synthetic.csv").is_file():
        quality_plot(_rows(d / "quality_synthetic.csv"), d / "quality_vs_speed.png")
        made.append("quality_vs_speed.png")
    print("plots: " + (", ".join(made) or "none (no tables found)"))


if __name__ == "__main__":
    main()
