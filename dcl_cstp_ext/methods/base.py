"""One base for every self-supervised method: it owns the online encoder and the shape of a training step.

Subclasses differ only where the methods differ (heads, targets, loss), in the spirit of solo-learn:

* :meth:`SSLMethod.training_step` takes the list of views ``[(B, C, H, W), ...]`` (and the batch's data-set
  indices ``(B,)``, with which memory banks leave out a query's own image) and returns a dict with
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
from ..networks.split_batchnorm import deinterleave, interleave
from .memory_bank import MemoryBank

__all__ = ["SSLMethod", "MomentumMethod", "collapse_std", "bank_gap"]


@torch.no_grad()
def collapse_std(z: torch.Tensor) -> torch.Tensor:
    """Representation-collapse signal: ``sqrt(D) * mean_d std_b(z_b / |z_b|)``.

    About 1 for well-spread outputs, 0 when all outputs collapse to one direction (SimSiam paper, Sec. 4.1).
    """
    z = torch.nn.functional.normalize(z.detach().float(), dim=1)
    return z.std(dim=0).mean() * z.shape[1] ** 0.5


@torch.no_grad()
def bank_gap(query: torch.Tensor, keys: torch.Tensor, negatives: torch.Tensor, mask: torch.Tensor | None = None
             ) -> torch.Tensor:
    """Memory-bank staleness signal: how much closer the queries are to this step's keys of the *other* images of
    the batch than to the bank's negatives,

        gap = mean_b mean_{j != b} cos(q_b, k_j) - mean_b mean_{i: mask[b, i]} cos(q_b, n_i)

    ``query (B, D)``, ``keys (B, D)`` (key ``j`` of image ``j``), ``negatives (N, D)``, ``mask (B, N)`` (True = used).
    About 0 when the bank is a fair sample of today's keys. Clearly > 0 when the keys have drifted away from the
    bank: InfoNCE can then be lowered by telling *now* from *then* instead of one image from another, and a run can
    collapse with its loss under chance (MoCo-v2 at 330 steps on the chest X-rays: +0.022 with ``z_std`` 0.03;
    METHOD.md, "Memory bank at small data"). Queries with no usable negative are left out; 0 when no query has one
    (the first step, the bank still empty) or the batch has one image.
    """
    q = torch.nn.functional.normalize(query.detach().float(), dim=1)
    k = torch.nn.functional.normalize(keys.detach().float(), dim=1)
    n = torch.nn.functional.normalize(negatives.detach().float(), dim=1)
    b = q.shape[0]
    usable = torch.ones(b, n.shape[0], dtype=torch.bool, device=q.device) if mask is None else mask.to(q.device)
    counts = usable.sum(dim=1)
    rows = counts > 0
    if b < 2 or not rows.any():
        return q.new_zeros(())
    fresh = ((q @ k.t()).sum(dim=1) - (q * k).sum(dim=1)) / (b - 1)
    bank = ((q @ n.t()) * usable).sum(dim=1) / counts.clamp(min=1)
    return (fresh - bank)[rows].mean()


class SSLMethod(nn.Module):
    """Base of the pre-training methods.

    Args:
        backbone: ResNet name (``resnet18``, ``resnet34``, ``resnet50``).
        in_channels: image channels, 1 or 3.
        feature_stage: index of the encoder map that feeds the head: -1 (C5, METHOD.md's default) only. Another
            stage would leave ``layer4`` with no gradient at all (its only other use is the detached local-stream
            target), so it is refused.
    """

    #: how many views :meth:`training_step` expects
    num_views: int = 2

    def __init__(self, backbone: str = "resnet50", in_channels: int = 3, feature_stage: int = -1) -> None:
        super().__init__()
        if feature_stage not in (-1, 4):
            raise ValueError(
                f"feature_stage={feature_stage}: only -1 (C5) is supported; the head on an earlier map would leave "
                "the encoder's last stage (layer4) untrained, and the exported encoder with it"
            )
        self.encoder = ResNetEncoder2D(backbone, in_channels)
        self.feature_stage = feature_stage
        self.feature_dim = self.encoder.out_dim
        self.stage_channels = self.encoder.feature_channels[feature_stage]

    def forward(
        self, x: torch.Tensor | Sequence[torch.Tensor], indices: torch.Tensor | None = None
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """A tensor ``(B, C, H, W)`` gives the pooled online-encoder feature ``(B, feature_dim)``; a list of views
        (with the batch's data-set ``indices (B,)``) runs :meth:`training_step` (so that a DDP wrapper sees the
        training forward)."""
        if isinstance(x, (list, tuple)):
            return self.training_step(x, indices)
        return self.encoder(x)[1]

    def encode(self, x: torch.Tensor, encoder: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(feature map at feature_stage, pooled C5 feature)`` of ``encoder`` (default: the online one)."""
        features, pooled = (encoder or self.encoder)(x)
        return features[self.feature_stage], pooled

    def training_step(
        self, views: Sequence[torch.Tensor], indices: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Loss and logs of one batch of ``views``; ``indices (B,)`` are the images' data-set indices (or None)."""
        raise NotImplementedError

    def param_groups(self) -> list[dict]:
        """Optimiser parameter groups (``torch.optim`` style); one group unless a method needs its own learning rates."""
        return [{"params": list(self.parameters())}]

    def on_train_batch_end(self) -> None:
        """Called by the engine after ``optimizer.step()``."""

    def check_views(self, views: Sequence[torch.Tensor]) -> None:
        if len(views) < self.num_views:
            raise ValueError(f"{type(self).__name__} needs {self.num_views} views, got {len(views)}")


class MomentumMethod(SSLMethod):
    """An :class:`SSLMethod` with momentum (EMA) copies of some modules and a FIFO memory bank.

    Subclasses build their online modules, then call :meth:`init_momentum` with their attribute names; a step
    computes its keys with :meth:`momentum_forward`, asks the bank for its negatives with :meth:`negatives_for`, and
    stores its keys with :meth:`stash_keys`; :meth:`on_train_batch_end` updates the copies
    (``w_m <- m w_m + (1 - m) w``) and enqueues the keys, after the optimiser step, so the queue is never
    modified while the graph that read it is alive.

    ``bn_splits > 1`` is the one-device substitute of MoCo's shuffling BN: in training mode both encoders run on
    ``bn_splits`` equal groups of the batch one after the other, as if each group were on its own device, so every
    BatchNorm computes its statistics over one group; the momentum stream's groups are interleaved
    (:func:`~dcl_cstp_ext.networks.interleave`), so that a query's group and its key's group share only
    ``1 / bn_splits`` of their images. Running the encoder per group copies no activations (a regrouping BatchNorm
    copies each one twice: DCL-CsTP's step cost 1.33x SimSiam's with it, 1.16x now; RESULTS "Benchmarks"); the
    running statistics take one update per group. The batch size must be divisible by ``bn_splits``.
    """

    def __init__(self, *args, momentum: float = 0.999, bn_splits: int = 1, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if bn_splits < 1:
            raise ValueError(f"bn_splits must be >= 1, got {bn_splits}")
        self.momentum = momentum
        self.bn_splits = int(bn_splits)
        self._momentum_pairs: list[tuple[str, str]] = []
        self._pending: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self.queue: MemoryBank | None = None

    def init_momentum(self, *names: str) -> None:
        """Create ``momentum_<name>`` as a frozen copy of each online module ``<name>``, its 4-D weights in the
        channels-last memory format: the momentum stream only runs forward, and there channels-last convolutions and
        max-pooling are 20-30% faster on the CPU (RESULTS, "Benchmarks"); values and ``state_dict`` are unchanged."""
        for name in names:
            target = copy.deepcopy(getattr(self, name)).to(memory_format=torch.channels_last)
            for p in target.parameters():
                p.requires_grad_(False)
            setattr(self, f"momentum_{name}", target)
            self._momentum_pairs.append((name, f"momentum_{name}"))

    def init_queue(self, size: int, dim: int) -> None:
        self.queue = MemoryBank(size, dim)

    def resize_queue(self, size: int) -> None:
        """Replace the (still empty) memory bank by one of ``size`` keys, on the same device."""
        if self.queue is None or self.queue.size == size:
            return
        if (self.queue.index != -1).any():
            raise RuntimeError("resize_queue: the memory bank already holds keys")
        device = self.queue.bank.device
        self.queue = MemoryBank(size, self.queue.bank.shape[1]).to(device)

    def encode(self, x: torch.Tensor, encoder: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`SSLMethod.encode`; in training mode with ``bn_splits > 1``, run on each of the ``bn_splits``
        contiguous groups of the batch ``(B, C, H, W)`` and concatenated (the split BatchNorm of the class doc)."""
        s = self.bn_splits
        if s == 1 or not self.training:
            return super().encode(x, encoder)
        if x.shape[0] % s:
            raise ValueError(f"batch {x.shape[0]} is not divisible by bn_splits={s} (the split BatchNorm groups)")
        groups = [super(MomentumMethod, self).encode(chunk, encoder) for chunk in x.chunk(s)]
        return torch.cat([g[0] for g in groups]), torch.cat([g[1] for g in groups])

    @torch.no_grad()
    def momentum_update(self) -> None:
        """``w_m <- m * w_m + (1 - m) * w`` for every parameter of every momentum copy."""
        m = self.momentum
        for online, target in self._momentum_pairs:
            src = [p.detach() for p in getattr(self, online).parameters()]
            dst = list(getattr(self, target).parameters())
            torch._foreach_mul_(dst, m)
            torch._foreach_add_(dst, src, alpha=1.0 - m)

    @torch.no_grad()
    def momentum_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``momentum_head(momentum_encoder(x))`` on the feature map at ``feature_stage``, ``(B, D)``, no gradient;
        with ``bn_splits > 1`` run on the interleaved batch and put back in batch order."""
        x = interleave(x, self.bn_splits).contiguous(memory_format=torch.channels_last)
        keys = self.momentum_head(self.encode(x, self.momentum_encoder)[0])
        return deinterleave(keys, self.bn_splits)

    def negatives_for(self, indices: torch.Tensor | None, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(negatives (N, D), mask (B, N))``: the bank and, per query, its usable rows (filled, not a key of the
        query's own image ``indices[b]``)."""
        return self.queue.negatives, self.queue.negative_mask(indices, batch_size)

    def stash_keys(self, keys: torch.Tensor, indices: torch.Tensor | None = None) -> None:
        """Keep ``keys (B, D)`` and their sample ``indices (B,)`` to enqueue after the optimiser step."""
        self._pending = (keys.detach(), None if indices is None else indices.detach())

    def on_train_batch_end(self) -> None:
        self.momentum_update()
        if self.queue is not None and self._pending is not None:
            self.queue.enqueue(*self._pending)
        self._pending = None
