"""What a classifier checkpoint says about itself (class names, activation, backbone, channels, image size),
stored beside its weights in ``model.pt`` and read back by the inference workflow."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["ClassifierInfo", "read_classifier_info"]

logger = logging.getLogger(__name__)


class ClassifierInfo:
    """What a classifier checkpoint must say about itself, stored next to the weights in ``model.pt``
    (``CheckpointSaver(save_dict={"model": net, "info": ClassifierInfo(...)})``): class names, the activation
    that turns its logits into probabilities, backbone, input channels and image size. ``inference.json`` reads
    it back with :func:`read_classifier_info`, so a model trained on 3 pediatric classes at 128 px infers as such.
    """

    def __init__(self, class_names: Sequence[str], activation: str = "sigmoid", **settings: Any) -> None:
        self.info = {"class_names": [str(c) for c in class_names], "activation": activation, **settings}

    def state_dict(self) -> dict:
        return dict(self.info)

    def load_state_dict(self, state: Mapping) -> None:
        self.info = dict(state)


def read_classifier_info(ckpt_path: str | os.PathLike | None, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` updated with the :class:`ClassifierInfo` saved in the checkpoint at ``ckpt_path`` (under
    ``"info"``), when the file exists and holds one. GPU-saved files load on a CPU."""
    out = dict(defaults)
    if ckpt_path and Path(ckpt_path).is_file():
        try:
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # not a zip-format file: no mmap
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        info = ckpt.get("info") if isinstance(ckpt, Mapping) else None
        if isinstance(info, Mapping):
            out.update(info)
        else:
            logger.warning("%s holds no classifier info; using the defaults (%s)", ckpt_path, sorted(defaults))
    return out
