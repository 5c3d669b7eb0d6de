"""What a classifier checkpoint says about itself (class names, activation, backbone, channels, image size),
stored beside its weights in ``model.pt`` and read back by the inference workflow."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .export import ExportMeta, read_export_meta

__all__ = ["ClassifierInfo", "read_classifier_info"]

logger = logging.getLogger(__name__)


class ClassifierInfo(ExportMeta):
    """What a classifier checkpoint must say about itself, its ``meta`` in ``model.pt`` (the project's export
    format, :mod:`~dcl_cstp_ext.networks.export`; ``CheckpointSaver(save_dict={"model": net, "meta":
    ClassifierInfo(...)})``): class names, the activation that turns its logits into probabilities, backbone, input
    channels and image size. ``inference.json`` reads it back with :func:`read_classifier_info`, so a model trained
    on 3 pediatric classes at 128 px infers as such.
    """

    def __init__(self, class_names: Sequence[str], activation: str = "sigmoid", **settings: Any) -> None:
        super().__init__(class_names=[str(c) for c in class_names], activation=activation, **settings)


def read_classifier_info(ckpt_path: str | os.PathLike | None, defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` updated with the :class:`ClassifierInfo` saved in the checkpoint at ``ckpt_path`` (its
    ``meta``; ``info`` in earlier files), when the file exists and holds one. GPU-saved files load on a CPU."""
    out = dict(defaults)
    if ckpt_path and Path(ckpt_path).is_file():
        info = read_export_meta(ckpt_path)
        if "class_names" in info:
            out.update(info)
        else:
            logger.warning("%s holds no classifier info; using the defaults (%s)", ckpt_path, sorted(defaults))
    return out
