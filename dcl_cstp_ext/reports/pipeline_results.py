"""What a pipeline run folder holds, read back for its report: the evaluations of every fine-tuning, the training
curves, the stage times, and the paper's numbers to set beside them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

__all__ = ["METRICS", "PAPER_RESULTS", "RECIPE_KEYS", "collect_by_seed", "collect_results", "evaluated_splits_sentence",
           "evaluations", "finetune_curves", "find_metric", "finetune_recipes", "finished_runs", "first_validation_metric",
           "format_values", "init_order", "paired_curve_gap", "read_jsonl", "stage_times"]

#: the fine-tuning settings the report shows per initialisation (each fine-tuning's resolved ``config.json``)
RECIPE_KEYS = ("lr", "encoder_lr_scale", "layer_decay", "warmup_epochs", "max_epochs", "batch_size", "image_size",
               "tta")

#: the paper's numbers (METHOD.md), per task: method -> metric -> value (percent; HD in pixels)
PAPER_RESULTS = {
    "pneumonia_cls": {
        "_note": "COVID-19 Radiography 4-class, ResNet-50, ACC / REC / PRE %",
        "ImageNet-supervised": {"accuracy": 94.89, "recall": 94.81, "precision": 95.74},
        "simclr": {"accuracy": 95.21, "recall": 95.89, "precision": 95.80},
        "mocov2": {"accuracy": 95.27, "recall": 95.92, "precision": 95.83},
        "simsiam": {"accuracy": 95.33, "recall": 96.01, "precision": 96.12},
        "dcl_cstp": {"accuracy": 95.65, "recall": 96.33, "precision": 96.50},
        "dcl_cstp_syn": {"accuracy": 95.90, "recall": 96.69, "precision": 96.74},
    },
    "isic_seg": {
        "_note": "ISIC 2018, U-Net + ResNet-50, Dice / IoU % and HD",
        "simclr": {"dice": 88.29, "iou": 79.87, "hd": 35.68},
        "mocov2": {"dice": 88.32, "iou": 79.96, "hd": 35.75},
        "simsiam": {"dice": 88.45, "iou": 80.08, "hd": 35.06},
        "dcl_cstp": {"dice": 88.72, "iou": 80.90, "hd": 34.89},
        "dcl_cstp_syn": {"dice": 89.73, "iou": 81.24, "hd": 34.06},
        "dcl_cstp_synonly": {"dice": 88.49},  # the synthetic-ratio table's "synthetic only" row
    },
    "kvasir_seg": {
        "_note": "Kvasir-SEG, U-Net + ResNet-50, Dice / IoU % (read off a plot, approximate)",
        "supervised": {"dice": 80.2, "iou": 71.1},
        "simclr": {"dice": 81.3},
        "mocov2": {"dice": 81.5},
        "simsiam": {"dice": 82.0},
        "dcl_cstp": {"dice": 82.50, "iou": 73.8},
    },
}


#: metrics shown per task kind: (name in the table, keys to look for in metrics.json, percent?)
METRICS = {
    "classification": [
        ("accuracy", ("accuracy", "acc"), True),
        ("recall", ("macro_recall", "recall_macro", "recall"), True),
        ("precision", ("macro_precision", "precision_macro", "precision"), True),
        ("roc_auc", ("roc_auc_macro_ovr", "roc_auc", "auc", "macro_auc"), True),
    ],
    "segmentation": [
        ("dice", ("dice", "mean_dice"), True),
        ("iou", ("iou", "mean_iou", "jaccard"), True),
        ("hd", ("hd", "hausdorff", "hausdorff_distance"), False),
        ("hd95", ("hd95", "hausdorff95"), False),
    ],
}


def find_metric(metrics: dict, keys: tuple[str, ...]) -> float | None:
    """A scalar for any of ``keys`` at the top level or under a summary-like key (``{"dice": {"mean": x}}`` too)."""
    pools = [metrics] + [metrics[k] for k in ("summary", "mean", "metrics", "overall") if isinstance(metrics.get(k), dict)]
    for pool in pools:
        for key in keys:
            value = pool.get(key)
            if isinstance(value, dict):
                value = value.get("mean")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
    return None


def evaluations(run: Path) -> list[tuple[str, str, str, Path]]:
    """``(init, fraction, seed, metrics.json)`` of every evaluated fine-tuning,
    ``finetune/<init>/lf<fraction>/seed<seed>/evaluate/metrics.json``."""
    return [(p.parts[-5], p.parts[-4].removeprefix("lf"), p.parts[-3].removeprefix("seed"), p)
            for p in sorted(run.glob("finetune/*/lf*/seed*/evaluate/metrics.json"))]


def collect_by_seed(run: Path, kind: str) -> dict:
    """``{init: {fraction: {metric: {seed: value}}}}`` from ``finetune/*/lf*/seed*/evaluate/metrics.json``."""
    out: dict = {}
    for init, fraction, seed, path in evaluations(run):
        metrics = json.loads(path.read_text())
        row = out.setdefault(init, {}).setdefault(fraction, {})
        for name, keys, _ in METRICS[kind]:
            value = find_metric(metrics, keys)
            if value is not None:
                row.setdefault(name, {})[seed] = value
    return out


def collect_results(run: Path, kind: str) -> dict:
    """``{init: {fraction: {metric: [value per seed]}}}``: :func:`collect_by_seed` without the seeds."""
    return {init: {fraction: {name: list(values.values()) for name, values in row.items()}
                   for fraction, row in per.items()} for init, per in collect_by_seed(run, kind).items()}


def finetune_recipes(run: Path) -> dict[str, dict]:
    """``{init: {key: value}}``: the :data:`RECIPE_KEYS` each initialisation was fine-tuned with, from the
    ``finetune/<init>/lf*/seed*/train/config.json`` the stage wrote (the merged config as run), plus ``overlays``, the
    preset and recipe files layered (``DONE.json``). Where an init's runs differ (a fraction's own overrides), the
    first run found is shown."""
    out: dict[str, dict] = {}
    for config in sorted(run.glob("finetune/*/lf*/seed*/train/config.json")):
        init = config.parts[-5]
        if init in out:
            continue
        resolved = json.loads(config.read_text())
        done = config.with_name("DONE.json")
        out[init] = {k: resolved.get(k) for k in RECIPE_KEYS}
        out[init]["overlays"] = json.loads(done.read_text()).get("configs", [])[1:] if done.is_file() else []
    return out


def evaluated_splits_sentence(run: Path) -> str:
    """Which split the results were measured on (``split`` and ``n`` of each evaluation's ``metrics.json``), and
    whether it took part in model selection: the test split never does, the validation split picks each
    fine-tuning's best epoch."""
    found: dict[str, set] = {}
    for *_, path in evaluations(run):
        metrics = json.loads(path.read_text())
        count = find_metric(metrics, ("n", "num_images"))  # segmentation: n; classification: summary.num_images
        found.setdefault(str(metrics.get("split", "?")), set()).add(None if count is None else int(count))
    if not found:
        return ""
    parts = [f"{split} ({', '.join(str(n) for n in sorted(ns, key=str))} images)" for split, ns in sorted(found.items())]
    text = f"Evaluated on the {' and '.join(parts)} split{'s' if len(parts) > 1 else ''}."
    if "validation" in found:
        text += (" The validation split also chose each fine-tuning's best epoch, so its numbers are optimistic; "
                 "a data set with an official test part (Kvasir-SEG `val.txt`, ISIC 2018 `Test`, chest X-ray `test/`) "
                 "is evaluated on that part, which nothing is selected on.")
    else:
        text += " Nothing was selected on it (the best epoch was chosen on the validation split)."
    return text


def finished_runs(run: Path) -> dict[str, list[str]]:
    """The initialisations, label fractions and seeds of every evaluated fine-tuning under ``run``, sorted."""
    found = evaluations(run)
    return {
        "inits": sorted({e[0] for e in found}, key=init_order),
        "fractions": sorted({e[1] for e in found}, key=float, reverse=True),
        "seeds": sorted({e[2] for e in found}, key=int),
    }


def first_validation_metric(run: Path) -> str | None:
    """The first ``val_*`` key, in sorted order, of the fine-tunings' ``val_metrics.jsonl`` (``val_accuracy`` for
    classification, ``val_mean_dice`` for segmentation: the metric that picks each fine-tuning's best epoch)."""
    keys = {k for p in run.glob("finetune/*/lf*/seed*/train/val_metrics.jsonl") for r in read_jsonl(p) for k in r
            if k.startswith("val_")}
    return min(keys) if keys else None


def finetune_curves(run: Path, file: str, key: str) -> dict[tuple[str, str], dict]:
    """Each finished fine-tuning's per-epoch ``key`` from its ``train/<file>`` (``metrics.jsonl`` or
    ``val_metrics.jsonl``), grouped by (initialisation, label fraction): ``{"epochs": (E,), "seeds": [S],
    "values": (S, E)}``, cut to the epochs every seed of the group logged. Groups without ``key`` are left out."""
    grouped: dict[tuple[str, str], dict[str, list]] = {}
    for path in sorted(run.glob(f"finetune/*/lf*/seed*/train/{file}")):
        if not (path.parent / "DONE.json").is_file():
            continue  # a fine-tuning still running (or stopped) would cut its group's curves short
        by_epoch = {r["epoch"]: r for r in read_jsonl(path) if key in r and "epoch" in r}  # a resumed epoch: its last
        rows = [by_epoch[e] for e in sorted(by_epoch)]
        if rows:
            init, fraction, seed = path.parts[-5], path.parts[-4].removeprefix("lf"), path.parts[-3].removeprefix("seed")
            grouped.setdefault((init, fraction), {})[seed] = rows
    curves = {}
    for group, by_seed in sorted(grouped.items(), key=lambda kv: (init_order(kv[0][0]), -float(kv[0][1]))):
        n = min(len(rows) for rows in by_seed.values())
        seeds = sorted(by_seed, key=int)
        curves[group] = {"epochs": np.array([r["epoch"] for r in by_seed[seeds[0]][:n]]), "seeds": seeds,
                         "values": np.array([[r[key] for r in by_seed[s][:n]] for s in seeds], dtype=float)}
    return curves


def paired_curve_gap(curves: dict[tuple[str, str], dict], group: tuple[str, str],
                     reference: str = "random") -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """Per epoch, ``group``'s curve minus the ``reference`` initialisation's at the same label fraction, averaged
    over the seeds both ran: (epochs (E,), mean difference (E,), the paired seeds), or None without a pair."""
    ref = curves.get((reference, group[1]))
    own = curves[group]
    if ref is None or group[0] == reference:
        return None
    seeds = [s for s in own["seeds"] if s in ref["seeds"]]
    if not seeds:
        return None
    n = min(len(own["epochs"]), len(ref["epochs"]))
    diff = [own["values"][own["seeds"].index(s), :n] - ref["values"][ref["seeds"].index(s), :n] for s in seeds]
    return own["epochs"][:n], np.mean(diff, axis=0), seeds


def init_order(init: str) -> tuple[int, str]:
    """Table order: random, the baselines, DCL-CsTP, + synthetic (ratios), then the ablations."""
    from ..pipeline.config import ABLATIONS, INITIALISATIONS  # here: the pipeline package imports the report

    order = list(INITIALISATIONS) + list(ABLATIONS)
    if init in order:
        return order.index(init), init
    return (order.index("dcl_cstp_syn"), init) if init.startswith("dcl_cstp_syn") else (len(order), init)


def format_values(values: list[float], percent: bool) -> str:
    if not values:
        return "-"
    arr = np.asarray(values) * (100.0 if percent and max(abs(v) for v in values) <= 1.0 else 1.0)
    if len(arr) == 1:
        return f"{arr[0]:.2f}"
    return f"{arr.mean():.2f} ± {arr.std(ddof=1):.2f}"


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def stage_times(run: Path) -> list[list[str]]:
    rows = []
    for done in sorted(run.rglob("DONE.json"), key=lambda p: p.stat().st_mtime):
        rec = json.loads(done.read_text())
        rows.append([rec["stage"], f"{rec['seconds']:.0f}"])
    return rows
