"""Several pipelines on one run folder: the per-stage lock, its release when a process dies, and shared stages."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from dcl_cstp_ext.pipeline import pipeline as pipeline_module
from dcl_cstp_ext.pipeline import runner
from dcl_cstp_ext.pipeline.lock import StageBusy, stage_lock, wait_for_stage
from dcl_cstp_ext.pipeline.runner import BundleStage

HOLD = """
import sys, time
from dcl_cstp_ext.pipeline.lock import stage_lock
with stage_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_lock_is_exclusive_and_says_who_holds_it(tmp_path):
    with stage_lock(tmp_path / "stage"):
        with pytest.raises(StageBusy, match=r"pid \d+ on .* since"):
            with stage_lock(tmp_path / "stage"):
                pass
    with stage_lock(tmp_path / "stage"):  # released on exit
        pass


def test_lock_of_a_killed_process_is_released_and_a_waiter_wakes(tmp_path):
    wait_for_stage(tmp_path / "stage")  # nothing to wait for
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "stage")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(StageBusy, match=f"pid {proc.pid} "):
            with stage_lock(tmp_path / "stage"):
                pass
        waiter = threading.Thread(target=wait_for_stage, args=(tmp_path / "stage",))
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive()  # blocked while the holder lives
    finally:
        proc.kill()
        proc.wait()
    waiter.join(10)
    assert not waiter.is_alive()
    with stage_lock(tmp_path / "stage"):  # no stale lock after a crash
        pass


def _stages(tmp_path):
    run = tmp_path / "run"
    return [
        BundleStage("pretrain/a", "dcl_pretrain", [], run / "pretrain" / "a"),
        BundleStage("pretrain/b", "dcl_pretrain", [], run / "pretrain" / "b"),
        BundleStage("finetune/a/train", "kvasir_seg", [], run / "ft" / "train", needs=("pretrain/a",)),
        BundleStage("finetune/a/evaluate", "kvasir_seg", [], run / "ft" / "evaluate", workflow_type="eval",
                    needs=("finetune/a/train",)),
        BundleStage("finetune/b/train", "kvasir_seg", [], run / "ftb" / "train", needs=("pretrain/b",)),
    ]


def test_two_pipelines_on_one_folder_share_the_stages_and_respect_their_order(tmp_path, monkeypatch):
    log, lock = [], threading.Lock()

    def fake_run(stage, workdir, keep_checkpoints):  # the real run_stage around it: lock, done-marker checks
        start = time.monotonic()
        time.sleep(0.3)
        with lock:
            log.append((stage.name, threading.current_thread().name, start, time.monotonic()))
        runner.write_done(workdir, {"seconds": 0.3})  # the real marker writer: the other worker reads it meanwhile
        return {"seconds": 0.3}

    monkeypatch.setattr(runner, "_run_locked", fake_run)
    stages = _stages(tmp_path)
    barrier = threading.Barrier(2)
    results, errors = {}, []

    def worker(name):
        try:
            barrier.wait()
            results[name] = pipeline_module.run_stages(stages)
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=worker, args=(f"w{i}",), name=f"w{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and results == {"w0": {}, "w1": {}}
    names = [entry[0] for entry in log]
    assert sorted(names) == sorted(st.name for st in stages)  # every stage ran exactly once
    assert {entry[1] for entry in log} == {"w0", "w1"}  # and both processes did work
    span = {entry[0]: entry[2:] for entry in log}
    assert span["finetune/a/train"][0] >= span["pretrain/a"][1]  # a stage starts after the stages it needs
    assert span["finetune/a/evaluate"][0] >= span["finetune/a/train"][1]
    assert span["finetune/b/train"][0] >= span["pretrain/b"][1]


def test_a_skipped_stage_skips_the_stages_that_need_it(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(pipeline_module, "run_stage", lambda stage, **kw: ran.append(stage.name))
    stages = _stages(tmp_path)
    stages[2].overrides["pretrained_encoder"] = str(tmp_path / "missing" / "encoder.pt")
    skipped = pipeline_module.run_stages(stages)
    assert "was not produced" in skipped["finetune/a/train"]
    assert skipped["finetune/a/evaluate"] == "it needs finetune/a/train, which was skipped"
    assert ran == ["pretrain/a", "pretrain/b", "finetune/b/train"]


def test_plan_declares_what_each_stage_needs(tmp_path, demo_data):
    cfg = pipeline_module.PipelineConfig(task="kvasir_seg", data_root=str(demo_data["kvasir_seg"]),
                                         out=str(tmp_path / "run"), preset="tiny", methods=("random", "dcl_cstp_syn"))
    stages = pipeline_module.plan(cfg)
    needs = {st.name: st.needs for st in stages}
    order = [st.name for st in stages]
    for name, wanted in needs.items():
        assert all(order.index(n) < order.index(name) for n in wanted), name  # plan order is a topological order
    assert needs["ldm/curation"] == ("ldm/samples", "pretrain/dcl_cstp")
    assert needs["pretrain/dcl_cstp_syn"] == ("ldm/curation",)
    assert needs["finetune/dcl_cstp_syn/lf1/seed0/train"] == ("pretrain/dcl_cstp_syn",)
    assert needs["finetune/random/lf1/seed0/train"] == ()
    assert needs["finetune/random/lf1/seed0/evaluate"] == ("finetune/random/lf1/seed0/train",)
