"""benchmarks/finetune_recipe.py and plain_monai_baseline.py (issue #20): the recipe table's rows are made by the
pipeline's own fine-tuning stage, evaluated per test-time flip setting; the reference row is the plain MONAI
script on the same split."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from finetune_recipe import evaluation_score, recipe_row  # noqa: E402
from plain_monai_baseline import main as plain_baseline  # noqa: E402


def test_recipe_row_trains_through_the_pipeline_stage_and_evaluates_each_tta(tmp_path, demo_data):
    row = recipe_row("kvasir_seg", str(demo_data["kvasir_seg"]), str(tmp_path / "run"), name="tiny", preset="tiny",
                     overrides={"finetune": {"max_epochs": 2}}, tta=("none", "hv"),  # as fire passes "none,hv"
                     json_path=str(tmp_path / "row.json"))
    assert row["configs"] == ["train.json", "presets/cpu.json", "presets/tiny.json"] and row["init"] == "random"
    assert len(row["val_curve"]) == 2 and row["val_best"] == max(row["val_curve"])
    evaluations = row["evaluate_best_model"]
    assert set(evaluations) == {"none", "hv"} and all(e["split"] == "validation" for e in evaluations.values())
    # the best model evaluated without TTA is the best validation epoch (up to float32 summation order)
    assert abs(evaluations["none"]["score"] - row["val_best"]) < 1e-4
    assert row["train_wall_seconds"] > 0
    assert json.loads((tmp_path / "row.json").read_text())["name"] == "tiny"


def test_the_headline_score_of_segmentation_and_classification_evaluations():
    assert evaluation_score({"dice": {"mean": 0.8}, "n": 10}) == 0.8
    assert evaluation_score({"summary": {"accuracy": 0.82, "num_images": 1043}}) == 0.82


def test_plain_baseline_reference_row_on_the_bundles_split(tmp_path, demo_data):
    result = plain_baseline(["--task", "kvasir_seg", "--data-root", str(demo_data["kvasir_seg"]), "--max-epochs", "1",
                             "--image-size", "32", "--threads", "1", "--json-path", str(tmp_path / "plain.json")])
    assert result["epochs"] == 1 and 0.0 <= result["value"] <= 1.0
    assert json.loads((tmp_path / "plain.json").read_text())["n_val"] == result["n_val"] > 0
