"""The self-supervised pre-training engine: a MONAI ``Trainer`` whose iteration is :func:`ssl_train_step`."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from ignite.engine import Engine
from monai.engines import Trainer
from monai.utils import convert_to_tensor

from ..networks.utils import unwrap
from .step import ssl_train_step

__all__ = ["PretrainTrainer"]


class PretrainTrainer(Trainer):
    """Trains any :class:`~dcl_cstp_ext.methods.SSLMethod` (optionally DDP-wrapped) on batches of views.

    Each iteration: views from ``batch[view_keys]`` -> forward/backward of the method (AMP on CUDA when ``amp``)
    -> optional gradient clipping -> optimiser step -> momentum and queue update. ``engine.state.output`` is a
    dict of floats: ``loss``, the method's terms (``nce``, ``kl``, ``cs``, ...), ``z_std`` (collapse signal) and
    ``lr``, ready for ``StatsHandler`` / ``TensorBoardStatsHandler`` with ``output_transform="$lambda x: x"``.

    Args:
        device, max_epochs, train_data_loader, epoch_length, train_handlers: as MONAI's ``SupervisedTrainer``.
        network: the pre-training method.
        optimizer: its optimiser.
        view_keys: batch keys of the views, in the order the method expects.
        index_key: batch key of the images' data-set indices (``SeededAugmentDataset``); a batch without it
            trains as before, with no own-image masking in the memory bank.
        amp: mixed precision (float16 + GradScaler on CUDA, bfloat16 autocast on CPU).
        grad_clip: max gradient norm, or None.
        channels_last: use the channels-last memory format for the views (pays with AMP on GPUs).
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
        epoch_length: int | None = None,
        non_blocking: bool = True,
        amp: bool = False,
        grad_clip: float | None = None,
        channels_last: bool = False,
        train_handlers: Sequence | None = None,
    ) -> None:
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            data_loader=train_data_loader,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            handlers=train_handlers,
            amp=amp,
            decollate=False,
        )
        _check_bn_splits(network, train_data_loader)
        self.network = network
        self.optimizer = optimizer
        self.view_keys = tuple(view_keys)
        self.index_key = index_key
        self.grad_clip = grad_clip
        self.channels_last = channels_last
        cuda = torch.device(device).type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if (amp and cuda) else None

    def _iteration(self, engine: Engine, batchdata: dict) -> dict:
        if not isinstance(batchdata, dict) or any(k not in batchdata for k in self.view_keys):
            keys = sorted(batchdata) if isinstance(batchdata, dict) else type(batchdata).__name__
            raise ValueError(f"a pre-training batch needs the view keys {self.view_keys}; got {keys}")
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        device, non_blocking = engine.state.device, engine.non_blocking
        # plain tensors: MONAI's collate makes MetaTensors, which carry meta data through every op and slice batch-aware
        views = [
            convert_to_tensor(batchdata[k], track_meta=False).to(device, non_blocking=non_blocking).contiguous(
                memory_format=fmt
            )
            for k in self.view_keys
        ]
        indices = batchdata.get(self.index_key)
        if indices is not None:
            indices = convert_to_tensor(indices, track_meta=False).to(device, non_blocking=non_blocking)
        out = ssl_train_step(
            self.network, self.optimizer, views, amp=self.amp, scaler=self.scaler, grad_clip=self.grad_clip,
            indices=indices,
        )
        result = {k: float(v) for k, v in out.items()}
        result["lr"] = self.optimizer.param_groups[0]["lr"]
        return result


def _check_bn_splits(network: torch.nn.Module, loader) -> None:
    """Refuse, before any step, a batch size that the method's split BatchNorm groups do not divide."""
    splits = getattr(unwrap(network), "bn_splits", 1)
    batch = getattr(loader, "batch_size", None)
    if splits > 1 and batch and batch % splits:
        raise ValueError(f"batch_size {batch} is not divisible by bn_splits {splits} (the split BatchNorm groups); "
                         "set bn_splits to a divisor of the batch size, or 1 to switch it off")
