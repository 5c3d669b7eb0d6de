"""Run one bundle workflow as a pipeline stage: resolved config, log file, done-marker, resume.

A stage is finished when ``<workdir>/DONE.json`` exists: a re-run skips it, provided it asks for the settings the
stage was run with (the hash of its merged configuration, kept in ``DONE.json``); otherwise :class:`StaleStage` names
the settings that differ. An interrupted stage has no marker and runs again; the bundles' own
:class:`~dcl_cstp_ext.engines.ResumableCheckpoint` (its ``ckpt_dir`` lies in the
stage folder) makes it continue where it stopped. A running stage holds its folder's lock
(:func:`~dcl_cstp_ext.pipeline.lock.stage_lock`): another process asking for it gets :class:`StageBusy`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from monai.bundle import ConfigParser, ConfigWorkflow

from ..networks.export import remove_stale_temporaries
from ..utils import environment_info
from .lock import StageBusy, stage_lock

__all__ = ["BundleStage", "StageBusy", "StaleStage", "bundles_dir", "changed_settings", "merged_config", "reset_stage",
           "run_stage", "stage_done", "stage_settings"]

logger = logging.getLogger("dcl_cstp.pipeline")


def bundles_dir() -> Path:
    """The ``bundles/`` folder: ``$DCL_CSTP_BUNDLES`` if set, else the one beside the package (source checkout)."""
    env = os.environ.get("DCL_CSTP_BUNDLES")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "bundles"
    if not path.is_dir():
        raise FileNotFoundError(f"bundles folder not found at {path}; set DCL_CSTP_BUNDLES to the repo's bundles/")
    return path


@dataclass
class BundleStage:
    """One workflow of one bundle: ``configs`` are merged in order (train.json, overlays, presets)."""

    name: str
    bundle: str
    configs: list[str]
    workdir: Path
    overrides: dict = field(default_factory=dict)
    workflow_type: str = "train"
    #: names of the stages whose outputs this one reads (they come earlier in the plan)
    needs: tuple[str, ...] = ()


#: merged-configuration keys that do not change what a stage computes: where the bundle lies, its metadata, and the
#: device (pipelines sharing one run folder run its stages on cuda:0, cuda:1, ...)
UNCOMPARED_KEYS = ("bundle_root", "_meta_", "device")


class StaleStage(RuntimeError):
    """A finished stage that is asked for again with other settings than those it was run with."""


def stage_done(stage: BundleStage) -> dict | None:
    marker = Path(stage.workdir) / "DONE.json"
    return json.loads(marker.read_text()) if marker.is_file() else None


def merged_config(stage: BundleStage, overrides: bool = True) -> dict:
    """``stage``'s bundle config files merged in order, unresolved, with its overrides (or without)."""
    parser = ConfigParser()
    parser.read_config([str(bundles_dir() / stage.bundle / "configs" / c) for c in stage.configs])
    if overrides:
        parser.update(dict(stage.overrides))
    return parser.get()


def stage_settings(stage: BundleStage) -> dict:
    """What ``stage`` asks to run: :func:`merged_config` without :data:`UNCOMPARED_KEYS`; plain data, as JSON
    writes it."""
    config = {k: v for k, v in merged_config(stage).items() if k not in UNCOMPARED_KEYS}
    return json.loads(json.dumps(config, default=str))


def settings_hash(settings: dict) -> str:
    """A short sha256 of ``settings`` (canonical JSON)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _flat(value, prefix: str = "") -> dict:
    if isinstance(value, dict) and value:
        return {k: v for key, item in value.items()
                for k, v in _flat(item, f"{prefix}#{key}" if prefix else key).items()}
    if isinstance(value, list) and value:
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{prefix}#{i}").items()}
    return {prefix: value}


def changed_settings(stage: BundleStage, done: dict | None = None) -> list[str]:
    """``"key: old -> new"`` for each setting of the finished ``stage`` that its request now differs in (``done``:
    its ``DONE.json`` record); empty when it does not, or when the stage was finished before hashes were kept."""
    done = done if done is not None else stage_done(stage)
    if not done or "config_hash" not in done:
        return []
    fresh = stage_settings(stage)
    if settings_hash(fresh) == done["config_hash"]:
        return []
    old, new = _flat(done.get("config", {})), _flat(fresh)
    missing = "(unset)"
    changed = [f"{k}: {old.get(k, missing)!r} -> {new.get(k, missing)!r}"
               for k in sorted(old.keys() | new.keys()) if old.get(k, missing) != new.get(k, missing)]
    return changed or ["(not recorded)"]


def reset_stage(stage: BundleStage) -> None:
    """Make a finished ``stage`` run again from the start: its ``DONE.json`` and resume checkpoints go (its outputs
    are overwritten by the new run)."""
    (Path(stage.workdir) / "DONE.json").unlink(missing_ok=True)
    ckpt_dir = stage.overrides.get("ckpt_dir")
    if ckpt_dir:
        for ckpt in Path(ckpt_dir).glob("*checkpoint*.pt"):
            ckpt.unlink()


@contextlib.contextmanager
def _log_to(path: Path) -> Iterator[None]:
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s - %(name)s - %(levelname)s - %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def run_stage(stage: BundleStage, force: bool = False, keep_checkpoints: bool = False):
    """Run ``stage`` through ``monai.bundle.ConfigWorkflow`` unless it is done; returns its DONE record.

    Writes ``config.json`` (the merged config with the overrides, as run), ``log.txt`` and ``DONE.json`` (seconds,
    configs, overrides) into ``stage.workdir``. Once the stage is done, its resume checkpoints (``*checkpoint*.pt``
    in its ``ckpt_dir``: weights, momentum copies and optimiser state, 2-3x the exported weights) are removed
    unless ``keep_checkpoints``, and the temporaries of killed writes always: a finished stage never resumes, and the
    exported weights (``model.pt``, ``encoder.pt``, ``autoencoder.pt``) stay. ``DONE.json`` also holds the stage's
    merged configuration and its hash (:func:`stage_settings`).

    Raises :class:`StageBusy` if another process is running the stage, and :class:`StaleStage` (naming each setting
    that differs) if the stage is done but was run with other settings than ``stage`` asks for.
    """
    workdir = Path(stage.workdir)
    done = None if force else stage_done(stage)
    changed = changed_settings(stage, done) if done else []
    if changed:
        raise StaleStage(f"stage {stage.name} ({workdir}) was run with other settings: {'; '.join(changed)}")
    if done is None:
        with stage_lock(workdir):
            done = None if force else stage_done(stage)  # another process may have finished it meanwhile
            if done is None:
                return _run_locked(stage, workdir, keep_checkpoints)
    logger.info(f"[skip] {stage.name}: done in {done['seconds']:.0f}s ({workdir / 'DONE.json'})")
    return done


def write_done(workdir: Path, record: dict) -> None:
    """Write the ``DONE.json`` marker atomically: a reader (another process, a crash) never sees half of it."""
    tmp = Path(workdir) / "DONE.json.part"
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, Path(workdir) / "DONE.json")


def _run_locked(stage: BundleStage, workdir: Path, keep_checkpoints: bool) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    root = bundles_dir() / stage.bundle
    files = [str(root / "configs" / c) for c in stage.configs]
    overrides = {"bundle_root": str(root), **stage.overrides}
    logger.info(f"[run ] {stage.name}: {stage.bundle} {' + '.join(stage.configs)}")
    settings = stage_settings(stage)
    start = time.perf_counter()
    with _log_to(workdir / "log.txt"):
        wf = ConfigWorkflow(
            config_file=files if len(files) > 1 else files[0],
            meta_file=str(root / "configs" / "metadata.json"),
            workflow_type=stage.workflow_type,
            **overrides,
        )
        wf.initialize()
        ConfigParser.export_config_file(wf.parser.get(), str(workdir / "config.json"), indent=2)
        try:
            wf.run()
        finally:
            wf.finalize()
    record = {
        "stage": stage.name,
        "bundle": stage.bundle,
        "configs": stage.configs,
        "overrides": {k: v for k, v in overrides.items()},
        "seconds": time.perf_counter() - start,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": environment_info(),
        "config_hash": settings_hash(settings),
        "config": settings,
    }
    write_done(workdir, record)
    logger.info(f"[done] {stage.name} in {record['seconds']:.0f}s")
    ckpt_dir = stage.overrides.get("ckpt_dir")
    if ckpt_dir:
        remove_stale_temporaries(ckpt_dir)  # what writes killed earlier left
    if ckpt_dir and not keep_checkpoints and stage.workflow_type == "train":
        for ckpt in Path(ckpt_dir).glob("*checkpoint*.pt"):
            ckpt.unlink()
    return record
