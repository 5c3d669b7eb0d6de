"""Downstream image classification (COVID-19 Radiography 4 classes, pediatric chest X-ray 2 or 3 classes): what
the ``pneumonia_cls`` bundle needs beyond MONAI.

* losses: :class:`OneHotBCEWithLogitsLoss` (the paper's BCE on one-hot targets), cross-entropy, and the factory
  :func:`build_classification_loss`;
* probabilities: :func:`class_probabilities` / :class:`ClassProbabilitiesd` (softmax for a CE-trained model,
  sigmoid normalised to sum 1 for a BCE-trained one), :class:`ToChannelsd`;
* the light fine-tuning augmentation, :func:`classification_augmentation`;
* metrics from a confusion matrix: :func:`confusion_matrix`, :func:`accuracy`, :func:`per_class_recall`,
  :func:`per_class_precision`, :func:`macro_recall`, :func:`macro_precision`, :func:`roc_auc_ovr`, all of them
  in :func:`classification_metrics`; the picture :func:`plot_confusion_matrix`;
* engine plumbing: :func:`stacked_output` (ignite metrics on decollated outputs), :class:`ClassifierInfo` (class
  names and model settings stored in ``model.pt``), :func:`read_classifier_info`, :class:`BestMetricState`,
  :class:`ValidationLog`;
* outputs: :class:`ClassificationReport` (``predictions.csv``; with labels also ``metrics.json`` and the confusion
  matrix PNG), :func:`inference_datalist`.

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

import csv
import json
import logging
import math
import os
from collections.abc import Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from monai.config import KeysCollection
from monai.data import decollate_batch
from monai.transforms import Compose, EnsureTyped, MapTransform, RandFlipd, RandRotated
from torch import nn

from ..data import DataError, inference_items, make_cached_dataset
from ..engines.handlers import is_main_process
from ..engines.seeded_data import SeededAugmentDataset
from ..transforms import ClipIntensityd, RandColorJitterd, RandResizedCropd
from .handlers import BestMetricState, ValidationLog, json_clean  # noqa: F401  (config targets)

__all__ = [
    "ACTIVATIONS",
    "LOSSES",
    "BestMetricState",
    "ClassProbabilitiesd",
    "ClassificationReport",
    "ClassifierInfo",
    "OneHotBCEWithLogitsLoss",
    "ToChannelsd",
    "ValidationLog",
    "accuracy",
    "build_classification_loss",
    "channel_def_names",
    "class_names_of",
    "class_probabilities",
    "classification_augmentation",
    "classification_metrics",
    "confusion_matrix",
    "inference_datalist",
    "macro_precision",
    "macro_recall",
    "per_class_precision",
    "per_class_recall",
    "plot_confusion_matrix",
    "read_classifier_info",
    "roc_auc_ovr",
    "seeded_cached_dataset",
    "stacked_output",
]

logger = logging.getLogger(__name__)

LOSSES = ("bce", "ce")
ACTIVATIONS = ("sigmoid", "softmax")


# --------------------------------------------------------------------------------------------------- losses
class OneHotBCEWithLogitsLoss(nn.Module):
    """Binary cross-entropy on one-hot targets (the paper's "multi-label" classification loss).

    ``loss = mean_{b,c} BCE(sigmoid(logits[b, c]), onehot(target)[b, c])``, with optional label smoothing
    (``onehot * (1 - s) + s / C``).

    Args:
        num_classes: ``C``.
        label_smoothing: ``s`` in [0, 1).

    Shapes: ``logits`` (B, C); ``target`` (B,) or (B, 1) class indices, or (B, C) one-hot / soft targets.
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


# --------------------------------------------------------------------------------------------------- probabilities
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


class ToChannelsd(MapTransform):
    """(C, H, W) tensors under ``keys`` to ``channels`` channels: grey -> RGB by repetition, RGB -> grey by luma.

    The bundle caches grey images (a third of the memory) and repeats the channel after augmentation."""

    _LUMA = (0.299, 0.587, 0.114)

    def __init__(self, keys: KeysCollection = "image", channels: int = 3, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.channels = channels

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            c = x.shape[0]
            if c == self.channels:
                continue
            if c == 1 and self.channels == 3:
                d[key] = x.repeat(3, 1, 1)
            elif c == 3 and self.channels == 1:
                w = torch.tensor(self._LUMA, dtype=x.dtype, device=x.device).view(3, 1, 1)
                d[key] = (x * w).sum(dim=0, keepdim=True)
            else:
                raise ValueError(f"cannot convert {c} channel(s) to {self.channels}")
        return d


# --------------------------------------------------------------------------------------------------- augmentation
def classification_augmentation(
    image_size: int | Sequence[int],
    channels: int = 3,
    scale: Sequence[float] = (0.7, 1.0),
    ratio: Sequence[float] = (0.8, 1.25),
    rotate_degrees: float = 10.0,
    rotate_prob: float = 0.5,
    brightness: float = 0.2,
    contrast: float = 0.2,
    jitter_prob: float = 0.8,
    flip_prob: float = 0.0,
    image_key: str = "image",
) -> Compose:
    """Light fine-tuning augmentation of an image (C, H, W) in [0, 1].

    Random resized crop (area fraction ``scale``, aspect ``ratio``) to ``image_size``, rotation by up to
    ``rotate_degrees`` (zero padding) with probability ``rotate_prob``, brightness/contrast jitter with
    probability ``jitter_prob`` (never colour), horizontal flip with probability ``flip_prob`` (0 by default: a
    chest X-ray has a left and a right: the heart is on the left), clip to [0, 1], then ``channels`` channels
    (:class:`ToChannelsd`). Output: a plain float32 tensor (no meta data).
    """
    xforms: list = [RandResizedCropd(image_key, image_size, scale=scale, ratio=ratio)]
    if rotate_degrees > 0 and rotate_prob > 0:
        rad = math.radians(rotate_degrees)
        xforms.append(RandRotated(image_key, range_x=(-rad, rad), prob=rotate_prob, keep_size=True,
                                  padding_mode="zeros"))
    if jitter_prob > 0 and (brightness > 0 or contrast > 0):
        xforms.append(RandColorJitterd(image_key, brightness=brightness, contrast=contrast, saturation=0.0, hue=0.0,
                                       prob=jitter_prob))
    if flip_prob > 0:
        xforms.append(RandFlipd(image_key, prob=flip_prob, spatial_axis=1))
    xforms += [
        ClipIntensityd(image_key, 0.0, 1.0),
        EnsureTyped(image_key, data_type="tensor", dtype=torch.float32, track_meta=False),
        ToChannelsd(image_key, channels),
    ]
    return Compose(xforms)


def seeded_cached_dataset(
    data: Sequence[Mapping[str, Any]],
    transform: Any,
    augment: Any,
    num_workers: int | None = None,
    cache_dir: str | None = None,
) -> SeededAugmentDataset:
    """The training set: ``transform`` (deterministic: decode, resize) cached once by
    :func:`~dcl_cstp_ext.data.make_cached_dataset`, then ``augment`` re-seeded per item by the
    :class:`~dcl_cstp_ext.engines.EpochSeededSampler` (exact resume). One config component with the model zoo's
    ``data`` / ``transform`` arguments, so that ``train#dataset#data`` can be overridden (MONAI Label)."""
    return SeededAugmentDataset(make_cached_dataset(data, transform, cache_dir=cache_dir, num_workers=num_workers),
                                augment)


# --------------------------------------------------------------------------------------------------- metrics
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


def plot_confusion_matrix(cm: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Save the confusion matrix as a PNG (matplotlib's Agg canvas, no display needed): counts in the cells,
    colour = fraction of the true class (row-normalised)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cm = np.asarray(cm)
    n = cm.shape[0]
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
    size = 1.6 + 0.9 * n
    fig = Figure(figsize=(size + 1.2, size))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(frac, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    ax.set_xticks(range(n), labels=list(class_names), rotation=30, ha="right")
    ax.set_yticks(range(n), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{cm[i, j]}\n{frac[i, j]:.0%}", ha="center", va="center", fontsize=8,
                    color="white" if frac[i, j] > 0.5 else "black")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path


# --------------------------------------------------------------------------------------------------- engines
def _items(output: Any) -> list[dict]:
    """The per-image dicts of an engine iteration output (decollated or not)."""
    if isinstance(output, dict):
        return decollate_batch(output, detach=True)
    return list(output)


def _label_index(label: Any) -> int | None:
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
        items = _items(output)
        probs = torch.stack([torch.as_tensor(it[prob_key]).reshape(-1).float() for it in items])
        labels = torch.tensor([_label_index(it[label_key]) for it in items], dtype=torch.long, device=probs.device)
        return probs, labels

    return _transform


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


def channel_def_names(channel_def: Mapping[str, str]) -> list[str]:
    """Class names in channel order from a metadata ``channel_def`` (``{"0": "COVID", ...}``)."""
    return [str(channel_def[k]) for k in sorted(channel_def, key=int)]


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


def class_names_of(datalist: Mapping[str, Any]) -> list[str]:
    """The class names of a labelled classification datalist (``build_datalist(...)["class_names"]``)."""
    names = datalist.get("class_names")
    if not names:
        raise DataError("the data set is not a labelled classification set (its datalist has no class_names); "
                        "expected the COVID-19 Radiography or pediatric chest X-ray layout")
    return list(names)


def _filename(item: Mapping, batch_item: Mapping | None, image_key: str, default: str) -> str:
    for source in (item, batch_item or {}):
        meta = getattr(source.get(image_key), "meta", None) or {}
        name = meta.get("filename_or_obj")
        if name is not None:
            return str(name[0] if isinstance(name, (list, tuple)) else name)
    return default


class ClassificationReport:
    """Per-image predictions of a MONAI ``SupervisedEvaluator`` whose postprocessing yields class probabilities
    under ``prob_key`` (see :class:`ClassProbabilitiesd`), written at the end of the run into ``output_dir``:

    * ``predictions.csv``: ``file``, (with labels: ``label``, ``true_class``,) ``pred``, ``pred_class`` and one
      ``prob_<class>`` column per class; one row per image, in the order of the data;
    * with labels and ``metrics_name``: ``metrics.json`` (:func:`classification_metrics` plus ``split``,
      ``checkpoint`` and the policy for undefined values) and ``confusion_matrix.png``; the summary values also
      land in ``engine.state.metrics`` as ``report_<name>``.

    Single process (the evaluate and inference workflows are not distributed).
    """

    def __init__(
        self,
        output_dir: str,
        class_names: Sequence[str],
        csv_name: str = "predictions.csv",
        metrics_name: str | None = "metrics.json",
        confusion_name: str | None = "confusion_matrix.png",
        split: str | None = None,
        extra: Mapping[str, Any] | None = None,
        prob_key: str = "pred",
        label_key: str = "label",
        image_key: str = "image",
    ) -> None:
        self.output_dir = Path(output_dir)
        self.class_names = [str(c) for c in class_names]
        self.csv_name, self.metrics_name, self.confusion_name = csv_name, metrics_name, confusion_name
        self.split = split
        self.extra = dict(extra or {})
        self.keys = (prob_key, label_key, image_key)
        self.files: list[str] = []
        self.probs: list[np.ndarray] = []
        self.labels: list[int | None] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def _reset(self, engine: Engine | None = None) -> None:
        self.files, self.probs, self.labels = [], [], []

    def _collect(self, engine: Engine) -> None:
        pk, lk, ik = self.keys
        items = _items(engine.state.output)
        batch = engine.state.batch
        batch_items = _items(batch) if isinstance(batch, (dict, list)) else [None] * len(items)
        for item, b in zip(items, batch_items):
            prob = torch.as_tensor(item[pk]).detach().float().cpu().reshape(-1).numpy()
            if prob.shape[0] != len(self.class_names):
                raise ValueError(f"{prob.shape[0]} probabilities for {len(self.class_names)} class names")
            self.probs.append(prob)
            self.labels.append(_label_index(item.get(lk)))
            self.files.append(_filename(item, b, ik, f"#{len(self.files)}"))

    def write(self, engine: Engine | None = None) -> dict[str, Any] | None:
        if not is_main_process():
            return None
        self.output_dir.mkdir(parents=True, exist_ok=True)
        names = self.class_names
        probs = np.stack(self.probs) if self.probs else np.zeros((0, len(names)))
        preds = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
        labelled = bool(self.labels) and all(lab is not None for lab in self.labels)
        fields = ["file", *(["label", "true_class"] if labelled else []), "pred", "pred_class",
                  *[f"prob_{n}" for n in names]]
        with open(self.output_dir / self.csv_name, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(fields)
            for i, f in enumerate(self.files):
                truth = [self.labels[i], names[self.labels[i]]] if labelled else []
                writer.writerow([f, *truth, int(preds[i]), names[preds[i]], *[f"{p:.6f}" for p in probs[i]]])
        logger.info("wrote %d predictions to %s", len(self.files), self.output_dir / self.csv_name)
        if not (labelled and self.metrics_name):
            return None
        report = classification_metrics(self.labels, preds, probs, names)
        report = {"split": self.split, **self.extra, **report,
                  "undefined_values": "null: recall of a class absent from the split, precision of a class neither "
                                      "present nor predicted, ROC AUC of a class without positives or negatives; "
                                      "macro values average the defined ones"}
        (self.output_dir / self.metrics_name).write_text(json.dumps(json_clean(report), indent=2))
        if self.confusion_name:
            s = report["summary"]
            title = f"{self.split or ''} acc {s['accuracy']:.3f}, macro recall {s['macro_recall']:.3f}".strip()
            plot_confusion_matrix(np.asarray(report["confusion_matrix"]), names, self.output_dir / self.confusion_name,
                                  title)
        if engine is not None:
            engine.state.metrics.update({f"report_{k}": v for k, v in report["summary"].items()})
        s = report["summary"]
        logger.info("evaluated %d images (%s): accuracy %.4f, macro recall %.4f, macro precision %.4f, AUC %.4f -> %s",
                    s["num_images"], self.split, s["accuracy"], s["macro_recall"], s["macro_precision"],
                    s["roc_auc_macro_ovr"], self.output_dir / self.metrics_name)
        return report


def inference_datalist(source: str | Path | Iterable, split: str = "auto") -> list[dict]:
    """Items to classify (labels kept where the source has them): :func:`~dcl_cstp_ext.data.inference_items`."""
    return inference_items(source, split, keys=("image", "label"))
