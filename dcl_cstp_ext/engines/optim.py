"""Optimiser and learning-rate schedule by name, so that bundle configs switch them with one override."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch
from torch import nn

__all__ = ["build_optimizer", "build_lr_scheduler", "finetune_param_groups", "KeepFixedLR", "method_lr"]

#: the ResNet encoder's stages, input to output: the stem (``conv1``, ``bn1``), then ``layer1`` .. ``layer4``
ENCODER_STAGES = 5


def finetune_param_groups(
    network: nn.Module, encoder_lr_scale: float = 1.0, layer_decay: float = 1.0
) -> list[dict]:
    """Parameter groups for fine-tuning a network with a ResNet ``.encoder`` (FlexibleUNet, ResNetClassifier).

    The decoder / head trains at the base learning rate; encoder stage ``k`` (0 = stem, 1-4 = ``layer1`` ..
    ``layer4``) at ``encoder_lr_scale * layer_decay ** (5 - k)``: a lower encoder lr, layer-wise decay (Clark et al.
    2020, ELECTRA; Bao et al. 2022, BEiT), or both, the usual recipes for a pre-trained encoder. Each group carries
    ``lr_scale``, which :func:`build_optimizer` multiplies into its ``lr``; with both factors 1 there is one group.
    """
    if encoder_lr_scale <= 0 or not 0 < layer_decay <= 1:
        raise ValueError(f"encoder_lr_scale must be > 0 and layer_decay in (0, 1]; got {encoder_lr_scale}, {layer_decay}")
    if encoder_lr_scale == 1.0 and layer_decay == 1.0:
        return [{"params": list(network.parameters()), "lr_scale": 1.0}]
    if not hasattr(network, "encoder"):
        raise AttributeError(f"{type(network).__name__} has no .encoder for encoder_lr_scale / layer_decay")
    encoder = {id(p) for p in network.encoder.parameters()}
    groups: dict[float, list] = {}
    for name, p in network.named_parameters():
        if id(p) in encoder:
            stage = re.search(r"(?:^|\.)encoder\.layer(\d)\.", name)
            k = int(stage.group(1)) if stage else 0
            scale = encoder_lr_scale * layer_decay ** (ENCODER_STAGES - k)
        else:
            scale = 1.0
        groups.setdefault(scale, []).append(p)
    return [{"params": params, "lr_scale": scale} for scale, params in sorted(groups.items())]


#: ``impl`` of :func:`build_optimizer` -> the keyword arguments of the ``torch.optim`` optimiser
OPTIMIZER_IMPLS = {None: {}, "for_loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def build_optimizer(
    params: Iterable, name: str = "sgd", lr: float = 0.03, momentum: float = 0.9, weight_decay: float = 1e-4,
    impl: str | None = None,
) -> torch.optim.Optimizer:
    """``sgd`` (momentum, the paper's), ``adamw`` or ``adam``; only parameters that require a gradient.

    ``params`` is an iterable of tensors or of ``torch.optim`` parameter groups (dicts with ``params``, e.g. a
    method's ``param_groups()`` or :func:`finetune_param_groups`; a group may carry ``fix_lr`` for
    :func:`build_lr_scheduler`, and ``lr_scale``: its ``lr`` is then ``lr * lr_scale``). ``impl``: torch's
    implementation of the update, ``for_loop``, ``foreach`` (one kernel per op over all tensors) or ``fused`` (one
    kernel for the whole update); None lets torch choose (``foreach`` on CUDA). The same arithmetic either way."""
    if impl not in OPTIMIZER_IMPLS:
        raise ValueError(f"unknown optimizer impl {impl!r}: expected one of {sorted(k for k in OPTIMIZER_IMPLS if k)} "
                         "or None")
    kwargs = OPTIMIZER_IMPLS[impl]
    params = list(params)
    if params and isinstance(params[0], dict):
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in params]
        groups = [{**g, "lr": lr * g["lr_scale"]} if "lr_scale" in g else g for g in groups]
        params = [g for g in groups if g["params"]]
    else:
        params = [p for p in params if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **kwargs)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **kwargs)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **kwargs)
    raise ValueError(f"unknown optimizer {name!r}: expected 'sgd', 'adamw' or 'adam'")


def epochs_for(max_epochs: int, max_steps: int | None, num_items: int, batch_size: int) -> int:
    """The number of whole epochs to train: ``max_epochs``, or fewer when ``max_steps`` (optimiser steps of one
    device) is reached first, as Lightning's ``Trainer(max_epochs, max_steps)``; the step budget is rounded to the
    nearest whole epoch so that schedules, checkpoints and resumes stay per epoch. An epoch is
    ``num_items // (batch_size * world size)`` steps (the loaders drop the last partial batch).

    The ``cpu`` pre-training preset sets ``max_steps`` 1,320, the same schedule on every data set: 60 epochs of
    Kvasir-SEG's 704 images, 23 of ISIC 2018's 1,868, 10 of the chest X-rays' 4,173 (batch 32)."""
    if max_steps is None or max_steps == -1:  # -1: no step budget, as Lightning's (a command line cannot give None)
        return int(max_epochs)
    if max_steps < 1:
        raise ValueError(f"max_steps must be an integer >= 1, or -1 / null for no step budget, got {max_steps}")
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    world = torch.distributed.get_world_size() if distributed else 1
    per_epoch = num_items // (batch_size * world)
    if per_epoch < 1:
        raise ValueError(f"{num_items} images make no batch of {batch_size} on each of {world} device(s): "
                         "lower batch_size or add images")
    epochs = min(int(max_epochs), max(1, round(max_steps / per_epoch)))
    print(f"max_steps {max_steps}: {epochs} epochs of {per_epoch} steps ({epochs * per_epoch} steps; "
          f"max_epochs {max_epochs})", flush=True)
    return epochs


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: str = "step",
    max_epochs: int = 200,
    milestones: Sequence[int] = (120, 160),
    gamma: float = 0.1,
    warmup_epochs: int = 0,
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-epoch schedule: ``step`` (x``gamma`` at ``milestones``: the paper's 120 and 160 of 200), ``cosine``
    (to 0 at ``max_epochs``) or ``constant``; optional linear warm-up over ``warmup_epochs``. Parameter groups marked
    ``fix_lr`` (SimSiam's predictor) keep their initial learning rate throughout (:class:`KeepFixedLR`)."""
    if schedule == "step":
        main = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=gamma)
    elif schedule == "cosine":
        main = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, max_epochs - warmup_epochs))
    elif schedule == "constant":
        main = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    else:
        raise ValueError(f"unknown lr schedule {schedule!r}: expected 'step', 'cosine' or 'constant'")
    scheduler = main
    if warmup_epochs > 0:
        warm = torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=1.0 / (warmup_epochs + 1), total_iters=warmup_epochs
        )
        scheduler = torch.optim.lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[warmup_epochs])
    if any(g.get("fix_lr") for g in optimizer.param_groups):
        scheduler = KeepFixedLR(scheduler)
    _restore_fixed(optimizer)
    return scheduler


def _restore_fixed(optimizer: torch.optim.Optimizer) -> None:
    for group in optimizer.param_groups:
        if group.get("fix_lr"):
            group["lr"] = group["initial_lr"]


class KeepFixedLR:
    """A learning-rate scheduler whose ``step`` leaves the groups marked ``fix_lr`` at their initial rate (SimSiam's
    fixed predictor lr). Everything else (``state_dict``, ``get_last_lr``, ...) is the wrapped scheduler's."""

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        self.scheduler = scheduler
        self.optimizer = scheduler.optimizer

    def step(self, *args, **kwargs) -> None:
        self.scheduler.step(*args, **kwargs)
        _restore_fixed(self.optimizer)

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)
        _restore_fixed(self.optimizer)

    def __getattr__(self, name: str):
        if name == "scheduler":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.scheduler, name)


#: each pre-training method's learning rate at a reference batch size, scaled linearly with the batch (Goyal et al.
#: 2017): ``(lr, reference batch, source)``. SGD momentum 0.9 for all (METHOD.md, "Baselines at their papers' settings")
METHOD_LR: dict[str, tuple[float, int, str]] = {
    "dcl_cstp": (0.03, 128, "DCL-CsTP paper: lr 0.03 at batch 128"),
    "mocov2": (0.03, 256, "MoCo-v2 paper: lr 0.03 at batch 256"),
    "simsiam": (0.5, 256, "solo-learn's CIFAR recipe for small data: 0.5 x B / 256, predictor lr fixed (the ImageNet "
                          "paper's 0.05 x B / 256 left SimSiam untrained at CPU scale: docs/RESULTS.md)"),
    "simclr": (0.06, 128, "SimCLR with SGD as lightly's CIFAR-10 benchmark: 0.06 x B / 128 (the paper's LARS is not used)"),
}


def method_lr(method: str, batch_size: int, lr: float | None = None) -> float:
    """``lr`` when given, else the method's rule :data:`METHOD_LR` at ``batch_size`` (the ablations are DCL-CsTP's).
    ``method_lr("simsiam", 32)`` is 0.5 x 32 / 256 = 0.0625."""
    if lr is not None:
        return float(lr)
    base, ref, _ = METHOD_LR.get(method, METHOD_LR["dcl_cstp"])
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    return base * batch_size / ref
