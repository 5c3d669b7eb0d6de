"""benchmarks/pretrain_step_curve.py: a pre-training keeps its encoder every few epochs, and each kept encoder is
probed against the random one."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from pretrain_step_curve import curve_config, step_curve  # noqa: E402

from dcl_cstp_ext.networks import read_export  # noqa: E402


def test_step_curve_keeps_and_probes_each_encoder(tmp_path, demo_data):
    report = step_curve("kvasir_seg", str(demo_data["kvasir_seg"]), str(tmp_path / "run"), method="simsiam",
                        epochs=2, every=1, preset="tiny", image_size=32, json_path=str(tmp_path / "curve.json"))
    models = tmp_path / "run" / "pretrain" / "simsiam_2ep" / "models"
    kept = sorted(p.name for p in models.glob("encoder_epoch*.pt"))
    assert kept == ["encoder_epoch1.pt", "encoder_epoch2.pt"]
    # the last kept encoder is the final export
    final, last = (read_export(models / n)[0] for n in ("encoder.pt", "encoder_epoch2.pt"))
    assert final.keys() == last.keys() and all(torch.equal(final[k], last[k]) for k in final)
    rows = report["results"]
    assert [r["epoch"] for r in rows] == [0, 1, 2] and rows[0]["encoder"] == "random"
    assert rows[2]["steps"] == 2 * rows[1]["steps"] > 0
    assert all("knn_accuracy_vs_random" in r and "dense_dice_vs_random" in r for r in rows[1:])
    assert json.loads((tmp_path / "curve.json").read_text())["results"][2]["epoch"] == 2


def test_the_curve_runs_its_epochs_past_the_presets_step_budget(tmp_path, demo_data):
    """The ``cpu`` preset stops pre-training at 1,320 steps; a curve of ``--epochs`` must not stop there (before
    the fix 120 epochs of Kvasir-SEG would have run 60, labelled with half the steps), and a step budget given in
    ``--overrides`` is refused rather than silently replaced."""
    from dcl_cstp_ext.engines.optim import epochs_for
    from dcl_cstp_ext.pipeline.runner import merged_config
    from dcl_cstp_ext.pipeline.stages import pretrain_stage

    cfg = curve_config("kvasir_seg", str(demo_data["kvasir_seg"]), str(tmp_path / "run"), "simsiam", 120, 30, "cpu",
                       {"pretrain": {"amp": False}})
    settings = merged_config(pretrain_stage(cfg, tmp_path / "run", "simsiam_120ep", "simsiam"))
    assert settings["max_epochs"] == 120 and settings["keep_encoder_every"] == 30 and settings["amp"] is False
    assert epochs_for(settings["max_epochs"], settings["max_steps"], 704, settings["batch_size"]) == 120
    with pytest.raises(ValueError, match="max_steps"):
        curve_config("kvasir_seg", str(demo_data["kvasir_seg"]), str(tmp_path / "r2"), "simsiam", 120, 30, "cpu",
                     {"pretrain": {"max_steps": 2640}})
