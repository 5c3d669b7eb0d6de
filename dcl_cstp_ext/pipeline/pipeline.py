"""The main job: LDM synthesis -> pre-training per initialisation -> fine-tuning and evaluation -> report.

Every stage runs a bundle through MONAI's bundle API (:func:`~dcl_cstp_ext.pipeline.runner.run_stage`) with the
bundle's own configs, the preset's overlays and a few overrides (paths, method, seed); nothing of the bundles'
logic is repeated here. Layout of ``RUN_DIR``::

    run_info.json                 command, versions, machine (one entry per start)
    ldm/{autoencoder,diffusion,samples,curation}/
    pretrain/<method>/{models,eval}/      one per pre-training initialisation
    finetune/<init>/lf<fraction>/seed<k>/{train,evaluate}/
    report.md, report.html, figures/
    submitit/                     job pickles and logs (``--launcher slurm`` or ``local``: :mod:`.launcher`)
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from ..settings import SettingsError
from ..settings import check_overrides as settings_check
from ..utils import record_run
from .config import PipelineConfig
from .lock import stage_lock, wait_for_stage
from .runner import (
    BundleStage,
    StageBusy,
    StaleStage,
    changed_settings,
    merged_config,
    reset_stage,
    run_stage,
    stage_done,
)
from .stages import missing_input, plan, write_split

__all__ = ["check_overrides", "check_settings", "finish_run", "prepare_run", "run_pipeline", "run_stages"]

logger = logging.getLogger("dcl_cstp.pipeline")


def run_stages(stages: list[BundleStage], keep_checkpoints: bool = False) -> dict[str, str]:
    """Run (or skip as done) ``stages`` in plan order; returns the stages that could not run, with why.

    A stage that another process is running (:class:`StageBusy`) is put off, and so is every stage that needs it:
    this process goes on with the others and comes back to them, and where nothing else is left it waits until
    the other process lets go of the first of them. So several pipelines started on one run folder (one per GPU,
    say) share its stages, and none runs a stage twice.
    """
    pending, skipped, told = list(stages), {}, set()
    while pending:
        ran, busy, put_off = False, [], set()  # busy: held by another process; put_off: those and what needs them
        for stage in list(pending):
            lost = next((n for n in stage.needs if n in skipped), None)
            reason = f"it needs {lost}, which was skipped" if lost else None
            if reason is None and any(n in put_off for n in stage.needs):
                put_off.add(stage.name)
                continue
            reason = reason or missing_input(stage)
            if reason:
                skipped[stage.name] = reason
                logger.warning(f"[skip] {stage.name}: {reason}")
            else:
                logger.info(f"stage {len(stages) - len(pending) + 1}/{len(stages)}")
                try:
                    run_stage(stage, keep_checkpoints=keep_checkpoints)
                except StageBusy as err:
                    busy.append(stage)
                    put_off.add(stage.name)
                    if stage.name not in told:
                        told.add(stage.name)
                        logger.info(f"[busy] {stage.name}: {err}; going on with the stages that do not need it")
                    continue
                ran = True
            pending.remove(stage)
        if pending and not ran:
            logger.info(f"waiting for {busy[0].name} (run by another process)")
            wait_for_stage(busy[0].workdir)
    return skipped


def _block_stages(block: str, stages: list[BundleStage]) -> list[BundleStage]:
    """The stages an ``--overrides`` block applies to: "pretrain", "finetune", "ldm", "probe", or one LDM stage's
    name."""
    kind = {"dcl_pretrain": "pretrain", "ldm_synthesis": "ldm"}
    return [s for s in stages if s.name == block
            or ("probe" if s.name.startswith("probe/") else kind.get(s.bundle, "finetune")) == block]


def check_overrides(cfg: PipelineConfig, stages: list[BundleStage]) -> None:
    """Refuse ``cfg.overrides`` that no stage of their block knows, or whose type or range is wrong where a stage
    has the key (:func:`dcl_cstp_ext.settings.check_overrides`), before anything runs: one :class:`SettingsError`
    naming the block and key of each problem."""
    configs: dict[tuple, dict] = {}

    def raw(stage: BundleStage) -> dict:
        key = (stage.bundle, tuple(stage.configs))
        if key not in configs:
            configs[key] = merged_config(stage, overrides=False)
        return configs[key]

    problems = []
    for block, block_overrides in cfg.overrides.items():
        targets = _block_stages(block, stages)
        for key, value in block_overrides.items():
            errors = []
            for stage in targets:
                try:
                    settings_check(raw(stage), {key: value}, allow_new_keys=bool(block_overrides.get("allow_new_keys")))
                except SettingsError as err:
                    errors.append(str(err).split("\n", 1)[1].strip())
                else:
                    errors.append(None)
            wrong = [e for e in errors if e and "unknown setting" not in e]
            if wrong or (errors and all(errors)):
                problems.append(f'"{block}": {(wrong or errors)[0]}')
    if problems:
        raise SettingsError("invalid --overrides, nothing was run:\n  " + "\n  ".join(problems))


def check_settings(stages: list[BundleStage], rerun_changed: bool = False) -> list[str]:
    """Compare each finished stage of ``stages`` with the settings it is asked for now (before anything of the run is
    rewritten). Without ``rerun_changed`` a difference raises :class:`StaleStage` naming every stage and setting;
    with it, the changed stages and every stage downstream of them are reset (:func:`reset_stage`) to run again.
    Returns the names of the reset stages (plan order)."""
    stale = {}
    for stage in stages:
        done = stage_done(stage)
        changed = changed_settings(stage, done) if done else []
        if changed:
            stale[stage.name] = changed
    if stale and not rerun_changed:
        shown = "\n".join(f"  {name}: {'; '.join(changed[:5])}" + (f" (+{len(changed) - 5} more)" if len(changed) > 5
                                                                     else "") for name, changed in stale.items())
        raise StaleStage(
            f"{len(stale)} finished stage(s) of this run were made with other settings than this command asks for:\n"
            f"{shown}\nRe-run with --rerun-changed to run them and everything downstream of them again, or use a new "
            "--out (the results in this folder are kept as they are)."
        )
    reset = set(stale)
    for stage in stages:  # plan order: a stage comes after those it needs
        if reset.intersection(stage.needs):
            reset.add(stage.name)
    names = [s.name for s in stages if s.name in reset]
    for stage in stages:
        if stage.name in reset:
            reset_stage(stage)
    if names:
        logger.info(f"settings changed: running {len(names)} stage(s) again: {', '.join(names)}")
    return names


def prepare_run(cfg: PipelineConfig) -> Path:
    """Write the run's own files before its stages: ``pipeline.json``, an entry of ``run_info.json``, the split."""
    run = Path(cfg.out)
    with stage_lock(run, blocking=True):  # the run's own files: one writer at a time when processes share the run
        (run / "pipeline.json").write_text(json.dumps(cfg.__dict__, indent=2, default=str))
        record_run(str(run), name="run_info.json", pipeline=cfg.__dict__)
        write_split(cfg)
    return run


def finish_run(run: str | Path, skipped: dict[str, str], report: bool = True) -> Path:
    """Once every stage is done or skipped: write ``skipped.json`` and, with ``report``, the report (its path is
    returned; the run folder without)."""
    run = Path(run)
    with stage_lock(run, blocking=True):
        (run / "skipped.json").write_text(json.dumps(skipped, indent=2))
        if not report:
            return run
        # imported here: the report module reads pipeline.presets, so a module-level import would make
        # ``from dcl_cstp_ext.reports.pipeline_report import write_report`` in a fresh process (``dcl-cstp report``)
        # a circular import
        from ..reports.pipeline_report import write_report

        return write_report(run)


def run_pipeline(cfg: PipelineConfig, report: bool = True) -> Path:
    """Run (or resume) every stage of :func:`plan`, then write the report. Returns the report path.

    Several processes may run the same command on one ``--out`` folder: they share the stages (:func:`run_stages`).
    On a cluster, :func:`~dcl_cstp_ext.pipeline.launcher.launch_pipeline` submits the stages as jobs instead.
    """
    stages = plan(cfg)
    check_overrides(cfg, stages)
    check_settings(stages, cfg.rerun_changed)  # before pipeline.json says what the run's results were made with
    run = prepare_run(cfg)
    start = time.perf_counter()
    logger.info(f"{len(stages)} stages for {cfg.task} ({cfg.preset} preset) in {run}")
    skipped = run_stages(stages, keep_checkpoints=cfg.keep_checkpoints)
    logger.info(f"all stages done in {time.perf_counter() - start:.0f}s")
    return finish_run(run, skipped, report)
