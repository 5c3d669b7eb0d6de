"""Validation bookkeeping shared by the downstream bundles: checkpointable best-metric state, the per-validation
JSON log, and a TensorBoard writer that exists on rank 0 only."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from ..utils import as_scalar, json_clean
from .handlers import is_main_process

__all__ = ["BestMetricState", "ValidationLog", "rank_zero_summary_writer"]


class BestMetricState:
    """The best-model tracking of a validation run as a checkpointable object (``state_dict`` /
    ``load_state_dict``), for :class:`~dcl_cstp_ext.engines.ResumableCheckpoint`.

    Holds the evaluator's ``best_metric`` / ``best_metric_epoch`` and the list of MONAI ``CheckpointSaver``'s
    key-metric checkpoint, so that a resumed run does not overwrite ``model.pt`` with a worse model.
    """

    def __init__(self, evaluator: Engine, saver: Any | None = None) -> None:
        self.evaluator = evaluator
        self.saver = saver

    def _checkpoint(self):
        return getattr(self.saver, "_key_metric_checkpoint", None)

    def state_dict(self) -> dict:
        state = self.evaluator.state
        ckpt = self._checkpoint()
        return {
            "best_metric": float(getattr(state, "best_metric", -1)),
            "best_metric_epoch": int(getattr(state, "best_metric_epoch", -1)),
            "saver": ckpt.state_dict() if ckpt is not None else None,
        }

    def load_state_dict(self, state: Mapping) -> None:
        self.evaluator.state.best_metric = state["best_metric"]
        self.evaluator.state.best_metric_epoch = state["best_metric_epoch"]
        ckpt = self._checkpoint()
        if ckpt is not None and state.get("saver") is not None:
            ckpt.load_state_dict(state["saver"])


class ValidationLog:
    """Appends one JSON line per validation to ``<output_dir>/<filename>``: the trainer's epoch, every scalar
    metric of the evaluator (numbers, one-element tensors/arrays; NaN written as null) and the best key metric so
    far (rank 0 only). The validation curve of the report."""

    def __init__(self, output_dir: str, filename: str = "val_metrics.jsonl") -> None:
        self.path = Path(output_dir) / filename

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if not is_main_process():
            return
        row: dict[str, Any] = {"epoch": engine.state.epoch}
        for k, v in engine.state.metrics.items():
            value = as_scalar(v)
            if value is not None:
                row[k] = value
        row["best_metric"] = float(getattr(engine.state, "best_metric", float("nan")))
        row["best_metric_epoch"] = int(getattr(engine.state, "best_metric_epoch", -1))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(json_clean(row)) + "\n")


class _NullWriter:
    """Stands in for a ``SummaryWriter`` on ranks > 0: every method is a no-op."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def rank_zero_summary_writer(log_dir: str, **kwargs: Any):
    """A TensorBoard ``SummaryWriter`` on the main process and a no-op stand-in on the other DDP ranks, so that
    handlers built on every rank (a config list is instantiated whole before it is sliced per rank) never open
    event files or a ``./runs`` folder outside rank 0."""
    if not is_main_process():
        return _NullWriter()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=log_dir, **kwargs)
