"""Classification losses of the fine-tuning: the paper's one-hot BCE and a cross-entropy that takes the same
targets; :func:`build_classification_loss` picks one by name (the bundle's ``loss`` key).

``OneHotBCE(z, y) = mean_{b,c} BCE(sigmoid(z[b, c]), onehot(y)[b, c])``, the one-hot target optionally smoothed
to ``onehot * (1 - s) + s / C``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LOSSES", "OneHotBCEWithLogitsLoss", "build_classification_loss"]

LOSSES = ("bce", "ce")


class OneHotBCEWithLogitsLoss(nn.Module):
    """Binary cross-entropy on one-hot targets (the paper's "multi-label" classification loss).

    ``loss = mean_{b,c} BCE(sigmoid(logits[b, c]), onehot(target)[b, c])``, with optional label smoothing
    (``onehot * (1 - s) + s / C``).

    Args:
        num_classes: ``C``.
        label_smoothing: ``s`` in [0, 1).

    Shapes: ``logits`` (B, C); ``target`` (B,) or (B, 1) class indices, or (B, C) one-hot / soft targets.

    Examples:
        >>> import torch
        >>> logits = torch.tensor([[0.0, 0.0]])  # (B=1, C=2): every sigmoid is 1/2
        >>> round(OneHotBCEWithLogitsLoss(2)(logits, torch.tensor([1])).item(), 4)  # -log(1/2)
        0.6931
    """

    def __init__(self, num_classes: int, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.num_classes = int(num_classes)
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if target.shape == logits.shape and target.is_floating_point():
            onehot = target
        else:
            onehot = F.one_hot(_as_index(target), self.num_classes).to(logits.dtype)
        if self.label_smoothing:
            onehot = onehot * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
        return F.binary_cross_entropy_with_logits(logits, onehot)


class _CrossEntropy(nn.CrossEntropyLoss):
    """``nn.CrossEntropyLoss`` that also takes (B, 1) index targets or (B, C) one-hot targets."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not (target.shape == logits.shape and target.is_floating_point()):
            target = _as_index(target)
        return super().forward(logits, target)


def _as_index(target: torch.Tensor) -> torch.Tensor:
    """(B,), (B, 1) or one-hot (B, C) targets -> (B,) int64 class indices."""
    target = torch.as_tensor(target)
    if target.ndim == 2 and target.shape[1] > 1:
        return target.argmax(dim=1)
    return target.reshape(-1).long()


def build_classification_loss(name: str = "bce", num_classes: int = 2, label_smoothing: float = 0.0) -> nn.Module:
    """``"bce"``: :class:`OneHotBCEWithLogitsLoss` (the paper's); ``"ce"``: cross-entropy. Both take logits (B, C)
    and class-index targets (B,)."""
    if name == "bce":
        return OneHotBCEWithLogitsLoss(num_classes, label_smoothing)
    if name == "ce":
        return _CrossEntropy(label_smoothing=label_smoothing)
    raise ValueError(f"unknown loss {name!r}: expected one of {LOSSES}")
