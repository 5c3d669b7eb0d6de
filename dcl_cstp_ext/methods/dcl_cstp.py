"""DCL-CsTP: dual-stream contrastive learning with a cross-scale token projection (METHOD.md, stage 2)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..losses import DCLCsTPLoss
from ..networks.heads import build_projection_head
from .base import MomentumMethod, bank_gap, collapse_std

__all__ = ["DCLCsTP"]


class DCLCsTP(MomentumMethod):
    """Global (MoCo-style, queue) + local (SimSiam-style, positives only) streams over three views.

    Step on views ``(v1, v2, v3)`` -- two online passes and one momentum pass, nothing more:

    * ``q2 = T(F(v2))``, ``q3 = T(F(v3))``; ``p2^``, ``p3^`` the detached pooled features of those same passes;
    * ``p = T_m(F_m(v1))`` under no-grad; negatives from the memory bank;
    * ``L = L_NCE(q2, p) + alpha L_KL(q2, p) + beta L_CS(q2, q3, p2^, p3^)`` (paper eq. 10), the negatives of each
      query being the bank's keys of other images (:meth:`MemoryBank.negative_mask`).

    ``T`` outputs ``feature_dim`` values (2048 for ResNet-50) so that it plays the SimSiam predictor.

    Args:
        head: ``"cstp"`` (default), ``"mlp"`` (ablation: MLP instead of CsTP), ``"plain_attention"``
            (ablation: full-resolution self-attention instead of CSA).
        use_global / use_local: the stream ablations ("without global stream", "without local stream").
        queue_size: negatives in the memory bank (4096 classification, 512 segmentation data).
        temperature, alpha, beta: tau and the loss weights of paper eq. 10.
        head_kwargs: extra arguments of the head (``dim``, ``num_heads``, ``mlp_ratio`` for CsTP).
        bn_splits: split BatchNorm in the encoders, the one-device stand-in of shuffling BN (:class:`MomentumMethod`).
        center_target: centre the local stream's targets p2^, p3^ with a non-affine BatchNorm1d (batch statistics,
            no parameters) before L_CS. Off by default (the paper's form). A post-ReLU pooled feature lies in a
            narrow cone (mean cosine between images 0.85 for a random ResNet-18 at 64 px), so a constant
            prediction already scores most of L_CS; centred, the target keeps only what differs between images.
    """

    num_views = 3

    def __init__(
        self,
        backbone: str = "resnet50",
        in_channels: int = 3,
        head: str = "cstp",
        queue_size: int = 4096,
        temperature: float = 0.2,
        alpha: float = 0.3,
        beta: float = 0.7,
        momentum: float = 0.999,
        use_global: bool = True,
        use_local: bool = True,
        feature_stage: int = -1,
        head_kwargs: dict | None = None,
        bn_splits: int = 1,
        center_target: bool = False,
    ) -> None:
        super().__init__(backbone, in_channels, feature_stage, momentum=momentum, bn_splits=bn_splits)
        if not (use_global or use_local):
            raise ValueError("at least one of use_global / use_local must be True")
        self.use_global, self.use_local = use_global, use_local
        self.head = build_projection_head(head, self.stage_channels, self.feature_dim, **(head_kwargs or {}))
        self.criterion = DCLCsTPLoss(
            temperature=temperature, alpha=alpha, beta=beta, use_global=use_global, use_local=use_local
        )
        self.center_target = center_target
        self.target_norm = nn.BatchNorm1d(self.feature_dim, affine=False) if center_target else None
        if use_global:
            self.init_momentum("encoder", "head")
            self.init_queue(queue_size, self.feature_dim)

    def training_step(
        self, views: Sequence[torch.Tensor], indices: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        self.check_views(views)
        v1, v2, v3 = views[:3]
        map2, pooled2 = self.encode(v2)
        q2 = self.head(map2)
        q3 = p2_hat = p3_hat = key = negatives = mask = None
        if self.use_local:
            map3, pooled3 = self.encode(v3)
            q3 = self.head(map3)
            p2_hat, p3_hat = self.local_target(pooled2), self.local_target(pooled3)
        if self.use_global:
            key = self.momentum_forward(v1)
            negatives, mask = self.negatives_for(indices, q2.shape[0])
            self.stash_keys(key, indices)
        out = self.criterion(q2, q3, key, negatives, p2_hat, p3_hat, negative_mask=mask)
        out["z_std"] = collapse_std(q2)
        if self.use_global:
            out["bank_gap"] = bank_gap(q2, key, negatives, mask)
        return out

    @torch.no_grad()
    def local_target(self, pooled: torch.Tensor) -> torch.Tensor:
        """The local stream's stop-gradient target ``p^ (B, D)``: the pooled feature, centred with ``center_target``."""
        pooled = pooled.detach()
        return self.target_norm(pooled) if self.target_norm is not None else pooled
