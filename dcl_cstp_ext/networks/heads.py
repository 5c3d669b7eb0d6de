"""Projection and prediction heads. Every head maps an encoder feature map ``(B, C, H, W)`` or a pooled
vector ``(B, C)`` to ``(B, out_dim)``, so heads are interchangeable in the pre-training methods."""

from __future__ import annotations

import torch
from torch import nn

from .cross_scale_attention import CrossScaleTokenProjection

__all__ = ["MLPHead", "build_projection_head"]


class MLPHead(nn.Module):
    """``num_layers`` Linear layers with BatchNorm + ReLU between them (SimCLR / SimSiam heads), or ReLU alone with
    ``batch_norm=False`` (the MoCo-v2 projector: ``Linear -> ReLU -> Linear``, as MoCo-v2's code, lightly's
    ``MoCoProjectionHead`` and solo-learn's ``mocov2plus``).

    A 4-D input is global-average pooled first. ``last_bn`` adds a BatchNorm1d after the last Linear
    (SimSiam projector). Shapes: ``(B, C[, H, W]) -> (B, out_dim)``.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        out_dim: int,
        num_layers: int = 2,
        last_bn: bool = False,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError("num_layers must be >= 1")
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        layers: list[nn.Module] = []
        for i in range(num_layers):
            last = i == num_layers - 1
            bn_follows = (batch_norm and not last) or (last and last_bn)
            layers.append(nn.Linear(dims[i], dims[i + 1], bias=not bn_follows))
            if not last:
                layers += [nn.BatchNorm1d(dims[i + 1])] if batch_norm else []
                layers.append(nn.ReLU(inplace=True))
            elif last_bn:
                layers.append(nn.BatchNorm1d(dims[i + 1], affine=False))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.mean(dim=(2, 3))
        return self.layers(x)


def build_projection_head(
    kind: str, in_channels: int, out_dim: int, hidden_dim: int = 2048, **kwargs
) -> nn.Module:
    """Build the DCL-CsTP head by name: ``"cstp"`` (CSA, default), ``"plain_attention"`` (CsTP with full-resolution
    self-attention) or ``"mlp"`` (2-layer MLP on the pooled feature: the paper's MLP ablation)."""
    if kind == "cstp":
        return CrossScaleTokenProjection(in_channels, out_dim, kv_mode="cross_scale", **kwargs)
    if kind == "plain_attention":
        return CrossScaleTokenProjection(in_channels, out_dim, kv_mode="full", **kwargs)
    if kind == "mlp":
        return MLPHead(in_channels, hidden_dim, out_dim, num_layers=2)
    raise ValueError(f"unknown head {kind!r}: expected 'cstp', 'plain_attention' or 'mlp'")
