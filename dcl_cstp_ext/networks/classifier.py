"""ResNet classifier: the DCL-CsTP encoder + a linear layer on the pooled feature (METHOD.md, stage 3)."""

from __future__ import annotations

import torch
from torch import nn

from .resnet_encoder import ResNetEncoder2D

__all__ = ["ResNetClassifier"]


class ResNetClassifier(nn.Module):
    """``GAP(encoder(x))`` -> dropout -> ``Linear`` -> logits ``(B, num_classes)``.

    The encoder lives under ``.encoder`` with the keys of :class:`ResNetEncoder2D`, so a pre-training export
    loads with ``model.encoder.load_state_dict(sd)`` (see :func:`~dcl_cstp_ext.networks.weights.load_encoder`).
    """

    def __init__(
        self, num_classes: int, backbone: str = "resnet50", in_channels: int = 3, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.encoder = ResNetEncoder2D(backbone, in_channels)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.encoder.out_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, pooled = self.encoder(x)
        return self.fc(self.dropout(pooled))
