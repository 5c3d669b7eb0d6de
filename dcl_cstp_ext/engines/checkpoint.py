"""Atomic, complete training checkpoints and automatic resume (an ignite handler)."""

from __future__ import annotations

import copy
import logging
import pickle
import random
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from ..networks.export import atomic_save, remove_stale_temporaries
from ..networks.utils import unwrap
from .guards import non_finite_tensors
from .handlers import is_main_process

__all__ = ["RNGState", "ResumableCheckpoint"]

logger = logging.getLogger(__name__)


try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x (e.g. the MONAI Label environment)
    from numpy.core.multiarray import _reconstruct

#: numpy arrays only: checkpoints written before the RNG state was plain data hold numpy's as an array
_LEGACY_GLOBALS = [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]

#: the entries of a scheduler's or optimiser group's state that change as it trains (all the others come from the
#: configuration: base rates, ``T_max``, milestones, warm-up length, weight decay, betas...)
_PROGRESS_KEYS = {"params", "lr", "last_epoch", "_step_count", "_last_lr", "_get_lr_called_within_step", "verbose",
                  "_is_initial", "lr_lambdas"}


def schedule_settings(state) -> object:
    """The configuration part of an optimiser's or learning-rate scheduler's ``state_dict()`` (nested in
    ``SequentialLR``): everything but :data:`_PROGRESS_KEYS` and the optimiser's per-parameter ``state``."""
    if isinstance(state, dict):
        return {k: schedule_settings(v) for k, v in state.items() if k not in _PROGRESS_KEYS and k != "state"}
    if isinstance(state, (list, tuple)):
        return [schedule_settings(v) for v in state]
    return state


def settings_differences(saved, fresh, where: str = "") -> list[str]:
    """``"where: saved -> fresh"`` for each setting that differs (floats to 1e-9 relative); keys present on one side
    only are not compared (checkpoints of older versions)."""
    if isinstance(saved, dict) and isinstance(fresh, dict):
        return [d for k in saved.keys() & fresh.keys()
                for d in settings_differences(saved[k], fresh[k], f"{where}.{k}" if where else str(k))]
    if isinstance(saved, (list, tuple)) and isinstance(fresh, (list, tuple)):
        if len(saved) != len(fresh):
            return [f"{where}: {len(saved)} entries -> {len(fresh)}"]
        return [d for i, (a, b) in enumerate(zip(saved, fresh)) for d in settings_differences(a, b, f"{where}[{i}]")]
    if isinstance(saved, float) and isinstance(fresh, (int, float)) and not isinstance(fresh, bool):
        same = abs(saved - fresh) <= 1e-9 * max(abs(saved), abs(fresh))
    else:
        same = saved == fresh
    return [] if same else [f"{where}: {saved!r} -> {fresh!r}"]


def _is_schedule(obj) -> bool:
    """An optimiser or a learning-rate scheduler (also wrapped, as :class:`KeepFixedLR`)."""
    return isinstance(obj, torch.optim.Optimizer) or hasattr(obj, "get_last_lr")


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
    ...; anything with ``state_dict``/``load_state_dict``), the trainer's float16 loss scalers
    (``engine.loss_scalers()``, e.g. the autoencoder's generator and discriminator scalers, or ``engine.scaler``;
    picked up when the run starts), the trainer's epoch/iteration and the RNG states. On ``STARTED``, if the
    file exists (and ``resume``), everything is restored; a mid-epoch position is
    honoured by telling the :class:`EpochSeededSampler` to skip the samples already seen.

    The file is read with ``torch.load(weights_only=True)``: tensors and plain data only, so a planted file cannot
    run code; anything else is refused with a ``RuntimeError`` naming the file.

    When the optimiser's or the learning-rate scheduler's settings differ from the checkpoint's (``lr``,
    ``max_epochs`` of a cosine schedule, warm-up, weight decay...), the new ones are applied consistently (the
    schedule is this run's, at the checkpoint's position; the optimiser keeps its momenta) and a warning lists the
    differences: loading the old state would silently keep the old schedule. Non-finite model weights are never written
    (``FloatingPointError``). Temporary files that a killed write left behind (``.<filename>.XXXXXXXX``) are removed
    when the run starts.

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
        for name, obj in self.objects.items():
            bad = non_finite_tensors(obj) if isinstance(obj, torch.nn.Module) else []
            if bad:
                raise FloatingPointError(f"refusing to write {self.path}: '{name}' has {len(bad)} non-finite weight "
                                         f"tensors (first: {bad[0]}); the last good checkpoint is kept")
        state = {name: unwrap(obj).state_dict() for name, obj in self.objects.items()}
        state["trainer"] = {"epoch": engine.state.epoch, "iteration": engine.state.iteration}
        atomic_save(state, self.path)

    def load(self, engine: Engine) -> None:
        # the trainer's float16 loss scalers: they exist once the run starts (an engine that is not a StepTrainer:
        # its ``scaler``, as MONAI's trainers name it)
        scalers = (engine.loss_scalers() if hasattr(engine, "loss_scalers")
                   else {"grad_scaler": getattr(engine, "scaler", None)})
        scalers = {name: s for name, s in scalers.items() if s is not None and s.is_enabled()}
        for name, scaler in scalers.items():
            self.objects.setdefault(name, scaler)
        if is_main_process():
            remove_stale_temporaries(self.path.parent)
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
        for name in scalers:
            if name not in state:  # saved by a run without float16
                logger.warning(f"{self.path} has no '{name}' state: that float16 loss scale starts afresh")
                state[name] = self.objects[name].state_dict()
        for name in self.objects:
            if name not in state:
                raise KeyError(f"checkpoint {self.path} has no '{name}' entry (it has {sorted(state)})")
        fresh = {name: copy.deepcopy(obj.state_dict()) for name, obj in self.objects.items() if _is_schedule(obj)}
        changed = [d for name, settings in fresh.items()
                   for d in settings_differences(schedule_settings(state[name]), schedule_settings(settings), name)]
        for name, obj in self.objects.items():
            unwrap(obj).load_state_dict(state[name])
        if changed:
            self._apply_new_schedule(fresh, state)
            logger.warning(
                f"resuming from {self.path} with a changed optimiser / learning-rate schedule ({'; '.join(changed)}): "
                "the new settings apply from here on, as if the run had used them from the start"
            )
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

    def _apply_new_schedule(self, fresh: dict, state: dict) -> None:
        """After loading a checkpoint made with other schedule settings: the optimisers keep their per-parameter
        state (momenta) but take this run's hyper-parameters (``fresh``: their state before loading), and each
        scheduler restarts from this run's settings and is stepped as often as the checkpoint's had been."""
        for name, obj in self.objects.items():
            if isinstance(obj, torch.optim.Optimizer):
                for group, settings in zip(obj.param_groups, fresh[name]["param_groups"]):
                    group.update({k: v for k, v in settings.items() if k != "params"})
        for name, obj in self.objects.items():
            if name in fresh and not isinstance(obj, torch.optim.Optimizer):
                obj.load_state_dict(fresh[name])
                with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": a fast-forward
                    warnings.simplefilter("ignore", UserWarning)
                    for _ in range(int(state[name].get("last_epoch", 0)) - int(fresh[name].get("last_epoch", 0))):
                        obj.step()
