"""Frozen-encoder probes of feature quality, cross-validated over every labelled image, with paired statistics.

A probe on a small validation split is noisy (Kvasir-SEG: 176 queries, binomial SE 3.7 points), too noisy to tell
two encoders apart. Here every labelled image is a query once: ``folds`` stratified folds, each predicted from the
other folds, by a weighted k-NN vote (the pre-training monitor's, :func:`knn_predict`) and by a linear probe
(multinomial logistic regression on standardised features, scikit-learn's default ``C=1``, never tuned). Two encoders
probed on the same images and folds are compared image by image (:func:`paired_difference`).
"""

from __future__ import annotations

import numpy as np
import torch

from .knn_monitor import knn_predict

__all__ = ["probe_folds", "cross_validated_knn", "cross_validated_linear", "paired_difference"]


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


def paired_difference(correct_a: np.ndarray, correct_b: np.ndarray, n_boot: int = 10000, seed: int = 0,
                      level: float = 0.95) -> dict:
    """Accuracy of ``a`` minus that of ``b`` on the same items, in points, with a paired bootstrap interval
    (items resampled together) and an exact two-sided McNemar test on the discordant items."""
    from scipy.stats import binomtest

    a, b = np.asarray(correct_a, dtype=float), np.asarray(correct_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired difference needs the same items: {a.shape} vs {b.shape}")
    diff = a - b
    rng = np.random.default_rng(seed)
    boot = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(axis=1)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    a_only, b_only = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    p = binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
    return {"difference": 100 * float(diff.mean()), "low": 100 * float(lo), "high": 100 * float(hi),
            "level": level, "n": len(diff), "a_only": a_only, "b_only": b_only, "mcnemar_p": float(p)}
