"""Initialise a downstream network's encoder (random, a DCL-CsTP export, any compatible checkpoint) and freeze it."""

from __future__ import annotations

import logging
import os

from torch import nn

from .resnet_encoder import scriptable_shortcuts
from .weights import load_encoder

__all__ = ["init_encoder"]

logger = logging.getLogger(__name__)


def init_encoder(
    network: nn.Module, pretrained_encoder: str | os.PathLike | None = None, freeze_encoder: bool = False
) -> nn.Module:
    """Load ``pretrained_encoder`` (None or "" keeps the random init) into ``network.encoder`` and optionally freeze it.

    Works for :class:`~dcl_cstp_ext.networks.ResNetClassifier` and MONAI ``FlexibleUNet`` (both hold ``.encoder``).
    The checkpoint may be the dcl_pretrain export (``models/encoder.pt``), a whole pre-training checkpoint or a
    downstream checkpoint; GPU-saved weights load on a CPU. Freezing sets ``requires_grad=False`` on the encoder's
    parameters (the optimiser then skips them) and keeps its BatchNorm statistics fixed (the encoder always runs in eval mode).
    MONAI's ResNet-18/34 'A' shortcuts (``torch.cat([out.data, zeros])``, which cuts the gradient of the identity
    path at the first block of layers 2-4) are replaced by the equivalent :class:`ZeroPadShortcut`, as in the
    pre-training encoder, so the fine-tuned encoder trains as it was pre-trained. Returns ``network``.
    """
    if not hasattr(network, "encoder"):
        raise AttributeError(f"{type(network).__name__} has no .encoder to initialise")
    scriptable_shortcuts(network)
    if pretrained_encoder:
        load_encoder(network, pretrained_encoder)
        logger.info("encoder initialised from %s", pretrained_encoder)
    else:
        logger.info("encoder randomly initialised")
    if freeze_encoder:
        for p in network.encoder.parameters():
            p.requires_grad_(False)
        network.encoder.register_forward_pre_hook(_keep_eval)
        logger.info("encoder frozen (weights and BatchNorm statistics)")
    return network


def _keep_eval(module: nn.Module, _inputs) -> None:
    """Forward pre-hook of a frozen encoder: BatchNorm layers stay in eval mode even when the network trains."""
    if module.training:
        module.eval()
