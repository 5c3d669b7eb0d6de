"""Optimiser and learning-rate schedule by name, so that bundle configs switch them with one override."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

__all__ = ["build_optimizer", "build_lr_scheduler"]


def build_optimizer(
    params: Iterable, name: str = "sgd", lr: float = 0.03, momentum: float = 0.9, weight_decay: float = 1e-4
) -> torch.optim.Optimizer:
    """``sgd`` (momentum, the paper's), ``adamw`` or ``adam``; only parameters that require a gradient."""
    params = [p for p in params if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}: expected 'sgd', 'adamw' or 'adam'")


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str = "step",
    max_epochs: int = 200,
    milestones: Sequence[int] = (120, 160),
    gamma: float = 0.1,
    warmup_epochs: int = 0,
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule: ``step`` (x``gamma`` at ``milestones``: the paper's 120 and 160 of 200), ``cosine``
    (to 0 at ``max_epochs``) or ``constant``; optional linear warm-up over ``warmup_epochs``."""
    if schedule == "step":
        main = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma)
    elif schedule == "cosine":
        main = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, max_epochs - warmup_epochs))
    elif schedule == "constant":
        main = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    else:
        raise ValueError(f"unknown lr schedule {schedule!r}: expected 'step', 'cosine' or 'constant'")
    if warmup_epochs <= 0:
        return main
    warm = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=1.0 / (warmup_epochs + 1), total_iters=warmup_epochs)
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[warmup_epochs])
