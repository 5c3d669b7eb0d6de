"""Submit a pipeline's plan to a scheduler through submitit: one job per stage, each after the stages it reads.

``--launcher slurm``: every stage that is not done (no ``DONE.json``) is submitted at once with
``sbatch --dependency=afterok:<ids of the jobs of its needs> --kill-on-invalid-dep=yes``, so SLURM starts a stage
only once what it reads has succeeded and cancels it if one of those failed; the submitting command returns.
``--launcher local`` (submitit's local executor, which has no dependencies): this process submits each stage once
the jobs of its needs have succeeded, runs at most ``max_running`` jobs at once, and returns when all have ended.
Either way the last job (``FINAL``) writes the report, after every stage job has succeeded.

Jobs run :func:`stage_job`, which runs the stage through :func:`~dcl_cstp_ext.pipeline.runner.run_stage`
(so the lock and the resume of the lock-file mode hold for jobs too). A stage is skipped, its job succeeding,
when a stage it needs was skipped (it left no ``DONE.json``) or its input is missing (curation kept no image):
the report lists it, as in the lock-file mode. submitit's pickles and logs go to ``executor.folder``
(``RUN_DIR/submitit/`` from the command line); the run folder and the Python environment must be on a file
system that every node sees.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from .lock import wait_for_stage
from .pipeline import check_overrides, check_settings, finish_run, prepare_run
from .runner import BundleStage, StageBusy, run_stage, stage_done
from .stages import missing_input, plan

__all__ = ["FINAL", "KINDS", "launch_pipeline", "make_executor", "report_job", "skip_reasons", "slurm_dependency",
           "stage_job", "submit_plan", "wait_all"]

logger = logging.getLogger("dcl_cstp.pipeline")

#: the launchers ``make_executor`` knows
KINDS = ("local", "slurm")
#: key of the last job (the report) in :func:`submit_plan`'s result
FINAL = "final"
#: local jobs are killed after this long (submitit's own default is 2 minutes)
LOCAL_TIMEOUT_MIN = 30 * 24 * 60
#: how long a SLURM job waits for a needed stage's DONE.json to show before taking that stage as skipped (a shared
#: file system may show a file written on another node a little late); local jobs do not wait
MARKER_WAIT_S = 60.0
#: how often the local launcher looks at its jobs
POLL_S = 1.0


def _submitit():
    try:
        import submitit
    except ImportError:
        raise ImportError("--launcher local and --launcher slurm need submitit: pip install submitit "
                          "(or pip install -e '.[cluster]')") from None
    return submitit


def make_executor(kind: str, folder: str | os.PathLike, timeout_min: int | None = None,
                  cpus_per_task: int | None = None, gpus_per_node: int | None = None, partition: str | None = None,
                  mem_gb: float | None = None, slurm_extra: dict | None = None):
    """A submitit executor writing its pickles and logs to ``folder``: ``kind`` is ``"local"`` (this machine;
    only ``timeout_min`` applies, by default :data:`LOCAL_TIMEOUT_MIN`) or ``"slurm"`` (``sbatch``; unset
    resources are the cluster's defaults; ``slurm_extra``: further sbatch options, e.g. ``{"account": "proj"}``)."""
    submitit = _submitit()
    if kind == "local":
        executor = submitit.LocalExecutor(folder)
        executor.update_parameters(timeout_min=timeout_min or LOCAL_TIMEOUT_MIN)
        return executor
    if kind != "slurm":
        raise ValueError(f"launcher must be one of {KINDS}, got {kind!r}")
    executor = submitit.AutoExecutor(folder, cluster="slurm")
    params = {"timeout_min": timeout_min, "cpus_per_task": cpus_per_task, "gpus_per_node": gpus_per_node,
              "mem_gb": mem_gb, "slurm_partition": partition, "slurm_additional_parameters": slurm_extra}
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


def slurm_dependency(job_ids: Sequence[str]) -> dict[str, str]:
    """The sbatch options that start a job after every job of ``job_ids`` has succeeded and cancel it if one
    failed (none for no ids)."""
    if not job_ids:
        return {}
    return {"dependency": "afterok:" + ":".join(str(i) for i in job_ids), "kill-on-invalid-dep": "yes"}


def _is_slurm(executor) -> bool:
    submitit = _submitit()
    return getattr(executor, "cluster", None) == "slurm" or isinstance(executor, submitit.SlurmExecutor)


def _set_slurm_job(executor, name: str, options: dict) -> None:
    """Name the next job and set its sbatch options (an AutoExecutor or a SlurmExecutor)."""
    if isinstance(executor, _submitit().SlurmExecutor):
        executor.update_parameters(job_name=name, additional_parameters=options)
    else:
        executor.update_parameters(name=name, slurm_additional_parameters=options)


def _appears(path: Path, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while not path.is_file():
        if time.monotonic() >= deadline:
            return False
        time.sleep(min(2.0, wait_s))
    return True


def stage_job(stage: BundleStage, needs: dict[str, str], keep_checkpoints: bool = False,
              env: dict[str, str | None] | None = None) -> dict:
    """What a stage's job runs: ``stage`` through ``run_stage`` (its ``DONE.json`` record is returned), or a
    ``{"stage", "skipped"}`` record when a stage it needs (``needs``: name -> workdir) left no ``DONE.json`` or its
    input is missing. ``env``: environment variables to set first (``None`` removes one). Another process running
    the stage is waited for."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    for key, value in (env or {}).items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    wait_s = MARKER_WAIT_S if os.environ.get("SUBMITIT_EXECUTOR") == "slurm" else 0.0
    lost = next((n for n, d in needs.items() if not _appears(Path(d) / "DONE.json", wait_s)), None)
    reason = f"it needs {lost}, which was skipped" if lost else missing_input(stage)
    if reason:
        logger.warning(f"[skip] {stage.name}: {reason}")
        return {"stage": stage.name, "skipped": reason}
    while True:
        try:
            return run_stage(stage, keep_checkpoints=keep_checkpoints)
        except StageBusy as err:
            logger.info(f"[busy] {stage.name}: {err}; waiting for it")
            wait_for_stage(stage.workdir)


def skip_reasons(stages: Sequence[BundleStage]) -> dict[str, str]:
    """Why each stage without ``DONE.json`` did not run, as :func:`stage_job` decided it (plan order)."""
    skipped: dict[str, str] = {}
    for st in stages:
        if stage_done(st) is None:
            lost = next((n for n in st.needs if n in skipped), None)
            skipped[st.name] = f"it needs {lost}, which was skipped" if lost else (missing_input(st) or "not run")
    return skipped


def report_job(run: str, stages: Sequence[BundleStage], report: bool = True) -> str:
    """The last job: ``skipped.json`` and the report of ``run`` (its path is returned)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    return str(finish_run(run, skip_reasons(stages), report))


def submit_plan(stages: Sequence[BundleStage], executor, keep_checkpoints: bool = False,
                final: tuple | None = None, max_running: int | None = None, poll_s: float = POLL_S) -> dict:
    """Submit every stage of ``stages`` (plan order) that is not done as one job of :func:`stage_job`, each after
    the jobs of the stages it ``needs``; returns {stage name: submitit job}.

    ``final``: ``(function, *args)``, one more job once every stage job has succeeded, under :data:`FINAL`. On
    SLURM the dependencies are sbatch's (:func:`slurm_dependency`) and this returns at once. Elsewhere (the local
    executor has none) this process submits each job once its needs' jobs have succeeded, never a job whose need
    failed, with at most ``max_running`` running, and returns when every job has ended.
    """
    if max_running is not None and max_running < 1:
        raise ValueError(f"max_running must be at least 1, got {max_running}")
    names = {st.name for st in stages}
    for st in stages:
        unknown = [n for n in st.needs if n not in names]
        if unknown:
            raise ValueError(f"stage {st.name} needs {unknown}, which are not in the plan")
    by_name = {st.name: st for st in stages}
    slurm = _is_slurm(executor)
    env = None if slurm else {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}  # submitit hides GPUs
    nodes = []  # (name, function, args, names of the nodes it waits for)
    for st in stages:
        if stage_done(st) is not None:
            logger.info(f"[done] {st.name}: not submitted")
            continue
        needs = {n: str(by_name[n].workdir) for n in st.needs}
        nodes.append((st.name, stage_job, (st, needs, keep_checkpoints, env), st.needs))
    if final is not None:
        nodes.append((FINAL, final[0], tuple(final[1:]), tuple(n[0] for n in nodes)))
    if slurm:
        return _submit_slurm(executor, nodes)
    return _submit_local(executor, nodes, max_running, poll_s)


def _submit_slurm(executor, nodes: list) -> dict:
    base = dict(executor.parameters.get("additional_parameters") or {})  # the user's own sbatch options
    jobs = {}
    try:
        for name, fn, args, needs in nodes:
            ids = [jobs[n].job_id for n in needs if n in jobs]
            _set_slurm_job(executor, f"dcl-cstp:{name}", {**base, **slurm_dependency(ids)})
            jobs[name] = executor.submit(fn, *args)
            logger.info(f"[sbatch] {name}: job {jobs[name].job_id}" + (f" after {', '.join(ids)}" if ids else ""))
    finally:
        _set_slurm_job(executor, "dcl-cstp", base)  # the executor as it was, for another submission
    return jobs


def _submit_local(executor, nodes: list, max_running: int | None, poll_s: float) -> dict:
    jobs, ended, pending = {}, {}, list(nodes)  # ended: name -> True (succeeded) / False (failed, or never run)
    to_run = {n[0] for n in nodes}
    while pending or any(n not in ended for n in jobs):
        for name, job in jobs.items():
            if name not in ended and job.done():
                ended[name] = job.exception() is None
                if not ended[name]:
                    logger.error(f"[fail] {name}: see {job.paths.stderr}")
        for node in list(pending):
            name, fn, args, needs = node
            if any(ended.get(n) is False for n in needs):
                ended[name] = False
                pending.remove(node)
                logger.warning(f"[skip] {name}: a stage it needs failed")
            elif all(ended.get(n) or n not in to_run for n in needs):
                if max_running is not None and len(jobs) - sum(n in jobs for n in ended) >= max_running:
                    break
                jobs[name] = executor.submit(fn, *args)
                pending.remove(node)
                logger.info(f"[submit] {name}: job {jobs[name].job_id}")
        if pending or any(n not in ended for n in jobs):
            time.sleep(poll_s)
    return jobs


def wait_all(jobs: dict) -> dict:
    """Wait for every job of ``jobs``; returns {name: result}, or raises RuntimeError naming each failed job and
    its log."""
    results, failed = {}, []
    for name, job in jobs.items():
        error = job.exception()
        if error is None:
            results[name] = job.result()
        else:
            failed.append(f"{name} (log: {job.paths.stderr})")
    if failed:
        raise RuntimeError(f"{len(failed)} job(s) failed: {'; '.join(failed)}")
    return results


def launch_pipeline(cfg, executor, report: bool = True, max_running: int | None = None) -> dict:
    """:func:`~dcl_cstp_ext.pipeline.pipeline.run_pipeline` through a scheduler: writes the run's own files here,
    then :func:`submit_plan` with the report as the final job. Returns {stage name or FINAL: job}."""
    stages = plan(cfg)
    check_overrides(cfg, stages)
    check_settings(stages, cfg.rerun_changed)
    run = prepare_run(cfg)
    logger.info(f"{len(stages)} stages for {cfg.task} ({cfg.preset} preset) in {run}; submitting")
    return submit_plan(stages, executor, keep_checkpoints=cfg.keep_checkpoints,
                       final=(report_job, str(run), stages, report), max_running=max_running)
