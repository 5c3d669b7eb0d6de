"""benchmarks/collect_run.py: one results file from a pipeline run's probes, fine-tunings and statistics."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from collect_run import collect  # noqa: E402


def _probe(run: Path, init: str, knn: float, environment: dict | None = None) -> None:
    (run / "probe" / init).mkdir(parents=True)
    row = {"encoder": "random" if init == "random" else f"{run}/pretrain/{init}/models/encoder.pt", "folds": 5,
           "labels": "lesion-size tertiles", "majority_class_accuracy": 33.4, "knn_accuracy": knn,
           "environment": environment or {"torch": "x"}}
    (run / "probe" / init / "probe.json").write_text(json.dumps(row))


def test_random_first_then_each_method_with_its_pretraining(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "pipeline.json").write_text(json.dumps({"data_root": "/data/kvasir", "task": "kvasir_seg", "preset": "cpu"}))
    for init, knn in (("simclr", 80.0), ("dcl_cstp", 78.0), ("random", 70.0)):
        _probe(run, init, knn)
    (run / "pretrain" / "dcl_cstp" / "eval").mkdir(parents=True)
    (run / "pretrain" / "dcl_cstp" / "DONE.json").write_text(json.dumps(
        {"seconds": 2100.5, "overrides": {"bundle_root": "/code/bundles/dcl_pretrain", "dataset_dir": "/data/kvasir",
                                          "method": "dcl_cstp", "train#augmentation#ops": ["rotate", "pnp"]}}))
    (run / "run_info.json").write_text(json.dumps([
        {"started": "2026-12-07T15:41:59+0000", "argv": ["/code/cli.py", "pipeline", "--overrides", "{...}"],
         "code": {"commit": "abc", "dirty": False}, "platform": "Linux"}]))
    lines = [{"epoch": 1, "iteration": 22, "train_loss": 5.4, "train_z_std": 0.9},
             {"epoch": 1, "knn_accuracy": 0.4},
             {"epoch": 2, "iteration": 44, "train_loss": 4.5, "train_cs": -0.1, "train_z_std": 1.0}]
    (run / "pretrain" / "dcl_cstp" / "eval" / "metrics.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")

    out = tmp_path / "probes.json"
    summary = collect(str(run), json_path=str(out))
    assert json.loads(out.read_text()) == summary
    assert [r["init"] for r in summary["results"]] == ["random", "dcl_cstp", "simclr"]
    assert summary["protocol"] == "5-fold cross-validation" and summary["dataset_dir"] == "/data/kvasir"
    assert summary["environment"] == {"torch": "x"} and "environment" not in summary["results"][0]
    dcl = summary["results"][1]
    assert dcl["pretrain_seconds"] == 2100.5 and dcl["pretrain_iterations"] == 44
    assert dcl["pretrain_end"] == {"train_loss": 4.5, "train_cs": -0.1, "train_z_std": 1.0}
    assert dcl["pretrain_lowest_z_std"] == 0.9
    # what the stage ran with beyond the configs, without the paths; and the command that made the folder
    assert dcl["pretrain_overrides"] == {"method": "dcl_cstp", "train#augmentation#ops": ["rotate", "pnp"]}
    assert summary["commands"] == [{"started": "2026-12-07T15:41:59+0000", "argv": ["pipeline", "--overrides", "{...}"],
                                    "code": {"commit": "abc", "dirty": False}}]
    assert "pretrain_seconds" not in summary["results"][2]  # no stage folder: nothing made up
    assert summary["finetunes"] == [] and "statistics" not in summary


def test_fine_tunings_and_statistics_are_gathered(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "pipeline.json").write_text(json.dumps({"task": "kvasir_seg"}))
    _probe(run, "random", 70.0)
    for init, dice in (("random", 0.5), ("dcl_cstp", 0.52)):
        stage = run / "finetune" / init / "lf0.1" / "seed2"
        (stage / "evaluate").mkdir(parents=True)
        (stage / "train").mkdir()
        (stage / "train" / "DONE.json").write_text(json.dumps({"seconds": 276.0}))
        (stage / "evaluate" / "metrics.json").write_text(json.dumps(
            {"n": 176, "split": "validation", "image_size": 128, "dice": {"mean": dice, "std": 0.2},
             "hd_units": "pixels"}))
    (run / "statistics.json").write_text(json.dumps({"references": ["random"], "comparisons": []}))
    summary = collect(str(run))
    assert summary["finetunes"] == [
        {"init": "dcl_cstp", "label_fraction": 0.1, "seed": 2, "split": "validation", "n": 176, "dice": 0.52,
         "train_seconds": 276.0},
        {"init": "random", "label_fraction": 0.1, "seed": 2, "split": "validation", "n": 176, "dice": 0.5,
         "train_seconds": 276.0}]
    assert summary["statistics"] == {"references": ["random"], "comparisons": []}


def test_a_classifiers_scores_and_image_count_are_gathered(tmp_path):
    """The classifier's evaluation keeps its scores and count in ``summary`` (no per-metric ``mean``)."""
    run = tmp_path / "run"
    evaluate = run / "finetune" / "random" / "lf0.1" / "seed0" / "evaluate"
    evaluate.mkdir(parents=True)
    (run / "pipeline.json").write_text(json.dumps({"task": "pneumonia_cls"}))
    _probe(run, "random", 76.3)
    (evaluate / "metrics.json").write_text(json.dumps(
        {"split": "validation", "summary": {"num_images": 1043, "accuracy": 0.78, "roc_auc_macro_ovr": 0.90},
         "per_class": {"normal": {"support": 268, "recall": 0.97}}}))
    assert collect(str(run))["finetunes"] == [
        {"init": "random", "label_fraction": 0.1, "seed": 0, "split": "validation", "n": 1043, "accuracy": 0.78,
         "roc_auc_macro_ovr": 0.90}]


def test_a_run_without_probe_stages_is_refused_by_name(tmp_path):
    (tmp_path / "pipeline.json").write_text("{}")
    with pytest.raises(SystemExit, match="no finished probe stage"):
        collect(str(tmp_path))


def test_a_probe_run_by_other_code_keeps_its_own_environment(tmp_path):
    """A method added to a run folder later, by a newer commit, must not be reported under the first probe's."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "pipeline.json").write_text(json.dumps({"task": "isic_seg"}))
    old, new = {"code": {"commit": "a" * 40, "dirty": False}}, {"code": {"commit": "b" * 40, "dirty": False}}
    _probe(run, "random", 70.0, old)
    _probe(run, "dcl_cstp", 75.0, old)
    _probe(run, "mocov2", 72.0, new)
    summary = collect(str(run))
    assert summary["environment"] == old
    rows = {r["init"]: r for r in summary["results"]}
    assert "environment" not in rows["random"] and "environment" not in rows["dcl_cstp"]
    assert rows["mocov2"]["environment"] == new
