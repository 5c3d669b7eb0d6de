"""Classification metrics from a confusion matrix (rows true, columns predicted), for the reports and the
evaluation workflow: accuracy, per-class and macro recall / precision / F1, one-vs-rest ROC AUC.

Undefined values (reported as ``null`` in JSON, NaN in Python):

==========================================  ==========================================================
case                                        convention
==========================================  ==========================================================
class with no image in the split            recall NaN; precision 0 if it was predicted, else NaN
class never predicted but present           precision 0 (every image of it was missed)
class with no positives or no negatives     its one-vs-rest ROC AUC is NaN
macro averages                              mean over the classes whose value is defined (``nanmean``)
==========================================  ==========================================================

On a split where every class occurs (the case of the paper's tables), the macro values equal scikit-learn's
``recall_score`` / ``precision_score(average="macro", zero_division=0)`` and ``roc_auc_score(...,
multi_class="ovr", average="macro")``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

__all__ = [
    "accuracy",
    "classification_metrics",
    "confusion_matrix",
    "macro_precision",
    "macro_recall",
    "per_class_f1",
    "per_class_precision",
    "per_class_recall",
    "roc_auc_ovr",
]

def confusion_matrix(y_true: Iterable[int], y_pred: Iterable[int], num_classes: int) -> np.ndarray:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    t = np.asarray(list(y_true) if not isinstance(y_true, np.ndarray) else y_true, dtype=np.int64).reshape(-1)
    p = np.asarray(list(y_pred) if not isinstance(y_pred, np.ndarray) else y_pred, dtype=np.int64).reshape(-1)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred differ in length: {t.shape[0]} vs {p.shape[0]}")
    for name, v in (("y_true", t), ("y_pred", p)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"{name} holds a class index outside [0, {num_classes})")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def accuracy(cm: np.ndarray) -> float:
    """Fraction of correct predictions (trace / total); NaN for an empty matrix."""
    total = cm.sum()
    return float(np.trace(cm) / total) if total else float("nan")


def per_class_recall(cm: np.ndarray) -> np.ndarray:
    """TP / (TP + FN) per class (sensitivity); NaN for a class without images."""
    support = cm.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, np.diag(cm) / support, np.nan)


def per_class_precision(cm: np.ndarray) -> np.ndarray:
    """TP / (TP + FP) per class (positive predictive value); 0 for a class never predicted but present, NaN for a
    class neither present nor predicted."""
    predicted = cm.sum(axis=0).astype(np.float64)
    support = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = np.where(predicted > 0, np.diag(cm) / predicted, 0.0)
    return np.where((predicted == 0) & (support == 0), np.nan, prec)


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    return float(np.nanmean(x)) if np.isfinite(x).any() else float("nan")


def macro_recall(cm: np.ndarray) -> float:
    """Mean of :func:`per_class_recall` over the classes present."""
    return _nanmean(per_class_recall(cm))


def macro_precision(cm: np.ndarray) -> float:
    """Mean of :func:`per_class_precision` over the classes where it is defined."""
    return _nanmean(per_class_precision(cm))


def per_class_f1(cm: np.ndarray) -> np.ndarray:
    """Harmonic mean of recall and precision per class (0 when both are 0, NaN when either is undefined)."""
    r, p = per_class_recall(cm), per_class_precision(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(r + p > 0, 2 * r * p / (r + p), np.where(np.isnan(r + p), np.nan, 0.0))


def roc_auc_ovr(y_true: Iterable[int], probs: np.ndarray, num_classes: int | None = None) -> tuple[float, np.ndarray]:
    """One-vs-rest ROC AUC: ``(macro, per_class)``. Class ``c``'s AUC scores ``probs[:, c]`` against
    ``y_true == c``; NaN when the split has no positive or no negative of ``c``; the macro value is the mean of
    the defined ones (NaN if none)."""
    from sklearn.metrics import roc_auc_score

    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(list(y_true) if not isinstance(y_true, np.ndarray) else y_true, dtype=np.int64).reshape(-1)
    num_classes = num_classes or probs.shape[1]
    if probs.ndim != 2 or probs.shape != (y.shape[0], num_classes):
        raise ValueError(f"probs must be (N, {num_classes}) for N={y.shape[0]} labels, got {probs.shape}")
    per_class = np.full(num_classes, np.nan)
    for c in range(num_classes):
        pos = y == c
        if 0 < pos.sum() < y.shape[0]:
            per_class[c] = roc_auc_score(pos, probs[:, c])
    return _nanmean(per_class), per_class


def classification_metrics(
    y_true: Iterable[int],
    y_pred: Iterable[int],
    probs: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """Every metric of the bundle's report.

    Returns ``{"summary": {num_images, accuracy, macro_recall, macro_precision, macro_f1, roc_auc_macro_ovr},
    "per_class": {name: {support, predicted, recall, precision, f1, roc_auc}}, "class_names": [...],
    "confusion_matrix": [[...]] (rows true, columns predicted)}``; undefined values are NaN (see the module doc).
    """
    if num_classes is None:
        num_classes = len(class_names) if class_names is not None else (np.asarray(probs).shape[1] if probs is not None
                                                                          else None)
    if num_classes is None:
        raise ValueError("give num_classes, class_names or probs")
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    y_true = np.asarray(list(y_true) if not isinstance(y_true, np.ndarray) else y_true, dtype=np.int64)
    cm = confusion_matrix(y_true, y_pred, num_classes)
    rec, prec, f1 = per_class_recall(cm), per_class_precision(cm), per_class_f1(cm)
    auc_macro, auc = roc_auc_ovr(y_true, probs, num_classes) if probs is not None else (float("nan"),
                                                                                       np.full(num_classes, np.nan))
    summary = {
        "num_images": int(cm.sum()),
        "accuracy": accuracy(cm),
        "macro_recall": _nanmean(rec),
        "macro_precision": _nanmean(prec),
        "macro_f1": _nanmean(f1),
        "roc_auc_macro_ovr": auc_macro,
    }
    per_class = {
        name: {"support": int(cm[c].sum()), "predicted": int(cm[:, c].sum()), "recall": float(rec[c]),
               "precision": float(prec[c]), "f1": float(f1[c]), "roc_auc": float(auc[c])}
        for c, name in enumerate(names)
    }
    return {"summary": summary, "per_class": per_class, "class_names": names, "confusion_matrix": cm.tolist()}
