"""2-D ResNet encoder whose weights are interchangeable with MONAI's FlexibleUNet and ResNet classifiers.

The encoder *is* MONAI's ``ResNetFeatures`` (torchvision layout: ``conv1, bn1, layer1..layer4``), built for
2-D input, so its ``state_dict`` loads unchanged into ``FlexibleUNet(backbone="resnet50").encoder`` and into
:class:`~dcl_cstp_ext.networks.classifier.ResNetClassifier` ``.encoder`` (and, with ``strict=False``, into
``monai.networks.nets.resnet50(spatial_dims=2)`` whose extra key is only ``fc``).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from monai.networks.nets.resnet import ResNetFeatures
from torch import nn

__all__ = ["PooledResNetEncoder2D", "ResNetEncoder2D", "ZeroPadShortcut", "scriptable_shortcuts", "ENCODER_CHANNELS"]

#: channels of the 5 feature maps (stem, C2, C3, C4, C5) per backbone
ENCODER_CHANNELS: dict[str, tuple[int, ...]] = {
    "resnet18": (64, 64, 128, 256, 512),
    "resnet34": (64, 64, 128, 256, 512),
    "resnet50": (64, 256, 512, 1024, 2048),
}


class ZeroPadShortcut(nn.Module):
    """Parameter-free ResNet shortcut "A": sub-sample by ``stride`` and zero-pad the channels to ``planes``.

    Replaces the ``functools.partial`` MONAI uses for ResNet-18/34, which TorchScript cannot compile (and which cuts
    the gradient of the shortcut with ``.data``). No weights, so state-dict keys are unchanged.
    """

    def __init__(self, planes: int, stride: int) -> None:
        super().__init__()
        self.planes = planes
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x[:, :, :: self.stride, :: self.stride]
        return F.pad(out, (0, 0, 0, 0, 0, self.planes - out.shape[1]))


def scriptable_shortcuts(network: nn.Module) -> nn.Module:
    """Replace, in place, every 2-D MONAI ResNet-18/34 'A' shortcut held as a ``functools.partial`` (in this encoder,
    or in any network holding a MONAI ResNet, e.g. ``FlexibleUNet``'s encoder) by an equivalent
    :class:`ZeroPadShortcut`, so that ``torch.jit.script`` / ``ckpt_export`` can compile it. Parameters,
    ``state_dict`` keys and outputs are unchanged; ResNet-50's convolutional shortcuts are left alone. Returns
    ``network``."""
    for module in network.modules():
        down = getattr(module, "downsample", None)
        if isinstance(down, functools.partial) and getattr(down.func, "__name__", "") == "_downsample_basic_block":
            if down.keywords.get("spatial_dims", 2) != 2:
                raise NotImplementedError("only 2-D 'A' shortcuts are converted")
            module.downsample = ZeroPadShortcut(down.keywords["planes"], down.keywords["stride"])
    return network


class ResNetEncoder2D(ResNetFeatures):
    """ResNet-18/34/50 for 2-D images returning its stage feature maps and its pooled feature.

    Args:
        backbone: ``"resnet18"``, ``"resnet34"`` or ``"resnet50"`` (default, as the paper).
        in_channels: 1 (grey-scale X-ray) or 3 (RGB).

    Shapes, for input ``(B, in_channels, H, W)``:
        ``forward`` returns ``(features, pooled)`` with ``features`` the list of 5 maps
        ``[(B, c0, H/2, W/2), (B, c1, H/4, W/4), (B, c2, H/8, W/8), (B, c3, H/16, W/16), (B, c4, H/32, W/32)]``
        (sizes rounded up) with channels :data:`ENCODER_CHANNELS` ``[backbone]``, and ``pooled`` ``(B, c4)``,
        the global average of the last map. C5 of ResNet-50 at 256x256 is ``(B, 2048, 8, 8)``.
    """

    def __init__(self, backbone: str = "resnet50", in_channels: int = 3) -> None:
        if backbone not in ENCODER_CHANNELS:
            raise ValueError(f"backbone must be one of {sorted(ENCODER_CHANNELS)}, got {backbone!r}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (grey) or 3 (RGB), got {in_channels}")
        super().__init__(model_name=backbone, pretrained=False, spatial_dims=2, in_channels=in_channels)
        scriptable_shortcuts(self)
        self.backbone = backbone
        self.in_channels = in_channels
        self.feature_channels = ENCODER_CHANNELS[backbone]
        self.out_dim = self.feature_channels[-1]

    def forward(self, inputs: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:  # type: ignore[override]
        return self.encode(inputs)

    def encode(self, inputs: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``(features, pooled)`` as above (``forward``; a method of its own so that TorchScript can call it from a
        subclass)."""
        if inputs.dim() != 4 or inputs.shape[1] != self.in_channels:
            raise ValueError(
                "expected input (B, " + str(self.in_channels) + ", H, W) for a " + str(self.in_channels)
                + "-channel encoder, got " + str(inputs.shape)
            )
        x = self.act(self.bn1(self.conv1(inputs)))
        features = [x]
        if not self.no_max_pool:
            x = self.maxpool(x)
        x = self.layer1(x)
        features.append(x)
        x = self.layer2(x)
        features.append(x)
        x = self.layer3(x)
        features.append(x)
        x = self.layer4(x)
        features.append(x)
        pooled = torch.flatten(self.avgpool(x), 1)
        return features, pooled


class PooledResNetEncoder2D(ResNetEncoder2D):
    """:class:`ResNetEncoder2D` whose ``forward`` returns only the pooled feature ``(B, C5)``: the embedding that
    ``dcl_pretrain``'s inference writes, as one tensor (what ``verify_net_in_out``, TorchScript export and the model
    zoo expect of a ``network_def``). Same parameters and ``state_dict`` keys as :class:`ResNetEncoder2D`."""

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.encode(inputs)[1]
