"""Split BatchNorm: batch statistics over groups of a batch, the one-device stand-in for MoCo's shuffling BN."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SplitBatchNorm2d", "bn_splits_for", "use_split_batchnorm", "interleave", "deinterleave"]


class SplitBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training-mode statistics are computed over ``num_splits`` equal, contiguous groups of the
    batch, as if each group ran on its own device (MoCo, He et al. 2020, Sec. 3.3 "Shuffling BN"; the split form of
    MoCo's one-GPU demo and of lightly's ``SplitBatchNorm``). The running statistics are updated with the mean of
    the groups' statistics; eval mode is a plain ``BatchNorm2d``. Parameters and ``state_dict`` keys are those of
    ``BatchNorm2d``, so an encoder trained with it loads unchanged anywhere else.

    Shapes: ``(B, C, H, W) -> (B, C, H, W)``, ``B`` divisible by ``num_splits`` in training mode.
    """

    def __init__(self, num_features: int, num_splits: int = 2, **kwargs) -> None:
        super().__init__(num_features, **kwargs)
        if num_splits < 1:
            raise ValueError(f"num_splits must be >= 1, got {num_splits}")
        self.num_splits = int(num_splits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.num_splits
        if not self.training or s == 1:
            return super().forward(x)
        b, c, h, w = x.shape
        if b % s:
            raise ValueError(f"SplitBatchNorm2d: batch {b} is not divisible by num_splits={s}")
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
        mean, var = self.running_mean.repeat(s), self.running_var.repeat(s)
        # (B, C, H, W) -> (B/s, s*C, H, W): group g (samples g*B/s ... (g+1)*B/s - 1) becomes channels g*C ... g*C+C-1
        grouped = x.reshape(s, b // s, c, h, w).transpose(0, 1).reshape(b // s, s * c, h, w)
        out = F.batch_norm(
            grouped, mean, var, self.weight.repeat(s), self.bias.repeat(s), True, self.momentum or 0.1, self.eps
        )
        with torch.no_grad():
            self.running_mean.copy_(mean.view(s, c).mean(0))
            self.running_var.copy_(var.view(s, c).mean(0))
        return out.reshape(b // s, s, c, h, w).transpose(0, 1).reshape(b, c, h, w)


def bn_splits_for(batch_size: int, group: int = 16, max_splits: int = 8) -> int:
    """The most groups (at most ``max_splits``) of at least ``group`` images that divide ``batch_size`` evenly:
    128 -> 8, 64 -> 4, 32 -> 2, 16 or fewer -> 1 (no split)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return max([s for s in range(1, max_splits + 1) if batch_size % s == 0 and batch_size // s >= group], default=1)


def use_split_batchnorm(module: nn.Module, num_splits: int) -> nn.Module:
    """Replace, in place, every ``BatchNorm2d`` of ``module`` by a :class:`SplitBatchNorm2d` with the same parameters
    and statistics (``num_splits`` 1: nothing changes). Returns ``module``."""
    if num_splits <= 1:
        return module
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, SplitBatchNorm2d):
            split = SplitBatchNorm2d(child.num_features, num_splits, eps=child.eps, momentum=child.momentum,
                                     affine=child.affine, track_running_stats=child.track_running_stats)
            split.load_state_dict(child.state_dict())
            setattr(module, name, split.to(child.weight.device if child.affine else child.running_mean.device))
        else:
            use_split_batchnorm(child, num_splits)
    return module


def interleave(x: torch.Tensor, num_splits: int) -> torch.Tensor:
    """Reorder a batch ``(B, ...)`` so that contiguous group ``g`` holds samples ``g, g + s, g + 2s, ...``.

    The momentum stream runs on this order: with :class:`SplitBatchNorm2d` a key then shares its batch statistics
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
