"""Tables and a forest plot of ``probe_encoders.py --protocol cv`` results: each encoder's probe scores and its paired
difference from the random encoder with the 95% bootstrap interval.

    python benchmarks/plot_probe.py plot benchmarks/results/probe_cv_{kvasir,isic,chest}.json --figure docs/figures/probe_cv.png
    python benchmarks/plot_probe.py curve benchmarks/results/step_curve_*.json --figure docs/figures/step_curve.png

An encoder path ``.../<run>/pretrain/<method>/models/encoder.pt`` is named ``<method> (<run>)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import fire

PROBES = {"knn_accuracy": "k-NN acc.", "linear_accuracy": "linear acc.", "dense_dice": "dense Dice"}


def encoder_name(encoder: str) -> str:
    if encoder == "random":
        return "random"
    parts = Path(encoder).parts
    return f"{parts[-3]} ({parts[-5]})" if len(parts) >= 5 and parts[-4] == "pretrain" else encoder


def markdown_table(report: dict) -> str:
    """One row per encoder: each probe's score (x100) and, below the first encoder, its difference [95% interval]."""
    probes = [p for p in PROBES if p in report["results"][0]]
    head = "| encoder | " + " | ".join(f"{PROBES[p]} | vs random [95% CI]" for p in probes) + " |"
    lines = [head, "| --- " * (1 + 2 * len(probes)) + "|"]
    for row in report["results"]:
        cells = [encoder_name(row["encoder"])]
        for p in probes:
            cells.append(f"{row[p]:.1f}")
            d = row.get(f"{p}_vs_random")
            cells.append(f"{d['difference']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]" if d else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(*reports: str, figure: str | None = None) -> None:
    loaded = [json.loads(Path(r).read_text()) for r in reports]
    for path, rep in zip(reports, loaded):
        print(f"## {path}: {rep['labels']}, {rep['protocol']}, {rep['results'][0]['images']} images, "
              f"majority class {rep['majority_class_accuracy']:.1f}%\n")
        print(markdown_table(rep), "\n")
    if not figure:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = max(sum(p in rep["results"][0] for p in PROBES) for rep in loaded)
    heights = [0.9 + 0.28 * len(rep["results"]) for rep in loaded]
    fig, axes = plt.subplots(len(loaded), cols, figsize=(3.6 * cols, sum(heights)), dpi=110, squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for axrow, path, rep in zip(axes, reports, loaded):  # one row per data set, one column per probe
        probes = [p for p in PROBES if p in rep["results"][0]]
        for ax in axrow[len(probes):]:  # a classification data set has no dense probe
            ax.axis("off")
        for ax, p in zip(axrow, probes):
            rows = [r for r in rep["results"] if f"{p}_vs_random" in r][::-1]
            diffs = [r[f"{p}_vs_random"] for r in rows]
            y = range(len(rows))
            colors = ["C2" if d["low"] > 0 else "C3" if d["high"] < 0 else "0.45" for d in diffs]
            for yi, d, c in zip(y, diffs, colors):
                ax.errorbar(d["difference"], yi, xerr=[[d["difference"] - d["low"]], [d["high"] - d["difference"]]],
                            fmt="o", color=c, capsize=3)
            ax.axvline(0, color="0.4", lw=1, ls="--")
            ax.set_yticks(list(y), [encoder_name(r["encoder"]) for r in rows], fontsize=7)
            ax.set_xlabel(f"{PROBES[p]} minus random (points)", fontsize=8)
            ax.set_title(f"{Path(path).stem.replace('probe_cv_', '')}: {PROBES[p]}, random "
                         f"{rep['results'][0][p]:.1f}", fontsize=9)
    fig.tight_layout()
    fig.savefig(figure)
    print(f"figure: {figure}")


def curve(*reports: str, figure: str) -> None:
    """Step curves of ``pretrain_step_curve.py``: each probe's difference from the random encoder [95% interval]
    against the pre-training steps, one line per report (method, data set, schedule)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loaded = [json.loads(Path(r).read_text()) for r in reports]
    probes = [p for p in PROBES if any(p in rep["results"][0] for rep in loaded)]
    fig, axes = plt.subplots(1, len(probes), figsize=(3.8 * len(probes), 3.2), dpi=110, squeeze=False)
    for ax, p in zip(axes[0], probes):
        for i, (path, rep) in enumerate(zip(reports, loaded)):
            rows = [r for r in rep["results"] if f"{p}_vs_random" in r]
            if not rows:
                continue
            steps = [r["steps"] for r in rows]
            d = [r[f"{p}_vs_random"] for r in rows]
            ax.errorbar([s + 8 * i for s in steps], [x["difference"] for x in d], capsize=3, marker="o",
                        yerr=[[x["difference"] - x["low"] for x in d], [x["high"] - x["difference"] for x in d]],
                        label=f"{rep['method']}, {rep['epochs']} epochs ({Path(path).stem})")
        ax.axhline(0, color="0.4", lw=1, ls="--")
        ax.set_xlabel("pre-training steps (batch 32)", fontsize=8)
        ax.set_ylabel(f"{PROBES[p]} minus random (points)", fontsize=8)
        ax.set_title(f"{PROBES[p]}, random {loaded[0]['results'][0][p]:.1f}", fontsize=9)
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(figure)
    print(f"figure: {figure}")


if __name__ == "__main__":
    fire.Fire({"plot": plot, "curve": curve})
