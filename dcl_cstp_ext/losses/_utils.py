"""Helpers shared by the losses: float32 computation under autocast, L2 normalisation, shape checks."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F


def no_autocast(tensor: torch.Tensor) -> contextlib.AbstractContextManager:
    """Context that disables autocast on ``tensor``'s device, so matmuls run in the dtype of their inputs.

    Casting the inputs with ``.float()`` alone is not enough: under ``torch.autocast`` a float32 ``matmul``
    is still cast down to the autocast dtype. Inside this context it is not.
    """
    try:
        return torch.autocast(device_type=tensor.device.type, enabled=False)
    except RuntimeError:  # a device type autocast does not know: nothing to disable
        return contextlib.nullcontext()


def normalize_fp32(tensor: torch.Tensor, detach: bool = False) -> torch.Tensor:
    """Cast to float32 (optionally detached first) and L2-normalise along the last dimension."""
    if detach:
        tensor = tensor.detach()
    return F.normalize(tensor.float(), dim=-1)


def check_2d(name: str, tensor: torch.Tensor) -> None:
    if tensor.dim() != 2:
        raise ValueError(f"{name} must have shape (B, D), got {tuple(tensor.shape)}")


def check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    check_2d(name_a, a)
    check_2d(name_b, b)
    if a.shape != b.shape:
        raise ValueError(f"{name_a} {tuple(a.shape)} and {name_b} {tuple(b.shape)} must have the same shape")


def check_negatives(negatives: torch.Tensor, dim: int) -> None:
    if negatives.dim() != 2 or negatives.shape[1] != dim:
        raise ValueError(f"negatives must have shape (N, {dim}), got {tuple(negatives.shape)}")


#: logit given to a masked negative: exp() of it is 0 in float32, and differences of two masked logits stay finite
MASKED_LOGIT = -1e4


def check_negative_mask(mask: torch.Tensor | None, batch: int, num_negatives: int) -> None:
    if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) != (batch, num_negatives)):
        raise ValueError(f"negative_mask must be a bool tensor of shape ({batch}, {num_negatives}), "
                         f"got {mask.dtype} {tuple(mask.shape)}")


def mask_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``logits (B, N)`` with the entries where ``mask`` is False set to :data:`MASKED_LOGIT` (no gradient)."""
    return logits if mask is None else logits.masked_fill(~mask, MASKED_LOGIT)
