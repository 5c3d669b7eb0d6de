"""Issue #23, "Runs": a finished stage asked for with other settings is refused (naming them) before the run's files
are rewritten, or run again with everything downstream of it (``--rerun-changed``). The bundles' workflows are
replaced by a recorder: what is tested is the bookkeeping around them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from monai.bundle import ConfigParser

from dcl_cstp_ext.pipeline import PipelineConfig, run_pipeline, runner
from dcl_cstp_ext.pipeline.runner import BundleStage, StaleStage, run_stage, stage_done


class RecordingWorkflow:
    """Stands in for ``monai.bundle.ConfigWorkflow``: merges the configs as it would, and only writes an empty
    ``encoder.pt`` into its ``ckpt_dir`` (what the fine-tunings check for)."""

    ran: list[str] = []

    def __init__(self, config_file, meta_file, workflow_type, **overrides):
        self.parser = ConfigParser()
        self.parser.read_config(config_file)
        self.parser.update(overrides)
        self.workdir = overrides.get("output_dir", "")
        self.ckpt_dir = overrides.get("ckpt_dir")

    def initialize(self):
        pass

    def run(self):
        RecordingWorkflow.ran.append(self.workdir)
        if self.ckpt_dir:
            Path(self.ckpt_dir).mkdir(parents=True, exist_ok=True)
            (Path(self.ckpt_dir) / "encoder.pt").touch()

    def finalize(self):
        pass


@pytest.fixture
def recorded(monkeypatch):
    RecordingWorkflow.ran = []
    monkeypatch.setattr(runner, "ConfigWorkflow", RecordingWorkflow)
    return RecordingWorkflow.ran


def _stage(tmp_path, **overrides):
    return BundleStage("finetune/train", "kvasir_seg", ["train.json"], tmp_path / "stage",
                       {"output_dir": str(tmp_path / "stage"), "max_epochs": 1, **overrides})


def test_a_finished_stage_records_its_settings_and_refuses_other_ones(tmp_path, recorded):
    run_stage(_stage(tmp_path))
    done = stage_done(_stage(tmp_path))
    assert done["config"]["max_epochs"] == 1 and len(done["config_hash"]) == 16 and "bundle_root" not in done["config"]
    run_stage(_stage(tmp_path))  # the same settings: skipped
    run_stage(_stage(tmp_path, device="cuda:1"))  # another device (pipelines sharing the run folder): skipped
    assert len(recorded) == 1
    with pytest.raises(StaleStage, match=r"was run with other settings: lr: 0\.0001 -> 0\.1; max_epochs: 1 -> 3"):
        run_stage(_stage(tmp_path, max_epochs=3, lr=0.1))
    run_stage(_stage(tmp_path, max_epochs=3), force=True)
    assert len(recorded) == 2


def test_a_stage_finished_before_hashes_were_kept_is_still_skipped(tmp_path, recorded):
    (tmp_path / "stage").mkdir()
    runner.write_done(tmp_path / "stage", {"seconds": 1.0})
    assert run_stage(_stage(tmp_path, max_epochs=5)) == {"seconds": 1.0} and recorded == []


def _cfg(tmp_path, demo_data, **kw):
    return PipelineConfig(task="kvasir_seg", data_root=str(demo_data["kvasir_seg"]), out=str(tmp_path / "run"),
                          preset="tiny", device="cpu", methods=("random", "simclr"), **kw)


def test_the_pipeline_refuses_changed_settings_before_rewriting_its_files_or_reruns_them(tmp_path, demo_data, recorded):
    run_pipeline(_cfg(tmp_path, demo_data), report=False)
    first = len(recorded)
    assert first >= 4  # pre-training, and train + evaluate per initialisation
    pipeline_json = (tmp_path / "run" / "pipeline.json").read_text()

    changed = _cfg(tmp_path, demo_data, overrides={"pretrain": {"max_epochs": 9}})
    with pytest.raises(StaleStage, match=r"1 finished stage\(s\).*\n  pretrain/simclr: max_epochs: \d+ -> 9"
                                         r"[\s\S]*--rerun-changed"):
        run_pipeline(changed, report=False)
    assert (tmp_path / "run" / "pipeline.json").read_text() == pipeline_json and len(recorded) == first

    rerun = _cfg(tmp_path, demo_data, overrides={"pretrain": {"max_epochs": 9}}, rerun_changed=True)
    run_pipeline(rerun, report=False)
    again = [w.split("/run/")[-1] for w in recorded[first:]]
    assert again[0].startswith("pretrain/simclr") and len(again) == 4  # and its probe, fine-tuning and evaluation
    assert all("simclr" in w for w in again)
    assert json.loads((tmp_path / "run" / "pipeline.json").read_text())["overrides"] == {"pretrain": {"max_epochs": 9}}
    run_pipeline(rerun, report=False)  # now in step: nothing runs
    assert len(recorded) == first + len(again)
