"""The raw pixels as a stand-in encoder: a parameter-free baseline for the frozen-encoder probes.

Which part of a dense probe's score is the encoder's, and which is already in the pixels? Probed like a ResNet
(``dcl_cstp_ext.engines.encoder_probe``, encoder name ``"pixels"``), this "encoder" answers the second question: at
the C3 grid it hands the linear probe nothing but each cell's own ``patch x patch`` pixels (METHOD.md, "Measuring
feature quality without fine-tuning").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["PixelPatchEncoder"]


class PixelPatchEncoder(nn.Module):
    """Each stride-``patch`` cell's own pixels, laid out as a ResNet encoder's outputs.

    Shapes, for input ``(B, C, H, W)`` (``H``, ``W`` multiples of ``patch``): the cells' pixels ``(B, C * patch**2,
    H / patch, W / patch)`` (space-to-depth, ``F.pixel_unshuffle``); ``forward`` returns ``(features, pooled)`` as
    :class:`~dcl_cstp_ext.networks.ResNetEncoder2D` does: 5 maps at strides 2, 4, 8, 16, 32, each the cells'
    pixels average-pooled (strides above ``patch``) or repeated (below) to that grid, all with ``C * patch**2``
    channels, and ``pooled`` ``(B, C * patch**2)``, the image's mean cell. With the default ``patch=8`` the C3 map
    (stride 8) is exactly the pixels of each C3 cell.
    """

    strides = (2, 4, 8, 16, 32)

    def __init__(self, in_channels: int = 3, patch: int = 8) -> None:
        super().__init__()
        self.in_channels, self.patch = in_channels, patch
        self.feature_channels = (in_channels * patch * patch,) * len(self.strides)
        self.out_dim = self.feature_channels[-1]

    def forward(self, inputs: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        b, c, h, w = inputs.shape
        if c != self.in_channels or h % self.patch or w % self.patch:
            raise ValueError(f"expected input (B, {self.in_channels}, H, W) with H and W multiples of {self.patch}, "
                             f"got {tuple(inputs.shape)}")
        cells = F.pixel_unshuffle(inputs, self.patch)
        features = [F.adaptive_avg_pool2d(cells, (-(-h // s), -(-w // s))) for s in self.strides]
        return features, cells.mean(dim=(2, 3))
