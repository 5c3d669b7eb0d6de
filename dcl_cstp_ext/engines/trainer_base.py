"""The base of the training engines: a MONAI ``Trainer`` that owns everything but the losses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from ignite.engine import Engine
from monai.engines import Trainer
from monai.utils import convert_to_tensor

from .step import autocast_for, grad_scaler_for, optimizer_step

__all__ = ["StepTrainer"]


class StepTrainer(Trainer):
    """Trains ``network`` with ``optimizer``; a subclass writes only :meth:`train_step` (its losses).

    Each iteration: ``network.train()``, ``optimizer.zero_grad()``, :meth:`train_step`, then
    ``engine.state.output`` = its dict as floats plus ``lr`` (ready for ``StatsHandler`` with
    ``output_transform="$lambda x: x"``). The base gives :meth:`to_device` (plain tensors, channels-last),
    :meth:`autocast` and :meth:`backward_step` (:func:`~dcl_cstp_ext.engines.step.optimizer_step` with the trainer's
    scaler and clipping). A non-finite loss stops the run before its step with a ``FloatingPointError`` naming the
    iteration and the last finite loss.

    Mixed precision (``amp``): float16 autocast and a ``GradScaler`` (``self.scaler``) on CUDA, bfloat16 autocast
    and no scaler on CPU. ``self.scaler`` is kept over :meth:`run` (MONAI's ``Trainer.run`` would replace it).

    Args:
        device, max_epochs, train_data_loader, epoch_length, non_blocking, train_handlers: as MONAI's trainers.
        network: the trained network (optionally DDP-wrapped).
        optimizer: its optimiser.
        amp: mixed precision, as above.
        grad_clip: max gradient norm of ``network``, or None.
        channels_last: the channels-last memory format for ``(B, C, H, W)`` batch tensors (pays with AMP on GPUs).
        key_train_metric: MONAI's ``{name: metric}`` computed on the training outputs (the model zoo's
            ``train#key_metric``; None, the default, for methods whose outputs are losses only).
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        epoch_length: int | None = None,
        non_blocking: bool = True,
        amp: bool = False,
        grad_clip: float | None = None,
        channels_last: bool = False,
        key_train_metric: dict | None = None,
        train_handlers: Sequence | None = None,
    ) -> None:
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            key_metric=key_train_metric,
            handlers=train_handlers,
            amp=amp,
            decollate=False,
        )
        self.network = network
        self.optimizer = optimizer
        self.grad_clip = grad_clip
        self.channels_last = channels_last
        self.scaler = grad_scaler_for(device, amp)
        self.last_finite_loss: tuple[int, float] | None = None  # (iteration, loss)

    def loss_scalers(self) -> dict[str, torch.amp.GradScaler | None]:
        """The float16 loss scalers a checkpoint must keep, by name (None or disabled: nothing to keep)."""
        return {"grad_scaler": self.scaler}

    def run(self) -> None:
        """Run the training, keeping ``self.scaler`` (skips ``Trainer.run``, which sets a CUDA ``GradScaler``
        whenever ``amp``: a new one per call, and a disabled one on CPU)."""
        super(Trainer, self).run()

    def train_step(self, batchdata: dict) -> Mapping[str, torch.Tensor | float]:
        """One iteration's forward, losses and :meth:`backward_step`; returns scalars, ``loss`` among them."""
        raise NotImplementedError

    def _iteration(self, engine: Engine, batchdata: dict) -> dict[str, float]:
        self.network.train()
        self.optimizer.zero_grad(set_to_none=True)
        try:
            out = self.train_step(batchdata)
        except FloatingPointError as err:
            last = self.last_finite_loss
            before = f"the last finite loss was {last[1]:.6g} at iteration {last[0]}" if last else "none finite before"
            raise FloatingPointError(
                f"{err} at iteration {engine.state.iteration} (epoch {engine.state.epoch}); {before}"
            ) from err
        result = {k: float(v.detach() if torch.is_tensor(v) else v) for k, v in out.items()}
        result["lr"] = self.optimizer.param_groups[0]["lr"]
        self.last_finite_loss = (engine.state.iteration, result["loss"])
        return result

    def require_keys(self, batchdata, keys: Sequence[str]) -> None:
        """Refuse a batch that is not a dict holding ``keys``."""
        if not isinstance(batchdata, dict) or any(k not in batchdata for k in keys):
            found = sorted(batchdata) if isinstance(batchdata, dict) else type(batchdata).__name__
            raise ValueError(f"{type(self).__name__} needs a batch dict with the keys {tuple(keys)}; got {found}")

    def to_device(self, data) -> torch.Tensor:
        """``data`` as a plain tensor (not a MetaTensor, which carries meta data through every op) on the
        trainer's device; a ``(B, C, H, W)`` tensor in the channels-last format when ``channels_last``."""
        x = convert_to_tensor(data, track_meta=False).to(self.state.device, non_blocking=self.non_blocking)
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        return x

    def autocast(self) -> torch.autocast:
        """:func:`~dcl_cstp_ext.engines.step.autocast_for` the trainer's device and ``amp``."""
        return autocast_for(self.state.device, self.amp)

    def backward_step(self, loss: torch.Tensor, terms: Mapping[str, torch.Tensor] | None = None) -> None:
        """:func:`~dcl_cstp_ext.engines.step.optimizer_step` of ``network`` on the scalar ``loss`` (``terms``: its
        parts, named if it is not finite)."""
        optimizer_step(loss, self.optimizer, self.network.parameters(), self.scaler, self.grad_clip, terms)
