"""Class probabilities from logits: softmax for a cross-entropy-trained classifier, per-class sigmoids normalised
to sum 1 for a one-hot-BCE-trained one (either way the arg-max is the logits')."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["ACTIVATIONS", "ClassProbabilitiesd", "class_probabilities"]

ACTIVATIONS = ("sigmoid", "softmax")


def class_probabilities(logits: torch.Tensor, activation: str = "sigmoid", dim: int = -1) -> torch.Tensor:
    """Class probabilities summing to 1 along ``dim``.

    ``"softmax"`` for a model trained with cross-entropy; ``"sigmoid"`` for one trained with one-hot BCE: the
    per-class sigmoids (each an independent "is it this class" probability) normalised to sum 1. Either way the
    arg-max is the arg-max of the logits.
    """
    logits = logits.float()
    if activation == "softmax":
        return torch.softmax(logits, dim=dim)
    if activation == "sigmoid":
        p = torch.sigmoid(logits)
        return p / p.sum(dim=dim, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)
    raise ValueError(f"unknown activation {activation!r}: expected one of {ACTIVATIONS}")


class ClassProbabilitiesd(MapTransform):
    """Replace the logits under ``keys`` by :func:`class_probabilities` (last dimension: the classes)."""

    def __init__(self, keys: KeysCollection = "pred", activation: str = "sigmoid", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: expected one of {ACTIVATIONS}")
        self.activation = activation

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            x = x.as_tensor() if hasattr(x, "as_tensor") else torch.as_tensor(x)
            d[key] = class_probabilities(x, self.activation)
        return d
