"""Frozen-encoder probes of feature quality, cross-validated over every labelled image, with paired statistics.

A probe on a small validation split is noisy (Kvasir-SEG: 176 queries, binomial SE 3.7 points), too noisy to tell
two encoders apart. Here every labelled image is a query once: ``folds`` stratified folds, each predicted from the
other folds, by a weighted k-NN vote (the pre-training monitor's, :func:`knn_predict`) and by a linear probe
(multinomial logistic regression on standardised features, scikit-learn's default ``C=1``, never tuned). For
segmentation data a dense linear probe asks what a U-Net needs, where each pixel is: a logistic regression from the
frozen stage maps (C3-C5, upsampled to the C3 grid) to the mask, scored by per-image Dice
(:func:`cross_validated_dense_linear`). Two encoders probed on the same images and folds are compared image by image
(:func:`paired_difference`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..networks.utils import eval_mode
from .knn_monitor import knn_predict

__all__ = ["probe_folds", "cross_validated_knn", "cross_validated_linear", "dense_features",
           "cross_validated_dense_linear", "paired_difference"]


def probe_folds(labels: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold id ``(N,)`` in ``[0, folds)`` of each item, stratified by label and drawn by ``seed``."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    fold = np.empty(len(labels), dtype=int)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for i, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        fold[test] = i
    return fold


def cross_validated_knn(features: np.ndarray, labels: np.ndarray, fold: np.ndarray, num_classes: int, k: int = 20,
                        temperature: float = 0.07) -> np.ndarray:
    """Whether each item ``(N,)`` is classified right by a k-NN vote of the items of the other folds.

    ``features (N, D)`` L2-normalised, ``labels (N,)`` in ``[0, num_classes)``, ``fold (N,)`` from :func:`probe_folds`.
    """
    feats, labs = torch.as_tensor(features, dtype=torch.float32), torch.as_tensor(labels).long()
    correct = np.zeros(len(labels), dtype=bool)
    for f in np.unique(fold):
        q, b = torch.as_tensor(fold == f), torch.as_tensor(fold != f)
        pred = knn_predict(feats[q], feats[b], labs[b], num_classes, k=k, temperature=temperature)
        correct[q.numpy()] = (pred == labs[q]).numpy()
    return correct


def cross_validated_linear(features: np.ndarray, labels: np.ndarray, fold: np.ndarray, C: float = 1.0,
                           max_iter: int = 2000) -> np.ndarray:
    """Whether each item ``(N,)`` is classified right by a logistic regression fitted on the other folds
    (features standardised with the training folds' mean and standard deviation)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = np.asarray(features, dtype=np.float64), np.asarray(labels)
    correct = np.zeros(len(labels), dtype=bool)
    for f in np.unique(fold):
        train, test = fold != f, fold == f
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
        clf.fit(features[train], labels[train])
        correct[test] = clf.predict(features[test]) == labels[test]
    return correct


@torch.no_grad()
def dense_features(encoder: torch.nn.Module, loader, stages: tuple[int, ...] = (2, 3, 4), device="cpu",
                   image_key: str = "image", label_key: str = "label") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One frozen forward pass per batch gives: stage maps on one grid, ``(N, D, h, w)`` float32 (``stages`` of the
    encoder's five maps, 2-4 = C3-C5 at strides 8-32, bilinearly upsampled to the first one's ``h x w`` and
    concatenated in that order: D = 896 for ResNet-18); masks ``(N, h, w)`` bool (foreground where at least half of
    the cell is); and the L2-normalised pooled features ``(N, C)`` of the global probes."""

    feats, masks, pooled = [], [], []
    with eval_mode(encoder):
        for batch in loader:
            maps, pool = encoder(torch.as_tensor(batch[image_key]).to(device))
            pooled.append(F.normalize(pool.float(), dim=1).cpu())
            size = maps[stages[0]].shape[-2:]
            feats.append(torch.cat([F.interpolate(maps[s].float(), size=size, mode="bilinear", align_corners=False)
                                    if maps[s].shape[-2:] != size else maps[s].float() for s in stages], 1).cpu())
            masks.append(F.adaptive_avg_pool2d(torch.as_tensor(batch[label_key]).float(), size)[:, 0] >= 0.5)
    return torch.cat(feats).numpy(), torch.cat(masks).numpy(), torch.cat(pooled).numpy()


def cross_validated_dense_linear(features: np.ndarray, masks: np.ndarray, fold: np.ndarray,
                                 pixels_per_image: int = 32, seed: int = 0, C: float = 1.0,
                                 max_iter: int = 2000) -> np.ndarray:
    """Per-image Dice ``(N,)`` of a pixel-wise logistic regression fitted on the other folds' images.

    ``features (N, D, h, w)`` and ``masks (N, h, w)`` from :func:`dense_features`. Training pixels: a seeded uniform
    sample of ``pixels_per_image`` cells of each training image (the class balance of the data, so the fitted
    threshold is the natural one); every cell of a held-out image is predicted. Dice of an image whose mask and
    prediction are both empty is 1.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n, d, h, w = features.shape
    pixels = np.ascontiguousarray(features.transpose(0, 2, 3, 1)).reshape(n, h * w, d)
    targets = masks.reshape(n, h * w)
    rng = np.random.default_rng(seed)
    picks = np.stack([rng.choice(h * w, size=min(pixels_per_image, h * w), replace=False) for _ in range(n)])
    dice = np.zeros(n)
    for f in np.unique(fold):
        train, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        x = pixels[train[:, None], picks[train]].reshape(-1, d)
        y = targets[train[:, None], picks[train]].reshape(-1)
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
        clf.fit(x.astype(np.float64), y)
        pred = clf.predict(pixels[test].reshape(-1, d).astype(np.float64)).reshape(len(test), h * w).astype(bool)
        truth = targets[test]
        inter, total = (pred & truth).sum(1), pred.sum(1) + truth.sum(1)
        dice[test] = np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)
    return dice


def paired_difference(correct_a: np.ndarray, correct_b: np.ndarray, n_boot: int = 10000, seed: int = 0,
                      level: float = 0.95) -> dict:
    """Mean of ``a`` minus mean of ``b`` on the same items, in points (x100), with a paired bootstrap interval (items
    resampled together) and a paired test: for right/wrong outcomes (0/1) the exact two-sided McNemar test on the
    discordant items (``a_only``, ``b_only``); for scores such as per-image Dice, the Wilcoxon signed-rank test."""
    from scipy.stats import binomtest, wilcoxon

    a, b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired difference needs the same items: {a.shape} vs {b.shape}")
    diff = a - b
    rng = np.random.default_rng(seed)
    boot = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(axis=1)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    out = {"difference": 100 * float(diff.mean()), "low": 100 * float(lo), "high": 100 * float(hi), "level": level,
           "n": len(diff)}
    if np.isin(a, (0, 1)).all() and np.isin(b, (0, 1)).all():
        a_only, b_only = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
        p = binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
        return {**out, "a_only": a_only, "b_only": b_only, "mcnemar_p": float(p)}
    p = wilcoxon(a, b).pvalue if np.any(diff != 0) else 1.0
    return {**out, "wilcoxon_p": float(p)}
