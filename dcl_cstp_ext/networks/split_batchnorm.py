"""Split BatchNorm: batch statistics over groups of a batch, the one-device stand-in for MoCo's shuffling BN
(MoCo, He et al. 2020, Sec. 3.3 "Shuffling BN"). :class:`~dcl_cstp_ext.methods.MomentumMethod` runs its encoders on
each group in turn (as each group would run on its own device); these helpers say how many groups and in which order.
"""

from __future__ import annotations

import torch

__all__ = ["bn_splits_for", "interleave", "deinterleave"]


def bn_splits_for(batch_size: int, group: int = 16, max_splits: int = 8) -> int:
    """The most groups (at most ``max_splits``) of at least ``group`` images that divide ``batch_size`` evenly:
    128 -> 8, 64 -> 4, 32 -> 2, 16 or fewer -> 1 (no split)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return max([s for s in range(1, max_splits + 1) if batch_size % s == 0 and batch_size // s >= group], default=1)


def interleave(x: torch.Tensor, num_splits: int) -> torch.Tensor:
    """Reorder a batch ``(B, ...)`` so that contiguous group ``g`` holds samples ``g, g + s, g + 2s, ...``.

    The momentum stream runs on this order: with split BatchNorm a key then shares its batch statistics
    with other images than its query does (the deterministic stand-in for MoCo's random shuffle, so that a resumed
    run repeats the same steps). ``B`` must be divisible by ``num_splits``."""
    if num_splits <= 1:
        return x
    b = x.shape[0]
    return x.reshape(b // num_splits, num_splits, *x.shape[1:]).transpose(0, 1).reshape(x.shape)


def deinterleave(x: torch.Tensor, num_splits: int) -> torch.Tensor:
    """The inverse of :func:`interleave`."""
    if num_splits <= 1:
        return x
    b = x.shape[0]
    return x.reshape(num_splits, b // num_splits, *x.shape[1:]).transpose(0, 1).reshape(x.shape)
