"""Quality measures of synthetic images: Frechet distance, k-NN precision/recall, realism, MS-SSIM, memorisation."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from dcl_cstp_ext.generative import (
    frechet_distance,
    frechet_distance_from_features,
    knn_precision_recall,
    memorisation,
    ms_ssim_diversity,
    realism_scores,
    select_samples,
)
from dcl_cstp_ext.generative.quality import ms_ssim_settings


def test_frechet_distance_of_identical_sets_is_zero():
    f = np.random.default_rng(0).normal(size=(300, 16))
    assert frechet_distance_from_features(f, f) == pytest.approx(0.0, abs=1e-8)
    # N < D: singular covariances
    g = np.random.default_rng(1).normal(size=(20, 64))
    assert frechet_distance_from_features(g, g) == pytest.approx(0.0, abs=1e-6)


def test_frechet_distance_matches_the_closed_form():
    rng = np.random.default_rng(0)
    d = 6
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    a, b = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = a @ a.T + 0.1 * np.eye(d), b @ b.T + 0.1 * np.eye(d)
    expected = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-6)
    # shifted isotropic Gaussians: ||delta||^2; scaled ones: d (sigma1 - sigma2)^2
    delta = np.arange(d) / 3
    assert frechet_distance(mu1, np.eye(d), mu1 + delta, np.eye(d)) == pytest.approx((delta**2).sum(), rel=1e-9)
    assert frechet_distance(mu1, np.eye(d), mu1, 4 * np.eye(d)) == pytest.approx(d * (1 - 2) ** 2, rel=1e-9)
    # and from samples of shifted Gaussians, up to sampling error
    x = rng.normal(size=(20000, 4))
    y = rng.normal(size=(20000, 4)) + np.array([1.0, 0.0, -1.0, 2.0])
    assert frechet_distance_from_features(x, y) == pytest.approx(6.0, rel=0.03)


def test_knn_precision_recall_and_realism():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 8))
    same = knn_precision_recall(real, real.copy(), k=3)
    assert same["precision"] == 1.0 and same["recall"] == 1.0
    far = knn_precision_recall(real, real + 100.0, k=3)
    assert far["precision"] == 0.0 and far["recall"] == 0.0
    # fakes from one side of the real distribution (mode dropping): precise, with low recall
    plane = rng.normal(size=(1000, 2))
    side = plane[plane[:, 0] > 0.5] + rng.normal(scale=0.01, size=(int((plane[:, 0] > 0.5).sum()), 2))
    pr = knn_precision_recall(plane, side, k=3)
    assert pr["precision"] > 0.95 and pr["recall"] < 0.45
    fresh = rng.normal(size=(200, 8))
    r = realism_scores(real, np.vstack([fresh, fresh[:5] + 100.0]), k=3)
    assert (r[:200] >= 1).double().mean() > 0.3  # many new samples of the real distribution lie inside its core
    assert (r[200:] < 0.1).all() and r[:200].min() > r[200:].max()


def test_memorisation_ratio_is_zero_for_copies_and_near_one_for_new_samples():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(300, 5))
    new = rng.normal(size=(100, 5))
    m = memorisation(np.vstack([real[:3], new]), real)
    assert torch.all(m["ratio"][:3] < 1e-6) and m["index"][:3].tolist() == [0, 1, 2]
    assert 0.5 < float(m["ratio"][3:].median()) < 1.5
    assert float(m["real_ratio"].median()) == pytest.approx(1.0)


def test_ms_ssim_diversity_and_its_settings_for_small_images():
    x = torch.rand(6, 3, 32, 32)
    same = ms_ssim_diversity(x[:1].repeat(4, 1, 1, 1), num_pairs=8)
    assert same["ms_ssim"] == pytest.approx(1.0, abs=1e-4)
    assert ms_ssim_diversity(x, num_pairs=8)["ms_ssim"] < 0.2
    assert ms_ssim_settings(256) == (11, pytest.approx((0.0448, 0.2856, 0.3001, 0.2363, 0.1333), rel=1e-3))
    k, w = ms_ssim_settings(32)
    assert k <= 7 and len(w) >= 2 and sum(w) == pytest.approx(1.0)


def test_selection_respects_keep_fraction_and_drops_flagged_samples():
    realism = np.array([5.0, 4.0, 3.0, 2.0, 1.0, 0.5, 6.0, 7.0])
    outlier = np.array([0, 0, 0, 0, 0, 0, 1, 0], bool)
    copy = np.array([0, 0, 0, 0, 0, 0, 0, 1], bool)
    keep, reasons = select_samples(realism, outlier, copy, keep_fraction=0.5, selection="realism")
    assert keep.tolist() == [True, True, True, True, False, False, False, False]
    assert reasons[6] == "outlier" and reasons[7] == "near_copy" and reasons[4] == "below_rank"
    keep, reasons = select_samples(realism, outlier, copy, keep_fraction=1.0, realism_threshold=2.5,
                                   selection="realism")
    assert keep.sum() == 3 and reasons[3] == "below_threshold"
    keep, _ = select_samples(realism, outlier | True, copy, keep_fraction=0.5, selection="realism")
    assert keep.sum() == 0  # nothing passes: fewer than the quota is kept, never a flagged sample
    # stratified: the best of every group (nearest real image) before the second best of any
    groups = np.array([0, 0, 0, 1, 1, 2, 3, 3])
    keep, reasons = select_samples(realism, outlier, copy, keep_fraction=0.5, groups=groups)
    assert keep.tolist() == [True, True, False, True, False, True, False, False]
    assert reasons[2] == "below_rank" and reasons[6] == "outlier" and reasons[7] == "near_copy"
    with pytest.raises(ValueError):
        select_samples(realism, outlier, copy, keep_fraction=1.5, groups=groups)
    with pytest.raises(ValueError):
        select_samples(realism, outlier, copy, keep_fraction=0.5)  # stratified needs groups
