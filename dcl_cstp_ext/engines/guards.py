"""A trainer handler that stops a run going wrong: a non-finite loss or non-finite weights stop it with the iteration
and the last finite loss (before anything is saved); an epoch whose mean loss has grown many times over is warned
about (divergence)."""

from __future__ import annotations

import logging
import math

import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys

from ..networks.utils import unwrap

__all__ = ["LossGuard", "non_finite_tensors"]

logger = logging.getLogger(__name__)


def non_finite_tensors(module: torch.nn.Module) -> list[str]:
    """The names of ``module``'s parameters and floating-point buffers that hold a NaN or an infinity."""
    named = [*unwrap(module).named_parameters(), *unwrap(module).named_buffers()]
    return [name for name, t in named if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def _loss_value(output) -> float | None:
    """The scalar loss of an iteration's output: a MONAI trainer's ``{"loss": tensor, ...}`` (or a list of such,
    decollated) or a :class:`StepTrainer`'s dict of floats; None when there is none."""
    if isinstance(output, (list, tuple)) and output:
        output = output[0]
    if not isinstance(output, dict) or CommonKeys.LOSS not in output:
        return None
    value = output[CommonKeys.LOSS]
    return float(value.detach().float().mean()) if torch.is_tensor(value) else float(value)


class LossGuard:
    """Stops a training that has gone numerically wrong, and warns when it diverges.

    - A non-finite loss raises ``FloatingPointError`` naming the iteration, the epoch, the last finite loss and the
      learning rate. With MONAI's trainers it is checked on ``IterationEvents.LOSS_COMPLETED``, before the backward
      pass and the optimiser step, so the weights are never updated from it (a :class:`StepTrainer` refuses such a
      loss itself, before its step).
    - Non-finite weights of ``network`` at the end of an epoch raise ``FloatingPointError`` before validation and
      checkpointing (attach this handler first), so no non-finite model is ever saved.
    - An epoch whose mean loss exceeds ``divergence_factor`` x the lowest earlier epoch mean, when that is positive,
      is logged as a warning: the learning rate is probably too high. Epoch means, not the first iteration's loss: a
      memory-bank method's first step has no negatives yet (the bank is empty and masked), so its loss is ~0 whatever
      the weights (measured: 0.0006 on ISIC 2018, -0.0006 on Kvasir-SEG, 0 on the chest X-rays), which made every
      later epoch look diverged, or silenced the warning for the whole run. A loss whose epoch mean is not positive
      (SimSiam's negative cosine) gets no divergence warning; non-finite values are stopped all the same.

    Args:
        network: the trained network (checked at each epoch end), or None to check the loss only.
        optimizer: named in the messages (its first group's learning rate), or None.
        divergence_factor: the growth that is warned about; 0 or None switches the warning off.
    """

    def __init__(self, network: torch.nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None,
                 divergence_factor: float | None = 10.0) -> None:
        self.network = network
        self.optimizer = optimizer
        self.divergence_factor = divergence_factor
        self.last_finite: tuple[int, float] | None = None  # (iteration, loss)
        self.reference: float | None = None  # the lowest epoch mean so far
        self._sum = 0.0
        self._count = 0

    def attach(self, engine: Engine) -> None:
        if isinstance(engine, SupervisedTrainer):  # fires this after the loss, before backward and step
            engine.add_event_handler(IterationEvents.LOSS_COMPLETED, self.check_loss)
        else:  # a StepTrainer refuses a non-finite loss itself, before its step
            engine.add_event_handler(Events.ITERATION_COMPLETED, self.check_loss)
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.check_epoch)

    def _lr_text(self) -> str:
        return f" (lr {self.optimizer.param_groups[0]['lr']:.3g})" if self.optimizer is not None else ""

    def _reset(self, engine: Engine) -> None:
        self._sum, self._count = 0.0, 0

    def check_loss(self, engine: Engine) -> None:
        value = _loss_value(engine.state.output)
        if value is None:
            return
        if not math.isfinite(value):
            last = self.last_finite
            before = (f"the last finite loss was {last[1]:.6g} at iteration {last[0]}" if last
                      else "no finite loss before")
            raise FloatingPointError(
                f"non-finite loss {value} at iteration {engine.state.iteration} (epoch {engine.state.epoch}); {before}"
                f"{self._lr_text()}. The training is stopped before this step and nothing is saved from it: lower "
                "the learning rate (lr), or set grad_clip, and start again."
            )
        self.last_finite = (engine.state.iteration, value)
        self._sum += value
        self._count += 1

    def check_epoch(self, engine: Engine) -> None:
        if self.network is not None:
            bad = non_finite_tensors(self.network)
            if bad:
                raise FloatingPointError(
                    f"{len(bad)} weight tensors became non-finite in epoch {engine.state.epoch} (first: {bad[0]})"
                    f"{self._lr_text()}; the training is stopped before validation and checkpointing, so none of "
                    "them is saved. Lower the learning rate (lr), or set grad_clip, and start again."
                )
        if not self._count:
            return
        mean = self._sum / self._count
        ref = self.reference
        if self.divergence_factor and ref is not None and ref > 0 and mean > self.divergence_factor * ref:
            logger.warning(
                f"the training diverges: the mean loss of epoch {engine.state.epoch} is {mean:.6g}, "
                f"{mean / ref:.0f}x the lowest so far ({ref:.6g}){self._lr_text()}; "
                "a lower learning rate (lr) is likely to train better"
            )
        self.reference = mean if self.reference is None else min(self.reference, mean)
