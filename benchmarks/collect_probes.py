"""Gather the frozen-encoder probes of one ``dcl-cstp pipeline`` run into a single results file.

Each ``RUN/probe/<init>/probe.json`` (written by the pipeline's probe stages, ``dcl_cstp_ext.engines.encoder_probe``)
becomes one row of ``results``; a pre-trained initialisation's row also gets its pre-training's wall time (the
stage's ``DONE.json``) and the last epoch's training losses (its ``eval/metrics.jsonl``), with the lowest ``z_std``
of the run. The layout is the one of ``benchmarks/results/probe_cv_*.json``.

    python benchmarks/collect_probes.py RUN --json-path benchmarks/results/probe_cv_kvasir_preset1320.json
"""

from __future__ import annotations

import json
from pathlib import Path

import fire

LOSS_KEYS = ("train_loss", "train_nce", "train_cs", "train_kl", "train_z_std", "train_bank_gap")


def _pretraining(run: Path, init: str) -> dict:
    """Wall time and final losses of ``run/pretrain/<init>`` (empty for random init or a missing stage)."""
    stage = run / "pretrain" / init
    out = {}
    if (stage / "DONE.json").is_file():
        out["pretrain_seconds"] = json.loads((stage / "DONE.json").read_text()).get("seconds")
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


def collect(run: str, json_path: str | None = None) -> dict:
    """Read ``run``'s probe stages (random init first) and write them to ``json_path`` when given."""
    run_dir = Path(run)
    probes = sorted((run_dir / "probe").glob("*/probe.json"), key=lambda p: (p.parent.name != "random", p.parent.name))
    if not probes:
        raise SystemExit(f"{run_dir / 'probe'}: no finished probe stage (*/probe.json); run the pipeline with --probe")
    pipeline = json.loads((run_dir / "pipeline.json").read_text())
    results = []
    for path in probes:
        row = json.loads(path.read_text())
        environment = row.pop("environment", None)
        results.append({"init": path.parent.name, **row, **_pretraining(run_dir, path.parent.name)})
    first = results[0]
    summary = {"dataset_dir": pipeline.get("data_root"), "task": pipeline.get("task"), "preset": pipeline.get("preset"),
               "source": "dcl-cstp pipeline probe stages, RUN/probe/<init>/probe.json",
               "protocol": f"{first['folds']}-fold cross-validation", "labels": first["labels"],
               "majority_class_accuracy": first["majority_class_accuracy"], "results": results,
               "environment": environment}
    if json_path:
        Path(json_path).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


if __name__ == "__main__":
    fire.Fire(collect)
