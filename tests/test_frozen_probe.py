"""Cross-validated frozen-encoder probes and their paired statistics (dcl_cstp_ext.engines.frozen_probe)."""

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import PredefinedSplit, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dcl_cstp_ext.engines import cross_validated_knn, cross_validated_linear, paired_difference, probe_folds


def _normalised(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_folds_are_stratified_seeded_and_cover_every_item():
    labels = np.array([0] * 30 + [1] * 60 + [2] * 15)
    fold = probe_folds(labels, folds=5, seed=3)
    assert sorted(np.unique(fold)) == [0, 1, 2, 3, 4]
    for f in range(5):
        assert np.bincount(labels[fold == f], minlength=3).tolist() == [6, 12, 3]
    np.testing.assert_array_equal(fold, probe_folds(labels, folds=5, seed=3))
    assert not np.array_equal(fold, probe_folds(labels, folds=5, seed=4))


def test_no_item_votes_for_itself():
    """Random labels on random features: a probe that saw its query would be right every time; a sound one is at
    chance (k-NN: each item's own similarity 1 would dominate the vote at temperature 0.07)."""
    rng = np.random.default_rng(0)
    feats, labels = _normalised(rng.normal(size=(200, 64))), rng.integers(0, 2, 200)
    fold = probe_folds(labels, 5, 0)
    assert cross_validated_knn(feats, labels, fold, 2).mean() < 0.65
    assert cross_validated_linear(feats, labels, fold).mean() < 0.65


def test_knn_probe_matches_a_hand_vote():
    """Two folds of two items each: each query's only candidates are the other fold's items."""
    feats = _normalised(np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.2, 0.8]]))
    labels, fold = np.array([0, 1, 1, 0]), np.array([0, 0, 1, 1])
    # item 0 is nearest to item 2 (label 1) -> wrong; item 1 nearest to item 3 (label 0) -> wrong, with k=1
    np.testing.assert_array_equal(cross_validated_knn(feats, labels, fold, 2, k=1), [False, False, False, False])
    labels = np.array([0, 1, 0, 1])
    np.testing.assert_array_equal(cross_validated_knn(feats, labels, fold, 2, k=1), [True, True, True, True])


def test_linear_probe_is_sklearns_cross_validated_logistic_regression():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 150)
    feats = _normalised(rng.normal(size=(150, 16)) + 1.5 * np.eye(16)[labels])
    fold = probe_folds(labels, 5, 0)
    pred = cross_val_predict(make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), feats, labels,
                             cv=PredefinedSplit(fold))
    np.testing.assert_array_equal(cross_validated_linear(feats, labels, fold), pred == labels)
    assert 0.6 < (pred == labels).mean() < 1.0  # informative features, not a trivial task


def test_paired_difference_by_hand():
    a, b = np.array([1, 1, 0, 0, 1, 1]), np.array([0, 1, 0, 1, 0, 1])
    out = paired_difference(a, b, n_boot=2000)
    assert out["difference"] == pytest.approx(100 * (4 - 3) / 6)
    assert (out["a_only"], out["b_only"], out["n"]) == (2, 1, 6)
    assert out["mcnemar_p"] == pytest.approx(binomtest(2, 3, 0.5).pvalue)
    assert out["low"] < out["difference"] < out["high"]
    same = paired_difference(a, a)
    assert (same["difference"], same["low"], same["high"], same["mcnemar_p"]) == (0.0, 0.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="same items"):
        paired_difference(a, b[:5])


def test_paired_interval_narrows_with_more_pairs():
    rng = np.random.default_rng(2)
    a, b = rng.random(2000) < 0.6, rng.random(2000) < 0.5
    wide, narrow = paired_difference(a[:100], b[:100]), paired_difference(a, b)
    assert narrow["high"] - narrow["low"] < 0.5 * (wide["high"] - wide["low"])
    assert narrow["low"] > 0 and narrow["mcnemar_p"] < 1e-3  # a true 10-point difference is found at n = 2000


def test_probe_script_cross_validates_every_labelled_image(tmp_path, demo_data):
    """``benchmarks/probe_encoders.py --protocol cv`` on the demo Kvasir-SEG: every training and validation image is
    probed once; the same encoder twice differs by exactly nothing."""
    import importlib.util
    import json
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "probe_encoders.py"
    spec = importlib.util.spec_from_file_location("probe_encoders", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "probe.json"
    report = module.probe(str(demo_data["kvasir_seg"]), encoders="random,random", image_sizes="32", in_channels=3,
                          protocol="cv", folds=3, json_path=str(out))
    assert json.loads(out.read_text())["labels"] == "lesion-size tertiles"
    first, second = report["results"]
    n_images = len(list((demo_data["kvasir_seg"] / "Kvasir-SEG" / "images").glob("*.jpg")))
    assert first["images"] == n_images and first["folds"] == 3
    assert first["knn_accuracy"] == second["knn_accuracy"] and "knn_vs_random" not in first
    for probe in ("knn", "linear"):
        same = second[f"{probe}_vs_random"]
        assert (same["difference"], same["a_only"], same["b_only"], same["n"]) == (0.0, 0, 0, n_images)
