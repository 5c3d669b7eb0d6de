"""benchmarks/bank_staleness.py: a finished MoCo-v2 stage's memory bank measured against fresh keys of its own views."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bank_staleness import main, measure  # noqa: E402

from dcl_cstp_ext.pipeline.pipeline import PipelineConfig, prepare_run, run_stages  # noqa: E402
from dcl_cstp_ext.pipeline.stages import pretrain_stage  # noqa: E402


def test_bank_staleness_of_a_finished_stage(tmp_path, demo_data):
    cfg = PipelineConfig(task="kvasir_seg", data_root=str(demo_data["kvasir_seg"]), out=str(tmp_path / "run"),
                         preset="tiny", methods=())
    stage = pretrain_stage(cfg, prepare_run(cfg), "mocov2", "mocov2")
    run_stages([stage])
    report = measure(stage.workdir, batches=2, batch_size=4)
    assert report["method"] == "mocov2" and report["batches"] == 2 and 0 < report["bank_filled"] <= report["bank_size"]
    assert report["bank_gap"] == pytest.approx(report["cos_fresh_keys_of_other_images"] - report["cos_bank_keys"],
                                               abs=0.05)  # the same means, per query instead of over all pairs
    assert all(0.0 <= report[k] <= 1.0 for k in ("own_key_above_fresh_keys", "own_key_above_bank_keys"))
    main(stage.workdir, batches=1, batch_size=4, json_path=str(tmp_path / "s.json"))
    assert "environment" in json.loads((tmp_path / "s.json").read_text())
    simsiam = pretrain_stage(cfg, prepare_run(cfg), "simsiam", "simsiam")
    run_stages([simsiam])
    with pytest.raises(SystemExit, match="no memory bank"):
        measure(simsiam.workdir)
