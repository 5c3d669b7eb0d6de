"""The GPU check's CPU dry run (benchmarks/gpu/run.py --tiny): every step runs and writes its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.slow
def test_gpu_check_dry_run_runs_every_step_on_the_cpu(tmp_path, demo_data):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu" / "run.py"), "--data-root",
                           str(demo_data["kvasir_seg"]), "--out", str(out), "--device", "cpu", "--tiny",
                           "--budget-s", "400"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    steps = report["steps"]
    assert set(steps) == {"a_pretrain", "b_loading_share", "c_sampling", "d_infer", "e_short_protocol"}
    for name, step in steps.items():
        assert "result" in step, f"{name}: {step}"
    assert steps["a_pretrain"]["result"]["dcl_cstp"]["step_time_vs_simsiam"] > 0
    assert 0 <= steps["b_loading_share"]["result"]["loading_share"] <= 1
    assert len(steps["c_sampling"]["result"]) == 2  # DDPM and DPM-Solver++
    assert set(steps["d_infer"]["result"]) == {"pneumonia_cls", "isic_seg", "kvasir_seg"}
    protocol = steps["e_short_protocol"]["result"]
    assert protocol["status"] == "finished", protocol["status"]
    assert set(protocol["dice"]) == {"random", "dcl_cstp"}
    for f in ("pretrain.json", "sample.json", "infer.json"):
        assert (out / f).is_file(), f


def test_a_step_that_does_not_fit_is_skipped_and_said(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_run", REPO / "benchmarks" / "gpu" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rep = mod.Report(tmp_path, budget_s=10, settings={}, device="cpu")
    rep.step("fits", 1, lambda: {"x": 1})
    rep.step("too_long", 60, lambda: {"x": 2})
    rep.step("breaks", 1, lambda: 1 / 0)
    data = json.loads((tmp_path / "gpu_check.json").read_text())["steps"]
    assert data["fits"]["result"] == {"x": 1}
    assert "needs about 60 s" in data["too_long"]["skipped"]
    assert "ZeroDivisionError" in data["breaks"]["error"]
