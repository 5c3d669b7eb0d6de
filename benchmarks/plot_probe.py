"""Tables and a forest plot of ``probe_encoders.py --protocol cv`` results: each encoder's probe scores and its paired
difference from the random encoder with the 95% bootstrap interval.

    python benchmarks/plot_probe.py plot benchmarks/results/probe_cv_{kvasir,isic,chest}.json --figure docs/figures/probe_cv.png
    python benchmarks/plot_probe.py plot a.json+"b.json=BN head" c.json --titles "ISIC 2018,chest X-ray" --figure f.png
    python benchmarks/plot_probe.py curve benchmarks/results/step_curve_*.json --figure docs/figures/step_curve.png

An encoder path ``.../<run>/pretrain/<method>/models/encoder.pt`` is named ``<method> (<run>)``. A report given as
``a.json+b.json`` is one data set probed by several runs (the same split and random encoder, which is checked):
their encoders are drawn in one row of panels, by method, a method already shown named with its file's label
(``b.json=BN head``: "mocov2 (BN head)"). Besides ``probe_encoders.py``'s files, the ``collect_run.py`` files of
pipeline runs are read (their rows name the initialisation in ``init``).
"""

from __future__ import annotations

import json
from pathlib import Path

import fire

PROBES = {"knn_accuracy": "k-NN acc.", "linear_accuracy": "linear acc.", "dense_dice": "dense Dice"}
#: the order of the rows of a merged report (the pipeline's ``--methods`` names)
METHOD_ORDER = ("simclr", "mocov2", "simsiam", "dcl_cstp", "dcl_cstp_syn", "dcl_cstp_synonly")


def encoder_name(encoder: str) -> str:
    if encoder == "random":
        return "random"
    parts = Path(encoder).parts
    return f"{parts[-3]} ({parts[-5]})" if len(parts) >= 5 and parts[-4] == "pretrain" else encoder


def _scores(row: dict) -> dict:
    return {p: round(row[p], 6) for p in PROBES if p in row}


def load_report(spec: str) -> dict:
    """One data set's report from ``a.json`` or ``a.json+b.json+...``: the random encoder's row, then every file's
    other rows in :data:`METHOD_ORDER`, each named (``name``) by its method (``init``, else the method of its
    encoder's path), with `` (<label>)`` added where a name repeats (``a.json=label``; default the file's stem);
    a row that repeats another's name and scores (a run reproduced to the digit) is left out. The files must agree
    on the random encoder's scores (the same split and images); a disagreement is refused naming the file."""
    parts = [part.partition("=") for part in spec.split("+")]
    paths, labels = [p for p, _, _ in parts], [label or Path(p).stem for p, _, label in parts]
    reports = [json.loads(Path(p).read_text()) for p in paths]
    merged = dict(reports[0])
    rows = [dict(reports[0]["results"][0], name="random")]
    for path, label, rep in zip(paths, labels, reports):
        if _scores(rep["results"][0]) != _scores(rows[0]):
            raise ValueError(f"{path}: its random encoder scores {_scores(rep['results'][0])}, {paths[0]}'s "
                             f"{_scores(rows[0])}: not the same split")
        for row in rep["results"][1:]:
            name = row.get("init") or encoder_name(row["encoder"]).split(" (")[0]
            same_name = [r for r in rows if r["name"].split(" (")[0] == name]
            if any(_scores(r) == _scores(row) for r in same_name):
                continue
            rows.append(dict(row, name=f"{name} ({label})" if same_name else name))
    order = {m: i for i, m in enumerate(METHOD_ORDER)}
    rows[1:] = sorted(rows[1:], key=lambda r: order.get(r["name"].split(" (")[0], len(order)))  # stable: file order
    merged["results"] = rows
    merged["title"] = Path(paths[0]).stem.replace("probe_cv_", "")
    return merged


def markdown_table(report: dict) -> str:
    """One row per encoder: each probe's score (x100) and, below the first encoder, its difference [95% interval]."""
    probes = [p for p in PROBES if p in report["results"][0]]
    head = "| encoder | " + " | ".join(f"{PROBES[p]} | vs random [95% CI]" for p in probes) + " |"
    lines = [head, "| --- " * (1 + 2 * len(probes)) + "|"]
    for row in report["results"]:
        cells = [row.get("name") or encoder_name(row["encoder"])]
        for p in probes:
            cells.append(f"{row[p]:.1f}")
            d = row.get(f"{p}_vs_random")
            cells.append(f"{d['difference']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]" if d else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(*reports: str, figure: str | None = None, titles: str | None = None) -> None:
    """Print each report's table and, with ``figure``, draw a forest plot: one row of panels per report (``a.json``
    or ``a.json+b.json``, :func:`load_report`), one panel per probe. ``titles``: the rows' titles, separated by
    commas (default: each row's first file's name)."""
    loaded = [load_report(r) for r in reports]
    names = [t.strip() for t in titles.split(",")] if titles else [rep["title"] for rep in loaded]
    if len(names) != len(loaded):
        raise ValueError(f"--titles: {len(names)} titles for {len(loaded)} reports")
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
    heights = [1.1 + 0.3 * len(rep["results"]) for rep in loaded]
    fig, axes = plt.subplots(len(loaded), cols, figsize=(1.6 + 3.0 * cols, sum(heights)), dpi=110, squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for axrow, name, rep in zip(axes, names, loaded):  # one row per data set, one column per probe
        probes = [p for p in PROBES if p in rep["results"][0]]
        for ax in axrow[len(probes):]:  # a classification data set has no dense probe
            ax.axis("off")
        for col, (ax, p) in enumerate(zip(axrow, probes)):
            rows = [r for r in rep["results"] if f"{p}_vs_random" in r][::-1]
            diffs = [r[f"{p}_vs_random"] for r in rows]
            y = range(len(rows))
            colors = ["C2" if d["low"] > 0 else "C3" if d["high"] < 0 else "0.45" for d in diffs]
            for yi, d, c in zip(y, diffs, colors):
                ax.errorbar(d["difference"], yi, xerr=[[d["difference"] - d["low"]], [d["high"] - d["difference"]]],
                            fmt="o", color=c, capsize=3)
            ax.axvline(0, color="0.4", lw=1, ls="--")
            names_here = [r["name"] for r in rows]
            if col == 0:
                first_names = names_here
            ax.set_yticks(list(y), names_here if col == 0 or names_here != first_names else [], fontsize=7)
            ax.set_ylim(-0.6, len(rows) - 0.4)
            ax.set_xlabel(f"{PROBES[p]} minus random (points)", fontsize=8)
            ax.set_title(f"{name}\n{PROBES[p]}, random {rep['results'][0][p]:.1f}", fontsize=9)
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
