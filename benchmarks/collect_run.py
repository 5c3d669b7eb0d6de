"""Gather the results of one ``dcl-cstp pipeline`` run into a single file for ``benchmarks/results/``: its
frozen-encoder probes, its fine-tunings and the report's paired statistics.

Each ``RUN/probe/<init>/probe.json`` (written by the pipeline's probe stages, ``dcl_cstp_ext.engines.encoder_probe``)
becomes one row of ``results``; a pre-trained initialisation's row also gets its pre-training's wall time (the
stage's ``DONE.json``) and the last epoch's training losses (its ``eval/metrics.jsonl``), with the lowest ``z_std``
of the run. The layout is the one of ``benchmarks/results/probe_cv_*.json``, plus ``finetunes`` (every finished
``RUN/finetune/<init>/lf<fraction>/seed<seed>/evaluate/metrics.json``: the metrics' means, the split, the training
stage's wall time) and ``statistics`` (``RUN/statistics.json``, written by the report: the paired per-seed tests).
``environment`` is the first probe's (random init's): versions, code commit, machine; a probe whose record differs
(a method added to the run later, by other code) keeps its own in its row. ``commands`` lists every pipeline
command run in the folder (``RUN/run_info.json``: when, its options as typed, its code commit), and a pre-trained
row carries ``pretrain_overrides``, the settings its stage ran with beyond the bundle's configs (its ``DONE.json``,
paths left out): a run with ``--overrides`` cannot be mistaken for the default recipe.

    python benchmarks/collect_run.py RUN --json-path benchmarks/results/pipeline_kvasir_preset1320.json
"""

from __future__ import annotations

import json
from pathlib import Path

import fire

from dcl_cstp_ext.reports.pipeline_results import find_metric

LOSS_KEYS = ("train_loss", "train_nce", "train_cs", "train_kl", "train_z_std", "train_bank_gap")
#: stage overrides that only say where things are, left out of ``pretrain_overrides``
PATH_KEYS = ("bundle_root", "dataset_dir", "output_dir", "ckpt_dir", "split_file", "synthetic_dir")


def _pretraining(run: Path, init: str) -> dict:
    """Wall time and final losses of ``run/pretrain/<init>`` (empty for random init or a missing stage)."""
    stage = run / "pretrain" / init
    out = {}
    if (stage / "DONE.json").is_file():
        done = json.loads((stage / "DONE.json").read_text())
        out["pretrain_seconds"] = done.get("seconds")
        if "overrides" in done:
            out["pretrain_overrides"] = {k: v for k, v in done["overrides"].items() if k not in PATH_KEYS}
    metrics = stage / "eval" / "metrics.jsonl"
    if metrics.is_file():
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        epochs = [r for r in rows if "train_loss" in r]
        if epochs:
            out["pretrain_epochs"] = epochs[-1].get("epoch")
            out["pretrain_iterations"] = epochs[-1].get("iteration")
            out["pretrain_end"] = {k: epochs[-1][k] for k in LOSS_KEYS if k in epochs[-1]}
            if "train_z_std" in epochs[-1]:
                out["pretrain_lowest_z_std"] = min(r["train_z_std"] for r in epochs if "train_z_std" in r)
    return out


def _finetunes(run: Path) -> list[dict]:
    """One row per finished evaluation stage: init, label fraction, seed, split and its image count, each metric (a
    segmenter's mean over images, a classifier's summary score; fractions, not percent), wall times."""
    rows = []
    for path in sorted((run / "finetune").glob("*/lf*/seed*/evaluate/metrics.json")):
        evaluate = path.parent
        init, fraction, seed = evaluate.parents[2].name, evaluate.parents[1].name[2:], evaluate.parent.name[4:]
        metrics = json.loads(path.read_text())
        summary = metrics.get("summary", {})  # the classifier's scores and count; the segmenters' are per metric
        count = find_metric(metrics, ("n", "num_images"))
        row = {"init": init, "label_fraction": float(fraction), "seed": int(seed), "split": metrics.get("split"),
               "n": None if count is None else int(count)}
        row.update({k: v["mean"] for k, v in metrics.items() if isinstance(v, dict) and "mean" in v})
        row.update({k: v for k, v in summary.items() if k != "num_images" and isinstance(v, (int, float))})
        for stage in ("train", "evaluate"):
            done = evaluate.parent / stage / "DONE.json"
            if done.is_file():
                row[f"{stage}_seconds"] = json.loads(done.read_text()).get("seconds")
        rows.append(row)
    return rows


def _commands(run: Path) -> list[dict]:
    """Every pipeline command run in ``run`` (``run_info.json``), oldest first: start time, arguments, code."""
    path = run / "run_info.json"
    if not path.is_file():
        return []
    records = json.loads(path.read_text())
    return [{"started": r.get("started"), "argv": r.get("argv", [])[1:], "code": r.get("code")}
            for r in (records if isinstance(records, list) else [records])]


def collect(run: str, json_path: str | None = None) -> dict:
    """Read ``run``'s probe stages (random init first), fine-tunings and statistics; write them to ``json_path``."""
    run_dir = Path(run)
    probes = sorted((run_dir / "probe").glob("*/probe.json"), key=lambda p: (p.parent.name != "random", p.parent.name))
    if not probes:
        raise SystemExit(f"{run_dir / 'probe'}: no finished probe stage (*/probe.json); run the pipeline with --probe")
    pipeline = json.loads((run_dir / "pipeline.json").read_text())
    results, environment = [], None
    for i, path in enumerate(probes):
        row = json.loads(path.read_text())
        own = row.pop("environment", None)
        if i == 0:
            environment = own
        elif own != environment:  # a probe run by other code or software than the first keeps its own record
            row["environment"] = own
        results.append({"init": path.parent.name, **row, **_pretraining(run_dir, path.parent.name)})
    first = results[0]
    summary = {"dataset_dir": pipeline.get("data_root"), "task": pipeline.get("task"), "preset": pipeline.get("preset"),
               "source": "dcl-cstp pipeline run: RUN/probe/<init>/probe.json, RUN/finetune/<init>/lf<f>/seed<s>/"
                         "evaluate/metrics.json, RUN/statistics.json",
               "protocol": f"{first['folds']}-fold cross-validation", "labels": first["labels"],
               "majority_class_accuracy": first["majority_class_accuracy"], "results": results,
               "finetunes": _finetunes(run_dir), "commands": _commands(run_dir), "environment": environment}
    if (run_dir / "statistics.json").is_file():
        summary["statistics"] = json.loads((run_dir / "statistics.json").read_text())
    if json_path:
        Path(json_path).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def main(run: str, json_path: str | None = None) -> None:
    """Print the gathered results as JSON, or write them to ``json_path`` and say how many rows it holds."""
    summary = collect(run, json_path)
    if json_path is None:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"{json_path}: {len(summary['results'])} probes, {len(summary['finetunes'])} fine-tunings")


if __name__ == "__main__":
    fire.Fire(main)
