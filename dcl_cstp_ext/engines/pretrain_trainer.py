"""The self-supervised pre-training engine: a :class:`StepTrainer` whose iteration is :func:`ssl_train_step`."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ..networks.utils import unwrap
from .step import ssl_train_step
from .trainer_base import StepTrainer

__all__ = ["PretrainTrainer"]


class PretrainTrainer(StepTrainer):
    """Trains any :class:`~dcl_cstp_ext.methods.SSLMethod` (optionally DDP-wrapped) on batches of views.

    Each iteration: views ``(B, C, H, W)`` from ``batch[view_keys]`` -> forward/backward of the method -> optional
    gradient clipping -> optimiser step -> momentum and queue update. ``engine.state.output`` is a dict of floats:
    ``loss``, the method's terms (``nce``, ``kl``, ``cs``, ...), ``z_std`` (collapse signal) and ``lr``.

    Args:
        device, max_epochs, train_data_loader, epoch_length, non_blocking, amp, grad_clip, channels_last,
            key_train_metric, train_handlers: as :class:`~dcl_cstp_ext.engines.trainer_base.StepTrainer`.
        network: the pre-training method.
        optimizer: its optimiser.
        view_keys: batch keys of the views, in the order the method expects.
        index_key: batch key of the images' data-set indices ``(B,)`` (``SeededAugmentDataset``); a batch without
            it trains as before, with no own-image masking in the memory bank.
        inferer: runs the forward, ``inferer(views, network, indices)`` (the model zoo's ``train#inferer``, MONAI's
            ``SimpleInferer``); None calls ``network(views, indices)``.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        view_keys: Sequence[str] = ("view1", "view2", "view3"),
        index_key: str = "sample_index",
        inferer: Callable | None = None,
        epoch_length: int | None = None,
        non_blocking: bool = True,
        amp: bool = False,
        grad_clip: float | None = None,
        channels_last: bool = False,
        key_train_metric: dict | None = None,
        train_handlers: Sequence | None = None,
    ) -> None:
        super().__init__(device, max_epochs, train_data_loader, network, optimizer, epoch_length=epoch_length,
                         non_blocking=non_blocking, amp=amp, grad_clip=grad_clip, channels_last=channels_last,
                         key_train_metric=key_train_metric, train_handlers=train_handlers)
        _check_bn_splits(network, train_data_loader)
        self.view_keys = tuple(view_keys)
        self.index_key = index_key
        self.inferer = inferer

    def train_step(self, batchdata: dict) -> dict[str, torch.Tensor]:
        self.require_keys(batchdata, self.view_keys)
        views = [self.to_device(batchdata[k]) for k in self.view_keys]
        indices = batchdata.get(self.index_key)
        if indices is not None:
            indices = self.to_device(indices)
        return ssl_train_step(self.network, self.optimizer, views, amp=self.amp, scaler=self.scaler,
                              grad_clip=self.grad_clip, indices=indices, inferer=self.inferer)


def _check_bn_splits(network: torch.nn.Module, loader) -> None:
    """Refuse, before any step, a batch size that the method's split BatchNorm groups do not divide."""
    splits = getattr(unwrap(network), "bn_splits", 1)
    batch = getattr(loader, "batch_size", None)
    if splits > 1 and batch and batch % splits:
        raise ValueError(f"batch_size {batch} is not divisible by bn_splits {splits} (the split BatchNorm groups); "
                         "set bn_splits to a divisor of the batch size, or 1 to switch it off")
