"""Find, export and load encoder weights across checkpoints of this project and MONAI networks."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .export import read_export

__all__ = ["extract_encoder_state", "load_encoder", "ENCODER_PREFIXES"]

#: prefixes under which an encoder is found in the checkpoints this project writes or reads, tried in order
ENCODER_PREFIXES = ("encoder.", "online_encoder.", "model.encoder.", "network.encoder.", "module.encoder.", "")
_STEM_KEY = "conv1.weight"
_CONTAINER_KEYS = ("encoder", "state_dict", "model", "network", "net")


def _flatten_container(obj: object) -> Mapping[str, torch.Tensor]:
    """A checkpoint may be a state dict or a dict holding one (``{"encoder": sd}``, ``{"state_dict": sd}``...)."""
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if not isinstance(obj, Mapping):
        raise TypeError(f"cannot read a state dict from a {type(obj).__name__}")
    if any(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    for key in _CONTAINER_KEYS:
        if key in obj:
            return _flatten_container(obj[key])
    raise KeyError(f"no state dict found in checkpoint with keys {sorted(obj)[:10]}")


def extract_encoder_state(checkpoint: object) -> dict[str, torch.Tensor]:
    """Return the ResNet encoder's state dict (keys ``conv1.weight``, ``layer1...``) held by ``checkpoint``.

    Accepts an encoder export, a DCL-CsTP/MoCo/SimCLR/SimSiam checkpoint, a classifier, a FlexibleUNet, or a
    MONAI ``resnet50`` (whose ``fc`` is dropped), with or without a DDP ``module.`` prefix. Prefixes are removed
    with ``str.removeprefix`` (never ``lstrip``).
    """
    sd = _flatten_container(checkpoint)
    for prefix in ENCODER_PREFIXES:
        if prefix + _STEM_KEY in sd or ("module." + prefix + _STEM_KEY) in sd:
            full = prefix if prefix + _STEM_KEY in sd else "module." + prefix
            return {
                k.removeprefix(full): v
                for k, v in sd.items()
                if k.startswith(full) and not k.removeprefix(full).startswith("fc.")
                and k.removeprefix(full).split(".")[0] in {"conv1", "bn1", "layer1", "layer2", "layer3", "layer4"}
            }
    raise KeyError("no ResNet encoder (a key ending in 'conv1.weight') found in the checkpoint")


def load_encoder(target: nn.Module, checkpoint: str | os.PathLike | Mapping, strict: bool = True) -> nn.Module:
    """Load the encoder held by ``checkpoint`` (a path or a loaded object) into ``target``.

    ``target`` may be an encoder, or any model with an ``.encoder`` (ResNetClassifier, FlexibleUNet). Weights
    saved on a GPU load on a CPU (``map_location="cpu"``). Raises with the mismatching keys when the encoder
    does not fit (other backbone or channel count).
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(f"encoder checkpoint not found: {checkpoint}")
        checkpoint = read_export(checkpoint)[0]
    state = extract_encoder_state(checkpoint)
    module = getattr(target, "encoder", target)
    try:
        module.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        raise RuntimeError(f"encoder weights do not fit {type(module).__name__}: {err}") from err
    return target
