"""The paper's baselines on the shared base: MoCo-v2, SimCLR and SimSiam."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..losses import InfoNCELoss, NTXentLoss, SymmetricNegativeCosineLoss
from ..networks.heads import MLPHead
from .base import MomentumMethod, SSLMethod, collapse_std

__all__ = ["MoCoV2", "SimCLR", "SimSiam"]


class MoCoV2(MomentumMethod):
    """MoCo-v2 (Chen et al., 2020): ``q = g(F(v1))``, ``k = g_m(F_m(v2))``, InfoNCE against a FIFO queue.

    Head: 2-layer MLP ``C5 -> hidden_dim -> proj_dim``.
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        in_channels: int = 3,
        queue_size: int = 4096,
        temperature: float = 0.2,
        momentum: float = 0.999,
        hidden_dim: int = 2048,
        proj_dim: int = 128,
        feature_stage: int = -1,
    ) -> None:
        super().__init__(backbone, in_channels, feature_stage, momentum=momentum)
        self.head = MLPHead(self.stage_channels, hidden_dim, proj_dim, num_layers=2)
        self.criterion = InfoNCELoss(temperature=temperature)
        self.init_momentum("encoder", "head")
        self.init_queue(queue_size, proj_dim)

    def training_step(self, views: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        self.check_views(views)
        q = self.head(self.encode(views[0])[0])
        with torch.no_grad():
            k = self.momentum_head(self.encode(views[1], self.momentum_encoder)[0])
        loss = self.criterion(q, k, self.queue.negatives)
        self.stash_keys(k)
        return {"loss": loss, "nce": loss.detach(), "z_std": collapse_std(q)}


class SimCLR(SSLMethod):
    """SimCLR (Chen et al., 2020): NT-Xent between the projections of two views, in-batch negatives."""

    def __init__(
        self,
        backbone: str = "resnet50",
        in_channels: int = 3,
        temperature: float = 0.2,
        hidden_dim: int = 2048,
        proj_dim: int = 128,
        feature_stage: int = -1,
    ) -> None:
        super().__init__(backbone, in_channels, feature_stage)
        self.head = MLPHead(self.stage_channels, hidden_dim, proj_dim, num_layers=2)
        self.criterion = NTXentLoss(temperature=temperature)

    def training_step(self, views: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        self.check_views(views)
        z1 = self.head(self.encode(views[0])[0])
        z2 = self.head(self.encode(views[1])[0])
        loss = self.criterion(z1, z2)
        return {"loss": loss, "nt_xent": loss.detach(), "z_std": collapse_std(z1)}


class SimSiam(SSLMethod):
    """SimSiam (Chen & He, 2021): ``L = -1/2 cos(h(z1), sg(z2)) - 1/2 cos(h(z2), sg(z1))``.

    Projector ``g``: 3-layer MLP to ``proj_dim`` with a final BN; predictor ``h``: ``proj_dim -> pred_hidden ->
    proj_dim``.
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        in_channels: int = 3,
        proj_dim: int = 2048,
        pred_hidden_dim: int = 512,
        feature_stage: int = -1,
    ) -> None:
        super().__init__(backbone, in_channels, feature_stage)
        self.head = MLPHead(self.stage_channels, proj_dim, proj_dim, num_layers=3, last_bn=True)
        self.predictor = MLPHead(proj_dim, pred_hidden_dim, proj_dim, num_layers=2)
        self.criterion = SymmetricNegativeCosineLoss()

    def training_step(self, views: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        self.check_views(views)
        z1 = self.head(self.encode(views[0])[0])
        z2 = self.head(self.encode(views[1])[0])
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = self.criterion(p1, z2, p2, z1)
        return {"loss": loss, "cs": loss.detach(), "z_std": collapse_std(z1)}
