"""The feature space of the sample-quality measures and of curation.

Features come from an encoder the user names (by default the dcl_pretrain export ``models/encoder.pt``), or, when
there is none, from a randomly initialised ResNet-18 with a fixed seed whose batch-norm statistics are re-estimated
on the real images. Random-feature distances are a known, imperfect proxy for Inception/learned features (they
capture colour, texture and coarse layout, not semantics); they need no download and are deterministic, so they
compare samplers and checkpoints of the same data fairly, but their values are not comparable to published FIDs.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

from ..networks import ResNetEncoder2D
from ..networks.export import read_export
from ..networks.weights import extract_encoder_state

__all__ = ["FALLBACK_ENCODER", "build_feature_encoder", "extract_image_features"]

logger = logging.getLogger(__name__)

#: description of the fallback feature encoder (recorded in reports)
FALLBACK_ENCODER = "random ResNet-18 (seed {seed}), batch-norm statistics re-estimated on the real images"


def _arch_from_state(state: Mapping[str, torch.Tensor]) -> tuple[str, int]:
    in_channels = int(state["conv1.weight"].shape[1])
    if "layer1.0.conv3.weight" in state:
        return "resnet50", in_channels
    return ("resnet34" if "layer1.2.conv1.weight" in state else "resnet18"), in_channels


@torch.no_grad()
def _calibrate_bn(encoder: torch.nn.Module, images: torch.Tensor, batch_size: int = 64) -> None:
    """Re-estimate batch-norm running statistics (cumulative average) on ``images``; weights untouched."""
    bns = [m for m in encoder.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    encoder.train()
    device = next(encoder.parameters()).device
    for s in range(0, len(images), batch_size):
        encoder(images[s : s + batch_size].to(device))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    encoder.eval()


def build_feature_encoder(
    path: str | Path | None = None,
    in_channels: int = 3,
    strict: bool = False,
    seed: int = 0,
    calibration_images: torch.Tensor | None = None,
    device: torch.device | str = "cpu",
) -> tuple[torch.nn.Module, dict]:
    """The encoder of the quality measures and curation, in eval mode, and a description of it.

    ``path``: an encoder export of the dcl_pretrain bundle (``models/encoder.pt``; backbone and channels are read
    from the weights) or any checkpoint :func:`dcl_cstp_ext.networks.extract_encoder_state` understands. When
    ``path`` is None or missing (and not ``strict``), the fallback is a randomly initialised ResNet-18 (``seed``)
    for ``in_channels`` whose batch-norm statistics are re-estimated on ``calibration_images`` (the real images).
    """
    if path is not None and Path(path).is_file():
        state = extract_encoder_state(read_export(path)[0])
        backbone, channels = _arch_from_state(state)
        encoder = ResNetEncoder2D(backbone, channels)
        encoder.load_state_dict(state)
        info = {"encoder": "pretrained", "path": str(Path(path).resolve()), "backbone": backbone,
                "in_channels": channels}
        side = Path(path).with_suffix(".json")
        if side.is_file():
            try:
                info["export_info"] = json.loads(side.read_text())
            except json.JSONDecodeError:
                pass
        return encoder.to(device).eval(), info
    if path is not None and strict:
        raise FileNotFoundError(f"feature encoder not found: {path}")
    if path is not None:
        logger.warning("feature encoder %s not found: using the fallback, %s", path, FALLBACK_ENCODER.format(seed=seed))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = ResNetEncoder2D("resnet18", in_channels)
    encoder = encoder.to(device)
    if calibration_images is not None:
        _calibrate_bn(encoder, calibration_images)
    info = {"encoder": "random", "description": FALLBACK_ENCODER.format(seed=seed), "backbone": "resnet18",
            "in_channels": in_channels, "seed": seed, "bn_calibrated": calibration_images is not None,
            "requested_path": str(path) if path is not None else None}
    return encoder.eval(), info


@torch.no_grad()
def extract_image_features(encoder: torch.nn.Module, images: torch.Tensor, batch_size: int = 64,
                           feature_size: int | None = None) -> torch.Tensor:
    """Pooled encoder features ``(N, D)`` float64 (not normalised) of ``images`` ``(N, C, H, W)`` in [0, 1];
    channels are adapted to the encoder (grey repeated to RGB, RGB to luminance), and images resized to
    ``feature_size`` first when given."""
    device = next(encoder.parameters()).device
    want = getattr(encoder, "in_channels", images.shape[1])
    out = []
    for s in range(0, len(images), batch_size):
        x = images[s : s + batch_size].float().to(device)
        if x.shape[1] != want:
            if want == 3 and x.shape[1] == 1:
                x = x.expand(-1, 3, -1, -1)
            elif want == 1 and x.shape[1] == 3:
                x = (x * torch.tensor([0.299, 0.587, 0.114], device=device).view(1, 3, 1, 1)).sum(1, keepdim=True)
            else:
                raise ValueError(f"cannot feed {x.shape[1]}-channel images to a {want}-channel encoder")
        if feature_size and tuple(x.shape[2:]) != (feature_size, feature_size):
            x = F.interpolate(x, size=(feature_size, feature_size), mode="bilinear", align_corners=False,
                              antialias=True)
        feats = encoder(x)
        feats = feats[1] if isinstance(feats, tuple) else feats
        out.append(feats.double().cpu())
    return torch.cat(out)
