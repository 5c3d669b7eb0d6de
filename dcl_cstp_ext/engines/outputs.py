"""What a MONAI engine's iteration output holds, per image: the decollated items, the source file of an image,
a label as a class index, and the ``(probs, labels)`` pair that ignite's metrics take."""

from __future__ import annotations

from typing import Any

import torch
from monai.data import decollate_batch

__all__ = ["label_index", "per_image_items", "source_filename", "stacked_output"]


def per_image_items(output: Any) -> list[dict]:
    """The per-image dicts of an engine iteration output, decollated (and detached) if it is a batch dict."""
    if isinstance(output, dict):
        return decollate_batch(output, detach=True)
    return list(output)


def source_filename(*tensors: Any, default: str = "") -> str:
    """The ``filename_or_obj`` of the first of ``tensors`` whose meta data has one, else ``default``."""
    for x in tensors:
        name = (getattr(x, "meta", None) or {}).get("filename_or_obj")
        if name is not None:
            return str(name[0] if isinstance(name, (list, tuple)) else name)
    return default


def label_index(label: Any) -> int | None:
    """A per-image label (scalar index, (1,) or one-hot (C,)) -> class index; None when absent."""
    if label is None:
        return None
    t = torch.as_tensor(label)
    if t.numel() == 0:
        return None
    return int(t.argmax()) if t.numel() > 1 else int(t.reshape(-1)[0])


def stacked_output(prob_key: str = "pred", label_key: str = "label"):
    """``output_transform`` for ignite's ``Accuracy`` / ``Recall`` / ``Precision`` on a MONAI evaluator whose output
    is decollated: ``(probs (B, C) float, labels (B,) int64)``, labels given as indices or one-hot."""

    def _transform(output: Any) -> tuple[torch.Tensor, torch.Tensor]:
        items = per_image_items(output)
        probs = torch.stack([torch.as_tensor(it[prob_key]).reshape(-1).float() for it in items])
        labels = torch.tensor([label_index(it[label_key]) for it in items], dtype=torch.long, device=probs.device)
        return probs, labels

    return _transform
