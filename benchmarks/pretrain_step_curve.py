"""How many pre-training steps does a method need on your data before its frozen features beat a random encoder's?

Pre-trains one method through the pipeline's own pre-training stage (the run's seeded split, a preset, your
overrides) for ``--epochs`` epochs, keeping the encoder every ``--every`` epochs (``keep_encoder_every``), then
probes the random encoder and every kept one with the cross-validated probe of ``probe_encoders.py --protocol cv``
(k-NN and linear on the pooled feature; the dense probe of the mask for segmentation data), each paired against
the random encoder. The kept encoders come from one run of ``--epochs`` epochs, so the early ones were taken
before their learning rate was annealed: read the curve as "does the probe still rise with more steps", not as
the result of shorter runs.

    python benchmarks/pretrain_step_curve.py --task kvasir_seg --data-root ../shared/data/kvasir-seg \
        --method dcl_cstp --epochs 60 --every 15 --out RUN_DIR --json-path benchmarks/results/step_curve.json

``--epochs`` is the whole budget: the preset's step budget (``max_steps``; the ``cpu`` preset's 1,320 steps are 60
epochs of Kvasir-SEG, 10 of the chest X-rays) is switched off.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import fire

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_encoders import probe  # noqa: E402

from dcl_cstp_ext.networks import read_export_meta  # noqa: E402
from dcl_cstp_ext.pipeline.config import PipelineConfig  # noqa: E402
from dcl_cstp_ext.pipeline.pipeline import prepare_run, run_stages  # noqa: E402
from dcl_cstp_ext.pipeline.presets import task_spec  # noqa: E402
from dcl_cstp_ext.pipeline.stages import datalist_kwargs, pretrain_stage, split_file  # noqa: E402


def kept_encoders(models_dir: Path) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of every ``encoder_epoch<N>.pt`` in ``models_dir``, by epoch."""
    found = [(int(re.fullmatch(r"encoder_epoch(\d+)\.pt", p.name).group(1)), p)
             for p in models_dir.glob("encoder_epoch*.pt")]
    return sorted(found)


def curve_config(task: str, data_root: str, out: str, method: str, epochs: int, every: int, preset: str,
                 overrides: dict) -> PipelineConfig:
    """The pipeline settings of the curve's one pre-training: ``epochs`` whole epochs (the preset's step budget,
    ``max_steps``, switched off: it would end the run early), the encoder kept every ``every`` epochs."""
    if every < 1 or epochs < every:
        raise ValueError(f"--every must be in [1, --epochs]; got every={every}, epochs={epochs}")
    if "max_steps" in overrides.get("pretrain", {}):
        raise ValueError("--overrides pretrain.max_steps: the curve's length is --epochs; drop max_steps")
    pretrain = {**overrides.get("pretrain", {}), "max_epochs": epochs, "max_steps": -1, "keep_encoder_every": every}
    return PipelineConfig(task=task, data_root=data_root, out=out, preset=preset, methods=(method,),
                          overrides={**overrides, "pretrain": pretrain})


def step_curve(task: str, data_root: str, out: str, method: str = "dcl_cstp", epochs: int = 60, every: int = 15,
               preset: str = "cpu", overrides: str | dict | None = None, image_size: int = 128,
               backbone: str = "resnet18", json_path: str | None = None) -> dict:
    """Pre-train, keep the encoder every ``every`` epochs, probe each; returns (and writes) the probe report with the
    epochs and optimiser steps of every encoder. ``overrides``: the pipeline's ``--overrides`` (JSON or dict), e.g.
    ``{"pretrain": {"train#trainer#epoch_length": 22}, "finetune": {"datalist_kwargs": {"num_classes": 3}}}``."""
    overrides = json.loads(overrides) if isinstance(overrides, str) else dict(overrides or {})
    cfg = curve_config(task, data_root, out, method, epochs, every, preset, overrides)
    run = prepare_run(cfg)
    stage = pretrain_stage(cfg, run, f"{method}_{epochs}ep", method)
    start = time.perf_counter()
    skipped = run_stages([stage], keep_checkpoints=False)
    if skipped:
        raise RuntimeError(f"the pre-training did not run: {skipped}")
    kept = kept_encoders(Path(stage.workdir) / "models")
    done = json.loads((Path(stage.workdir) / "DONE.json").read_text())
    steps_per_epoch = read_export_meta(Path(stage.workdir) / "models" / "encoder.pt")["iteration"] // epochs
    report = probe(data_root, encoders=",".join(["random", *[str(p) for _, p in kept]]), image_sizes=str(image_size),
                   backbone=backbone, in_channels=task_spec(task)["in_channels"], datalist_kwargs=datalist_kwargs(cfg),
                   split_file=str(split_file(cfg)), protocol="cv")
    for row in report["results"]:
        epoch = next((e for e, p in kept if str(p) == row["encoder"]), 0)
        row.update(epoch=epoch, steps=epoch * steps_per_epoch)
    report.update(method=method, epochs=epochs, every=every, preset=preset, overrides=overrides,
                  pretrain_seconds=done["seconds"], curve_seconds=time.perf_counter() - start)
    if json_path:
        Path(json_path).write_text(json.dumps(report, indent=2, default=str))
    for row in report["results"]:
        diffs = {k.removesuffix("_vs_random"): v["difference"] for k, v in row.items() if k.endswith("_vs_random")}
        print(f"epoch {row['epoch']:4d} ({row['steps']:5d} steps): "
              + ", ".join(f"{k} {row[k]:.1f}" + (f" ({diffs[k]:+.1f})" if k in diffs else "")
                          for k in ("knn_accuracy", "linear_accuracy", "dense_dice") if k in row))
    return report


if __name__ == "__main__":
    from dcl_cstp_ext.cli import keep_json_text

    fire.Fire(step_curve, command=keep_json_text(sys.argv[1:]))
