"""Atomic, complete training checkpoints and automatic resume (an ignite handler)."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from ..networks.utils import unwrap
from ..networks.weights import atomic_save
from .handlers import is_main_process

__all__ = ["RNGState", "ResumableCheckpoint"]

logger = logging.getLogger(__name__)


class RNGState:
    """The random number generators of python, numpy, torch (and CUDA) as one checkpointable object."""

    def state_dict(self) -> dict:
        state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class ResumableCheckpoint:
    """Save everything needed to continue a run exactly, and resume from it when the run starts again.

    Writes ``<ckpt_dir>/checkpoint.pt`` atomically every ``save_every_epochs`` epochs and, if given, every
    ``save_every_iters`` iterations, and at the end of the run. Holds ``objects`` (model, optimizer, scheduler,
    scaler...; anything with ``state_dict``/``load_state_dict``), the trainer's epoch/iteration and the RNG
    states. On ``STARTED``, if the file exists (and ``resume``), everything is restored; a mid-epoch position is
    honoured by telling the :class:`EpochSeededSampler` to skip the samples already seen.

    Only rank 0 writes (decided at save time); every rank resumes.
    """

    def __init__(
        self,
        ckpt_dir: str,
        objects: dict,
        save_every_epochs: int = 1,
        save_every_iters: int | None = None,
        resume: bool = True,
        filename: str = "checkpoint.pt",
    ) -> None:
        self.path = Path(ckpt_dir) / filename
        self.objects = {k: v for k, v in objects.items() if v is not None}
        self.objects.setdefault("rng", RNGState())
        self.save_every_epochs = save_every_epochs
        self.save_every_iters = save_every_iters
        self.resume = resume

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.load)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_every_epochs), self.save)
        if self.save_every_iters:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.save_every_iters), self.save)
        engine.add_event_handler(Events.COMPLETED, self.save)

    def save(self, engine: Engine) -> None:
        if not is_main_process():
            return
        state = {name: unwrap(obj).state_dict() for name, obj in self.objects.items()}
        state["trainer"] = {"epoch": engine.state.epoch, "iteration": engine.state.iteration}
        atomic_save(state, self.path)

    def load(self, engine: Engine) -> None:
        if not (self.resume and self.path.is_file()):
            return
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as err:  # a checkpoint the user cannot resume from must say so, not crash obscurely
            raise RuntimeError(f"cannot read checkpoint {self.path}: {err}") from err
        for name, obj in self.objects.items():
            if name not in state:
                raise KeyError(f"checkpoint {self.path} has no '{name}' entry (it has {sorted(state)})")
            unwrap(obj).load_state_dict(state[name])
        epoch, iteration = state["trainer"]["epoch"], state["trainer"]["iteration"]
        epoch_length = engine.state.epoch_length
        if epoch_length and iteration % epoch_length:
            epoch = iteration // epoch_length  # resume inside the interrupted epoch
            sampler = getattr(engine.state.dataloader, "sampler", None)
            batch = getattr(engine.state.dataloader, "batch_size", None) or 1
            if hasattr(sampler, "skip_next"):
                sampler.skip_next((iteration % epoch_length) * batch)
        engine.state.epoch, engine.state.iteration = epoch, iteration
        logger.info("resumed from %s at epoch %d, iteration %d", self.path, epoch, iteration)
