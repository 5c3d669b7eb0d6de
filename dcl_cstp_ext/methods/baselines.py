"""The paper's baselines on the shared base: MoCo-v2, SimCLR and SimSiam."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..losses import InfoNCELoss, NTXentLoss, SymmetricNegativeCosineLoss
from ..networks.heads import MLPHead
from .base import MomentumMethod, SSLMethod, bank_gap, collapse_std

__all__ = ["MoCoV2", "SimCLR", "SimSiam"]


class MoCoV2(MomentumMethod):
    """MoCo-v2 (Chen et al., 2020) with the symmetric loss of solo-learn's ``mocov2plus``:

        L = 1/2 L_NCE(g(F(v1)), g_m(F_m(v2))) + 1/2 L_NCE(g(F(v2)), g_m(F_m(v1)))

    each query against its momentum key and the FIFO queue (its own image's keys left out). Both keys are enqueued.
    Logs ``z_std`` (collapse) and ``bank_gap`` (the bank's staleness, :func:`~dcl_cstp_ext.methods.base.bank_gap`).
    Head: ``C5 -> hidden_dim -> ReLU -> proj_dim``, no BatchNorm (MoCo-v2's code, lightly's ``MoCoProjectionHead``).
    ``bn_splits``: split BatchNorm in the encoders, the one-device stand-in of shuffling BN (:class:`MomentumMethod`).
    ``projector_bn``: BatchNorm after the hidden layer and a non-affine one after the output, as MoCo v3's projector
    (Chen, Xie & He, 2021); off by default (MoCo-v2's). The batch-centred output has no common direction that could
    drift away from the bank as a whole (``bank_gap``; METHOD.md, "Memory bank at small data"): a counterfactual,
    not MoCo-v2.
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
        bn_splits: int = 1,
        projector_bn: bool = False,
    ) -> None:
        super().__init__(backbone, in_channels, feature_stage, momentum=momentum, bn_splits=bn_splits)
        self.head = MLPHead(self.stage_channels, hidden_dim, proj_dim, num_layers=2, batch_norm=projector_bn,
                            last_bn=projector_bn)
        self.criterion = InfoNCELoss(temperature=temperature)
        self.init_momentum("encoder", "head")
        self.init_queue(queue_size, proj_dim)

    def training_step(
        self, views: Sequence[torch.Tensor], indices: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        self.check_views(views)
        q1 = self.head(self.encode(views[0])[0])
        q2 = self.head(self.encode(views[1])[0])
        k1, k2 = self.momentum_forward(views[0]), self.momentum_forward(views[1])
        negatives, mask = self.negatives_for(indices, q1.shape[0])
        loss = 0.5 * (self.criterion(q1, k2, negatives, mask) + self.criterion(q2, k1, negatives, mask))
        self.stash_keys(torch.cat([k1, k2]), None if indices is None else torch.cat([indices, indices]))
        gap = bank_gap(q1, k2, negatives, mask)
        return {"loss": loss, "nce": loss.detach(), "z_std": collapse_std(q1), "bank_gap": gap}


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

    def training_step(
        self, views: Sequence[torch.Tensor], indices: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        self.check_views(views)
        z1 = self.head(self.encode(views[0])[0])
        z2 = self.head(self.encode(views[1])[0])
        loss = self.criterion(z1, z2)
        return {"loss": loss, "nt_xent": loss.detach(), "z_std": collapse_std(z1)}


class SimSiam(SSLMethod):
    """SimSiam (Chen & He, 2021): ``L = -1/2 cos(h(z1), sg(z2)) - 1/2 cos(h(z2), sg(z1))``.

    Projector ``g``: 3-layer MLP to ``proj_dim`` with a final BN; predictor ``h``: ``proj_dim -> pred_hidden ->
    proj_dim``. The paper keeps the predictor's learning rate fixed while the rest follows the cosine schedule
    (SimSiam Sec. 4.2, ``--fix-pred-lr``): :meth:`param_groups` marks its group ``fix_lr``.
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

    def training_step(
        self, views: Sequence[torch.Tensor], indices: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        self.check_views(views)
        z1 = self.head(self.encode(views[0])[0])
        z2 = self.head(self.encode(views[1])[0])
        p1, p2 = self.predictor(z1), self.predictor(z2)
        loss = self.criterion(p1, z2, p2, z1)
        return {"loss": loss, "cs": loss.detach(), "z_std": collapse_std(z1)}

    def param_groups(self) -> list[dict]:
        """Encoder and projector, then the predictor with ``fix_lr`` (see :func:`~dcl_cstp_ext.engines.build_lr_scheduler`)."""
        predictor = {id(p) for p in self.predictor.parameters()}
        rest = [p for p in self.parameters() if id(p) not in predictor]
        return [{"params": rest}, {"params": list(self.predictor.parameters()), "fix_lr": True}]
