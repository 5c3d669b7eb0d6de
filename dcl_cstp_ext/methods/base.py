"""One base for every self-supervised method: it owns the online encoder and the shape of a training step.

Subclasses differ only where the methods differ (heads, targets, loss), in the spirit of solo-learn:

* :meth:`SSLMethod.training_step` takes the list of views ``[(B, C, H, W), ...]`` and returns a dict with
  ``loss`` (to back-propagate), detached per-term scalars for logging, and ``z_std`` (collapse signal);
* :meth:`SSLMethod.on_train_batch_end` runs after the optimiser step (momentum update, queue update);
* ``forward(x)`` returns the pooled encoder feature ``(B, C5)``: what the k-NN monitor and the embeddings use.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn

from ..networks.resnet_encoder import ResNetEncoder2D
from .memory_bank import MemoryBank

__all__ = ["SSLMethod", "MomentumMethod", "collapse_std"]


@torch.no_grad()
def collapse_std(z: torch.Tensor) -> torch.Tensor:
    """Representation-collapse signal: ``sqrt(D) * mean_d std_b(z_b / |z_b|)``.

    About 1 for well-spread outputs, 0 when all outputs collapse to one direction (SimSiam paper, Sec. 4.1).
    """
    z = torch.nn.functional.normalize(z.detach().float(), dim=1)
    return z.std(dim=0).mean() * z.shape[1] ** 0.5


class SSLMethod(nn.Module):
    """Base of the pre-training methods.

    Args:
        backbone: ResNet name (``resnet18``, ``resnet34``, ``resnet50``).
        in_channels: image channels, 1 or 3.
        feature_stage: index of the encoder map that feeds the head (-1: C5, METHOD.md's default).
    """

    #: how many views :meth:`training_step` expects
    num_views: int = 2

    def __init__(self, backbone: str = "resnet50", in_channels: int = 3, feature_stage: int = -1) -> None:
        super().__init__()
        self.encoder = ResNetEncoder2D(backbone, in_channels)
        self.feature_stage = feature_stage
        self.feature_dim = self.encoder.out_dim
        self.stage_channels = self.encoder.feature_channels[feature_stage]

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor | dict[str, torch.Tensor]:
        """A tensor ``(B, C, H, W)`` gives the pooled online-encoder feature ``(B, feature_dim)``; a list of views
        runs :meth:`training_step` (so that a DDP wrapper sees the training forward)."""
        if isinstance(x, (list, tuple)):
            return self.training_step(x)
        return self.encoder(x)[1]

    def encode(self, x: torch.Tensor, encoder: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(feature map at feature_stage, pooled C5 feature)`` of ``encoder`` (default: the online one)."""
        features, pooled = (encoder or self.encoder)(x)
        return features[self.feature_stage], pooled

    def training_step(self, views: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def on_train_batch_end(self) -> None:
        """Called by the engine after ``optimizer.step()``."""

    def check_views(self, views: Sequence[torch.Tensor]) -> None:
        if len(views) < self.num_views:
            raise ValueError(f"{type(self).__name__} needs {self.num_views} views, got {len(views)}")


class MomentumMethod(SSLMethod):
    """An :class:`SSLMethod` with momentum (EMA) copies of some modules and a FIFO memory bank.

    Subclasses build their online modules, then call :meth:`init_momentum` with their attribute names; a step
    stores its keys with :meth:`stash_keys`, and :meth:`on_train_batch_end` updates the copies
    (``w_m <- m w_m + (1 - m) w``) and enqueues the keys, after the optimiser step, so the queue is never
    modified while the graph that read it is alive.
    """

    def __init__(self, *args, momentum: float = 0.999, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.momentum = momentum
        self._momentum_pairs: list[tuple[str, str]] = []
        self._pending_keys: torch.Tensor | None = None
        self.queue: MemoryBank | None = None

    def init_momentum(self, *names: str) -> None:
        """Create ``momentum_<name>`` as a frozen copy of each online module ``<name>``."""
        for name in names:
            target = copy.deepcopy(getattr(self, name))
            for p in target.parameters():
                p.requires_grad_(False)
            setattr(self, f"momentum_{name}", target)
            self._momentum_pairs.append((name, f"momentum_{name}"))

    def init_queue(self, size: int, dim: int) -> None:
        self.queue = MemoryBank(size, dim)

    @torch.no_grad()
    def momentum_update(self) -> None:
        """``w_m <- m * w_m + (1 - m) * w`` for every parameter of every momentum copy."""
        m = self.momentum
        for online, target in self._momentum_pairs:
            src = [p.detach() for p in getattr(self, online).parameters()]
            dst = list(getattr(self, target).parameters())
            torch._foreach_mul_(dst, m)
            torch._foreach_add_(dst, src, alpha=1.0 - m)

    def stash_keys(self, keys: torch.Tensor) -> None:
        self._pending_keys = keys.detach()

    def on_train_batch_end(self) -> None:
        self.momentum_update()
        if self.queue is not None and self._pending_keys is not None:
            self.queue.enqueue(self._pending_keys)
        self._pending_keys = None
