"""Exported weights of the two generative stages and their metadata (scale factor, noise schedule, shapes).

An export is the project's one format, ``{"model": state_dict, "meta": {...}}`` (:mod:`dcl_cstp_ext.networks.export`);
MONAI's ``CheckpointLoader`` with ``load_dict={"model": net}`` reads it too. The denoiser export (``models/model.pt``)
holds the latent scale factor and the betas of the training schedule in its ``meta``, which inference reuses and
checks.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from ..engines.handlers import is_main_process
from ..networks.export import read_export, read_export_meta, save_export
from ..networks.utils import unwrap

__all__ = ["GenerativeExport", "load_weights", "read_checkpoint_meta", "read_scale_factor", "check_schedule",
           "schedule_meta"]

logger = logging.getLogger(__name__)


def schedule_meta(scheduler) -> dict:
    """What inference needs to rebuild and check the noise schedule of a MONAI scheduler."""
    return {
        "num_train_timesteps": int(scheduler.num_train_timesteps),
        "prediction_type": str(getattr(scheduler, "prediction_type", "epsilon")),
        "betas": scheduler.betas.detach().cpu().float().clone(),
    }


class GenerativeExport:
    """Writes ``{"model": network.state_dict(), "meta": metadata}`` atomically to ``path`` every ``every`` epochs and
    at the end (rank 0 only). ``scheduler`` adds :func:`schedule_meta`; ``latent_scale`` (a
    :class:`~dcl_cstp_ext.generative.LatentScale`) adds ``scale_factor``; epoch and iteration are added."""

    def __init__(
        self,
        network: torch.nn.Module,
        path: str | os.PathLike,
        every: int = 1,
        metadata: Mapping[str, Any] | None = None,
        scheduler=None,
        latent_scale=None,
    ) -> None:
        self.network = network
        self.path = Path(path)
        self.every = every
        self.metadata = dict(metadata or {})
        self.scheduler = scheduler
        self.latent_scale = latent_scale

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.every), self)
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if not is_main_process():
            return
        meta: dict[str, Any] = {**self.metadata, "epoch": engine.state.epoch, "iteration": engine.state.iteration}
        if self.scheduler is not None:
            meta["scheduler"] = schedule_meta(self.scheduler)
        if self.latent_scale is not None:
            meta["scale_factor"] = self.latent_scale.value
        save_export(self.path, unwrap(self.network).state_dict(), meta)


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The metadata of an export (everything but the weights)."""
    return read_export_meta(path)


def load_weights(
    network: torch.nn.Module, path: str | os.PathLike, map_location: str | torch.device = "cpu", strict: bool = True,
    hint: str = "",
) -> dict:
    """Load an export (or a bare state dict, or a resumable checkpoint's ``model`` entry) into ``network`` (DDP wrapper and ``module.`` prefixes handled);
    GPU-saved weights load on a CPU. Returns the metadata."""
    try:
        state, meta = read_export(path, map_location)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err}{'; ' + hint if hint else ''}") from err
    unwrap(network).load_state_dict({k.removeprefix("module."): v for k, v in state.items()}, strict=strict)
    return meta


def read_scale_factor(path: str | os.PathLike) -> float:
    """The latent scale factor stored with the denoiser export ``path`` (raises when there is none)."""
    meta = read_checkpoint_meta(path)
    value = meta.get("scale_factor")
    if value is None:
        raise KeyError(f"{path} stores no latent scale factor (was it written by the diffusion stage?)")
    return float(value)


def check_schedule(meta: Mapping[str, Any], scheduler) -> None:
    """Raise when ``scheduler`` (the inference config's) has other betas than the schedule stored in ``meta``."""
    stored = meta.get("scheduler")
    if not stored:
        logger.warning("the checkpoint records no noise schedule: cannot check the inference schedule")
        return
    betas = torch.as_tensor(stored["betas"]).float()
    if betas.shape != scheduler.betas.shape or not torch.allclose(betas, scheduler.betas.cpu().float(), rtol=1e-5,
                                                                    atol=1e-8):
        raise ValueError(
            "the inference noise schedule differs from the training one stored in the checkpoint "
            f"({stored['num_train_timesteps']} steps, betas {float(betas[0]):.6g}..{float(betas[-1]):.6g}); "
            "use the training values of num_train_timesteps / beta_schedule / beta_start / beta_end"
        )
