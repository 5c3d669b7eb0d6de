"""The cluster launcher (submitit): one job per stage after the stages it needs, done stages not submitted, the
report last, SLURM's dependency options. Fake stages only write their DONE.json: no bundle runs (but in the
last test, marked slow, which runs the tiny pipeline through the local executor)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from dcl_cstp_ext.pipeline import launcher
from dcl_cstp_ext.pipeline.runner import BundleStage, StageBusy


@pytest.fixture
def submitit():
    module = pytest.importorskip("submitit")
    import cloudpickle

    # the jobs' processes get the fake job functions below by value: they never import this module (nor torch)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield module
    cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def fake_job(stage, needs, keep_checkpoints=False, env=None):
    """Stands in for ``launcher.stage_job``: notes the run, whether its needs were done at its start, and its times."""
    start = time.time()
    with open(stage.log, "a") as f:
        f.write(stage.name + "\n")
    needs_done = all((Path(d) / "DONE.json").is_file() for d in needs.values())
    time.sleep(0.3)
    if stage.fail:
        raise RuntimeError(f"{stage.name} fails")
    Path(stage.workdir).mkdir(parents=True, exist_ok=True)
    record = {"stage": stage.name, "start": start, "end": time.time(), "needs_done": needs_done, "env": env}
    (Path(stage.workdir) / "DONE.json").write_text(json.dumps(record))
    return record


def fake_final(root, names):
    start = time.time()
    done = {n: json.loads((Path(root) / n / "DONE.json").read_text()) for n in names}
    (Path(root) / "final.json").write_text(json.dumps({"start": start, "ends": [d["end"] for d in done.values()]}))
    return "final ran"


def _stages(root: Path, spec: dict, fail=()) -> list:
    """BundleStage-like stages ``name -> needs`` under ``root``."""
    return [SimpleNamespace(name=n, workdir=root / n, needs=tuple(needs), fail=n in fail, log=str(root / "runs.txt"))
            for n, needs in spec.items()]


def _runs(root: Path) -> list[str]:
    path = root / "runs.txt"
    return path.read_text().split() if path.is_file() else []


def _done(root: Path, name: str) -> dict:
    return json.loads((root / name / "DONE.json").read_text())


def test_local_jobs_run_once_each_after_what_they_need_and_the_final_job_last(tmp_path, submitit, monkeypatch):
    monkeypatch.setattr(launcher, "stage_job", fake_job)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    spec = {"a": (), "b": (), "c": ("a",), "done": (), "d": ("b", "c"), "e": ("done",)}
    stages = _stages(tmp_path, spec)
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "DONE.json").write_text(json.dumps({"end": 0.0}))  # finished by an earlier run
    executor = launcher.make_executor("local", tmp_path / "submitit")
    assert executor.parameters["timeout_min"] == launcher.LOCAL_TIMEOUT_MIN  # not submitit's 2 minutes
    jobs = launcher.submit_plan(stages, executor, final=(fake_final, str(tmp_path), list(spec)), poll_s=0.05)

    assert set(jobs) == {"a", "b", "c", "d", "e", launcher.FINAL}  # the done stage is not submitted
    assert sorted(_runs(tmp_path)) == ["a", "b", "c", "d", "e"]  # each once
    for name, needs in spec.items():
        if name == "done":
            continue
        record = _done(tmp_path, name)
        assert record["needs_done"], name
        assert all(record["start"] >= _done(tmp_path, n)["end"] for n in needs), name
        assert record["env"] == {"CUDA_VISIBLE_DEVICES": "3"}  # given back to the stage (submitit clears it)
    final = json.loads((tmp_path / "final.json").read_text())
    assert final["start"] >= max(final["ends"])
    results = launcher.wait_all(jobs)
    assert results[launcher.FINAL] == "final ran" and results["c"]["stage"] == "c"


def test_local_jobs_at_most_max_running_at_once(tmp_path, submitit, monkeypatch):
    monkeypatch.setattr(launcher, "stage_job", fake_job)
    stages = _stages(tmp_path, {"a": (), "b": (), "c": ()})
    jobs = launcher.submit_plan(stages, launcher.make_executor("local", tmp_path / "submitit"), max_running=1,
                                poll_s=0.05)
    spans = sorted((_done(tmp_path, n)["start"], _done(tmp_path, n)["end"]) for n in jobs)
    assert len(spans) == 3 and all(s2[0] >= s1[1] for s1, s2 in zip(spans, spans[1:]))
    with pytest.raises(ValueError, match="at least 1"):
        launcher.submit_plan(stages, launcher.make_executor("local", tmp_path / "submitit"), max_running=0)


def test_a_failed_job_stops_what_needs_it_not_the_rest(tmp_path, submitit, monkeypatch):
    monkeypatch.setattr(launcher, "stage_job", fake_job)
    stages = _stages(tmp_path, {"a": (), "b": ("a",), "c": ()}, fail=("a",))
    jobs = launcher.submit_plan(stages, launcher.make_executor("local", tmp_path / "submitit"),
                                final=(fake_final, str(tmp_path), ["c"]), poll_s=0.05)
    assert set(jobs) == {"a", "c"}  # neither b nor the report job was submitted
    assert sorted(_runs(tmp_path)) == ["a", "c"] and (tmp_path / "c" / "DONE.json").is_file()
    with pytest.raises(RuntimeError, match=r"1 job\(s\) failed: a \(log: .*submitit"):
        launcher.wait_all(jobs)


FAKE_SBATCH = """#!/bin/sh
n=$(ls "$FAKE_SBATCH_DIR" | wc -l)
n=$((n + 100))
cp "$1" "$FAKE_SBATCH_DIR/$n.sh"
echo "Submitted batch job $n"
"""


def test_slurm_jobs_depend_on_the_jobs_of_what_they_need(tmp_path, submitit, monkeypatch):
    """A fake ``sbatch`` (and ``srun``) on PATH keeps each batch script submitit writes: no cluster needed."""
    bin_dir, scripts = tmp_path / "bin", tmp_path / "scripts"
    bin_dir.mkdir()
    scripts.mkdir()
    (bin_dir / "sbatch").write_text(FAKE_SBATCH)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for tool in ("sbatch", "srun"):
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SBATCH_DIR", str(scripts))
    spec = {"pretrain/a": (), "pretrain/b": ("pretrain/a",), "finetune/c": ("pretrain/a", "pretrain/b"),
            "done": (), "finetune/e": ("done",)}
    stages = _stages(tmp_path, spec)
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "DONE.json").write_text("{}")
    executor = launcher.make_executor("slurm", tmp_path / "submitit", timeout_min=30, gpus_per_node=1,
                                      partition="gpu", slurm_extra={"account": "proj"})
    jobs = launcher.submit_plan(stages, executor, final=(fake_final, str(tmp_path), []))

    assert set(jobs) == {"pretrain/a", "pretrain/b", "finetune/c", "finetune/e", launcher.FINAL}
    ids = {name: job.job_id for name, job in jobs.items()}
    text = {}
    for path in scripts.glob("*.sh"):
        lines = [ln for ln in path.read_text().splitlines() if ln.startswith("#SBATCH")]
        name = next(ln.split("=", 1)[1] for ln in lines if ln.startswith("#SBATCH --job-name="))
        text[name.removeprefix("dcl-cstp:")] = lines
    assert set(text) == set(jobs)

    def dependency(name):
        return next((ln.split("=", 1)[1] for ln in text[name] if ln.startswith("#SBATCH --dependency=")), None)

    assert dependency("pretrain/a") is None and dependency("finetune/e") is None  # "done" has no job to wait for
    assert dependency("pretrain/b") == f"afterok:{ids['pretrain/a']}"
    assert dependency("finetune/c") == f"afterok:{ids['pretrain/a']}:{ids['pretrain/b']}"
    stage_ids = [ids[n] for n in spec if n != "done"]
    assert dependency(launcher.FINAL) == "afterok:" + ":".join(stage_ids)
    for name, lines in text.items():
        assert "#SBATCH --account=proj" in lines and "#SBATCH --partition=gpu" in lines, name
        assert "#SBATCH --gpus-per-node=1" in lines and "#SBATCH --time=30" in lines, name
        assert ("#SBATCH --kill-on-invalid-dep=yes" in lines) == (dependency(name) is not None), name
    assert not _runs(tmp_path)  # nothing ran here
    assert executor.parameters["additional_parameters"] == {"account": "proj"}  # no dependency left behind


def test_slurm_dependency_options():
    assert launcher.slurm_dependency([]) == {}
    assert launcher.slurm_dependency(["12", "34_1"]) == {"dependency": "afterok:12:34_1", "kill-on-invalid-dep": "yes"}


def test_missing_submitit_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit raises ImportError
    with pytest.raises(ImportError, match="pip install submitit"):
        launcher.make_executor("slurm", tmp_path)
    from dcl_cstp_ext.cli import CLI

    with pytest.raises(ImportError, match="pip install submitit"):
        CLI().pipeline(task="kvasir_seg", data_root=str(tmp_path), out=str(tmp_path / "run"), launcher="local")
    assert not (tmp_path / "run").exists()  # nothing written before the error
    with pytest.raises(ValueError, match="--launcher must be"):
        CLI().pipeline(task="kvasir_seg", data_root=str(tmp_path), out=str(tmp_path / "run"), launcher="pbs")


def test_unknown_needs_and_kinds_are_refused(tmp_path, submitit):
    with pytest.raises(ValueError, match="not in the plan"):
        launcher.submit_plan(_stages(tmp_path, {"b": ("a",)}), launcher.make_executor("local", tmp_path))
    with pytest.raises(ValueError, match="launcher must be one of"):
        launcher.make_executor("pbs", tmp_path)


def _bundle_stage(tmp_path, name, needs=(), **overrides):
    return BundleStage(name, "dcl_pretrain", ["train.json"], tmp_path / name, overrides, needs=tuple(needs))


def test_stage_job_runs_the_stage_skips_after_a_skipped_need_and_waits_out_a_busy_stage(tmp_path, monkeypatch):
    calls = []

    def run_stage(stage, keep_checkpoints=False):
        calls.append((stage.name, keep_checkpoints))
        if len(calls) == 1:
            raise StageBusy(Path(stage.workdir) / ".lock", {"pid": 1})
        return {"stage": stage.name}

    monkeypatch.setattr(launcher, "run_stage", run_stage)
    monkeypatch.setattr(launcher, "wait_for_stage", lambda workdir: calls.append("waited"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    need = tmp_path / "need"
    need.mkdir()
    (need / "DONE.json").write_text("{}")
    st = _bundle_stage(tmp_path, "b", needs=("need",))
    record = launcher.stage_job(st, {"need": str(need)}, True, env={"CUDA_VISIBLE_DEVICES": None, "X_TEST": "1"})
    assert record == {"stage": "b"} and calls == [("b", True), "waited", ("b", True)]
    assert "CUDA_VISIBLE_DEVICES" not in os.environ and os.environ.pop("X_TEST") == "1"

    calls.clear()
    record = launcher.stage_job(st, {"lost": str(tmp_path / "lost")})
    assert record == {"stage": "b", "skipped": "it needs lost, which was skipped"} and not calls
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")  # on a cluster the marker may show late: wait a while first
    monkeypatch.setattr(launcher, "MARKER_WAIT_S", 0.3)
    start = time.monotonic()
    assert launcher.stage_job(st, {"lost": str(tmp_path / "lost")})["skipped"] and time.monotonic() - start >= 0.3
    monkeypatch.delenv("SUBMITIT_EXECUTOR")
    empty = tmp_path / "curated"
    empty.mkdir()
    record = launcher.stage_job(_bundle_stage(tmp_path, "syn", synthetic_dir=str(empty)), {})
    assert "no synthetic image passed curation" in record["skipped"] and not calls


def test_report_job_lists_why_stages_did_not_run(tmp_path):
    empty = tmp_path / "curated"
    empty.mkdir()
    stages = [_bundle_stage(tmp_path, "a"), _bundle_stage(tmp_path, "syn", synthetic_dir=str(empty)),
              _bundle_stage(tmp_path, "ft", needs=("syn",))]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "DONE.json").write_text("{}")
    assert launcher.report_job(str(tmp_path), stages, report=False) == str(tmp_path)
    skipped = json.loads((tmp_path / "skipped.json").read_text())
    assert set(skipped) == {"syn", "ft"} and "no synthetic image" in skipped["syn"]
    assert skipped["ft"] == "it needs syn, which was skipped"


@pytest.mark.slow  # no bundle runs, but each job's process imports torch and MONAI (about 6 s each)
def test_the_real_stage_and_report_jobs_run_as_local_jobs(tmp_path, submitit):
    """stage_job and report_job themselves in submitit's processes (a stage skipped for its missing input: no
    bundle runs)."""
    empty = tmp_path / "curated"
    empty.mkdir()
    stages = [_bundle_stage(tmp_path, "syn", synthetic_dir=str(empty))]
    jobs = launcher.submit_plan(stages, launcher.make_executor("local", tmp_path / "submitit"), poll_s=0.1,
                                final=(launcher.report_job, str(tmp_path), stages, False))
    results = launcher.wait_all(jobs)
    assert "no synthetic image" in results["syn"]["skipped"] and results[launcher.FINAL] == str(tmp_path)
    assert "no synthetic image" in json.loads((tmp_path / "skipped.json").read_text())["syn"]


@pytest.mark.slow
def test_tiny_pipeline_through_the_local_executor(tmp_path, demo_data, submitit):
    """The real stages as local submitit jobs (one at a time), then the report job."""
    from dcl_cstp_ext.pipeline import PipelineConfig, plan

    cfg = PipelineConfig(task="kvasir_seg", data_root=str(demo_data["kvasir_seg"]), out=str(tmp_path / "run"),
                         preset="tiny", device="cpu", methods=("random", "dcl_cstp"))
    jobs = launcher.launch_pipeline(cfg, launcher.make_executor("local", tmp_path / "run" / "submitit"), max_running=1)
    report = Path(launcher.wait_all(jobs)[launcher.FINAL])
    assert report.is_file() and "| dcl_cstp |" in report.read_text()
    assert all((Path(st.workdir) / "DONE.json").is_file() for st in plan(cfg))
    again = launcher.launch_pipeline(cfg, launcher.make_executor("local", tmp_path / "run" / "submitit"))
    assert set(again) == {launcher.FINAL}  # everything done: only the report job
