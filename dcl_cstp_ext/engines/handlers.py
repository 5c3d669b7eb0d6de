"""Small ignite handlers of the training bundles: progress bar, epoch summary, encoder export."""

from __future__ import annotations

import json
import logging
import resource
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from ignite.handlers import ProgressBar

from ..networks.export import save_export
from ..networks.utils import unwrap

__all__ = ["ProgressBarHandler", "EpochSummary", "EncoderExport", "is_main_process"]

logger = logging.getLogger(__name__)


def is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class ProgressBarHandler:
    """ignite's tqdm progress bar over iterations, showing ``output_keys`` of the iteration output."""

    def __init__(self, output_keys: tuple[str, ...] = ("loss",), persist: bool = False) -> None:
        self.output_keys = tuple(output_keys)
        self.persist = persist

    def attach(self, engine: Engine) -> None:
        keys = self.output_keys
        ProgressBar(persist=self.persist).attach(
            engine, output_transform=lambda out: {k: out[k] for k in keys if isinstance(out, dict) and k in out}
        )


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process so far (``peak_rss_mb``; data-loader workers not included) and, on a
    GPU, the peak memory allocated by torch (``peak_cuda_mb``)."""
    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


class EpochSummary:
    """Averages the scalar iteration outputs over each epoch; logs one line per epoch with images/s, puts the means
    in ``engine.state.metrics`` (``train_<name>``) and appends them, with k-NN metrics, to ``<output_dir>/metrics.jsonl``
    (the training curves of the report).
    """

    def __init__(self, output_dir: str | None = None, batch_size: int | None = None, summary_writer=None) -> None:
        self.path = Path(output_dir) / "metrics.jsonl" if output_dir else None
        self.batch_size = batch_size
        self.writer = summary_writer
        self._sums: dict[str, float] = defaultdict(float)
        self._count = 0
        self._start = 0.0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._accumulate)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._summarise)

    def _reset(self, engine: Engine) -> None:
        self._sums.clear()
        self._count = 0
        self._start = time.perf_counter()

    def _accumulate(self, engine: Engine) -> None:
        out = engine.state.output
        if isinstance(out, dict):
            for k, v in out.items():
                if isinstance(v, (int, float)):
                    self._sums[k] += float(v)
            self._count += 1

    def _summarise(self, engine: Engine) -> None:
        if not self._count:
            return
        seconds = time.perf_counter() - self._start
        means = {f"train_{k}": v / self._count for k, v in self._sums.items()}
        engine.state.metrics.update(means)
        row = {"epoch": engine.state.epoch, "iteration": engine.state.iteration, "seconds": round(seconds, 3), **means}
        if self.batch_size:
            row["images_per_s"] = round(self._count * self.batch_size / max(seconds, 1e-9), 2)
        row.update(peak_memory_mb())
        text = " ".join(f"{k.removeprefix('train_')}={v:.4g}" for k, v in means.items())
        logger.info(f"epoch {engine.state.epoch} ({seconds:.1f}s): {text}")
        if self.writer is not None:
            for k, v in means.items():
                self.writer.add_scalar(f"epoch/{k}", v, engine.state.epoch)
        if self.path is not None and is_main_process():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # k-NN metrics of this epoch are there when the monitor is attached before this handler
            if engine.state.metrics.get("knn_epoch") == engine.state.epoch:
                row.update({k: v for k, v in engine.state.metrics.items() if k.startswith("knn_")})
            with open(self.path, "a") as fh:
                fh.write(json.dumps(row) + "\n")


class EncoderExport:
    """Writes the online encoder alone (``encoder.pt``, keys ``conv1.weight``, ``layer1...``) and the whole method
    (``model.pt``) atomically, every ``every`` epochs and at the end, in the project's export format
    (``{"model", "meta"}``, :mod:`~dcl_cstp_ext.networks.export`; ``meta``: epoch, iteration, backbone, channels,
    method and ``metadata``). The encoder loads by path into the downstream bundles,
    ``FlexibleUNet(backbone="resnet50").encoder`` and ``ResNetClassifier.encoder``.

    ``keep_every``: also keep a copy of the encoder every ``keep_every`` epochs, ``encoder_epoch<N>.pt`` (a
    pre-training's step curve: probe each copy, ``benchmarks/pretrain_step_curve.py``); None keeps none."""

    def __init__(self, network: torch.nn.Module, ckpt_dir: str, every: int = 1, metadata: dict | None = None,
                 keep_every: int | None = None) -> None:
        self.network = network
        self.dir = Path(ckpt_dir)
        self.every = every
        self.metadata = metadata or {}
        self.keep_every = keep_every

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.every), self)
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if not is_main_process():
            return
        model = unwrap(self.network)
        epoch = engine.state.epoch
        meta = {
            "epoch": epoch,
            "iteration": engine.state.iteration,
            "backbone": model.encoder.backbone,
            "in_channels": model.encoder.in_channels,
            "method": type(model).__name__,
            **self.metadata,
        }
        save_export(self.dir / "encoder.pt", model.encoder.state_dict(), meta)
        save_export(self.dir / "model.pt", model.state_dict(), meta)
        if self.keep_every and epoch % self.keep_every == 0:
            save_export(self.dir / f"encoder_epoch{epoch}.pt", model.encoder.state_dict(), meta)
