"""Atomic, complete training checkpoints and automatic resume (an ignite handler)."""

from __future__ import annotations

import logging
import pickle
import random
import re
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from ..networks.export import atomic_save
from ..networks.utils import unwrap
from .handlers import is_main_process

__all__ = ["RNGState", "ResumableCheckpoint"]

logger = logging.getLogger(__name__)


try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x (e.g. the MONAI Label environment)
    from numpy.core.multiarray import _reconstruct

#: numpy arrays only: checkpoints written before the RNG state was plain data hold numpy's as an array
_LEGACY_GLOBALS = [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


class RNGState:
    """The random number generators of python, numpy, torch (and CUDA) as one checkpointable object.

    The state is plain data, loadable with ``torch.load(weights_only=True)``: python's Mersenne Twister as an
    int64 tensor ``(625,)`` with its version and Gaussian cache, numpy's as its ``get_state()`` fields (keys
    ``(624,)`` as an int64 tensor), torch's (and each CUDA device's) as their byte tensors.
    """

    def state_dict(self) -> dict:
        version, internal, gauss_next = random.getstate()
        algorithm, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
        state = {
            "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64),
                       "gauss_next": gauss_next},
            "numpy": {"algorithm": str(algorithm), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict) -> None:
        py, npy = state["python"], state["numpy"]
        if isinstance(py, dict):
            random.setstate((py["version"], tuple(py["state"].tolist()), py["gauss_next"]))
            npy = (npy["algorithm"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                   npy["cached_gaussian"])
        else:  # a legacy checkpoint: random.getstate() and np.random.get_state() as they are
            random.setstate(py)
        np.random.set_state(npy)
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

    The file is read with ``torch.load(weights_only=True)``: tensors and plain data only, so a planted file cannot
    run code; anything else is refused with a ``RuntimeError`` naming the file.

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
            with torch.serialization.safe_globals(_LEGACY_GLOBALS):
                state = torch.load(self.path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:  # an object that only unpickling code could rebuild
            found = re.search(r"GLOBAL (\S+)", str(err))
            raise RuntimeError(
                f"refusing to resume from {self.path}: it holds {found.group(1) if found else 'an object'}, not only "
                "tensors and plain data, and loading it could run code; move the file away (or set resume to "
                "false) to start afresh"
            ) from err
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
