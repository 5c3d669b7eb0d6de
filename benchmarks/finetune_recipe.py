"""One row of a fine-tuning recipe table (issue #20): train a downstream bundle through the pipeline's own
fine-tuning stage (the run's seeded split, a preset, the per-initialisation recipe, your overrides), then evaluate
the best model on the validation split with each test-time flip setting asked for.

    OMP_NUM_THREADS=2 python benchmarks/finetune_recipe.py --task kvasir_seg --data-root ../shared/data/kvasir-seg \\
        --out RUN_DIR --name cpu --json-path benchmarks/results/recipe_kvasir_cpu.json

``--overrides`` is the pipeline's (``{"finetune": {...}}``); ``--encoder`` fine-tunes a pre-trained encoder
(``models/encoder.pt`` of a dcl_pretrain run) instead of random initialisation. The row holds the validation
metric of the best and of the last epoch (``val_metrics.jsonl``), the evaluation of the best model per TTA
setting, the wall-clock training time, the threads, and the versions.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import replace
from pathlib import Path

import fire
import monai
import torch

from dcl_cstp_ext.pipeline.config import PipelineConfig
from dcl_cstp_ext.pipeline.pipeline import prepare_run, run_stages
from dcl_cstp_ext.pipeline.stages import finetune_stages

METRIC = {"kvasir_seg": "val_mean_dice", "isic_seg": "val_mean_dice", "pneumonia_cls": "val_accuracy"}


def evaluation_score(metrics: dict) -> float:
    """The headline number of an evaluation's ``metrics.json``: mean Dice (segmentation) or accuracy."""
    if "dice" in metrics:
        return float(metrics["dice"]["mean"])
    return float(metrics.get("summary", metrics)["accuracy"])  # classification: under "summary"


def recipe_row(task: str, data_root: str, out: str, name: str = "cpu", preset: str = "cpu",
               overrides: str | dict | None = None, encoder: str | None = None, seed: int = 0,
               tta: str = "none,hv", json_path: str | None = None) -> dict:
    """Train and evaluate one recipe; returns (and writes) its row."""
    overrides = json.loads(overrides) if isinstance(overrides, str) else dict(overrides or {})
    init = "pretrained" if encoder else "random"
    cfg = PipelineConfig(task=task, data_root=data_root, out=out, preset=preset, methods=("random",),
                         overrides=overrides)
    run = prepare_run(cfg)
    train, evaluate = finetune_stages(cfg, run, init, Path(encoder) if encoder else None, 1.0, seed)
    skipped = run_stages([train], keep_checkpoints=False)
    if skipped:
        raise RuntimeError(f"the fine-tuning did not run: {skipped}")
    train_wall = json.loads((Path(train.workdir) / "DONE.json").read_text())["seconds"]
    val_log = Path(train.overrides["output_dir"]) / "val_metrics.jsonl"
    log = [json.loads(line) for line in val_log.read_text().splitlines() if line.strip()]
    key = METRIC[task]
    curve = [float(r[key]) for r in log if key in r]
    evaluations = {}
    for flips in tta.split(",") if isinstance(tta, str) else tta:  # fire gives "none,h" as a tuple
        workdir = Path(evaluate.workdir).with_name(f"evaluate_tta_{flips}")
        stage = replace(evaluate, name=f"{evaluate.name}_tta_{flips}", workdir=workdir,
                        overrides={**evaluate.overrides, "tta": flips, "output_dir": str(workdir)})
        run_stages([stage], keep_checkpoints=True)
        metrics = json.loads((Path(stage.overrides["output_dir"]) / "metrics.json").read_text())
        evaluations[flips] = {"score": evaluation_score(metrics), "split": metrics.get("split"), "n": metrics.get("n", metrics.get("summary", {}).get("num_images"))}
    row = {
        "task": task, "name": name, "init": init, "encoder": encoder, "preset": preset, "overrides": overrides,
        "configs": train.configs, "seed": seed, "metric": key, "val_best": max(curve) if curve else None,
        "val_best_epoch": 1 + curve.index(max(curve)) if curve else None, "val_last": curve[-1] if curve else None,
        "val_curve": curve, "evaluate_best_model": evaluations, "train_wall_seconds": round(train_wall, 1),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "torch": torch.__version__, "monai": monai.__version__,
        "python": platform.python_version(), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(row, indent=2, default=str) + "\n")
    print(json.dumps({k: row[k] for k in ("name", "val_best", "val_best_epoch", "val_last", "evaluate_best_model",
                                          "train_wall_seconds")}, default=str))
    return row


def main(**kwargs) -> None:
    """Command line: :func:`recipe_row` (its one-line summary is printed, not the whole row)."""
    recipe_row(**kwargs)


if __name__ == "__main__":
    from dcl_cstp_ext.cli import keep_json_text

    fire.Fire(main, command=keep_json_text(sys.argv[1:]))
