"""Cross-validated frozen-encoder probes and their paired statistics (dcl_cstp_ext.engines.frozen_probe), and the
probe of a run's encoders (dcl_cstp_ext.engines.encoder_probe, the dcl_pretrain bundle's probe.json)."""

import json

import numpy as np
import pytest
import torch
from conftest import run_bundle
from PIL import Image
from scipy.stats import binomtest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import PredefinedSplit, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from dcl_cstp_ext.data import build_datalist
from dcl_cstp_ext.engines import cross_validated_knn, cross_validated_linear, paired_difference, probe_folds, run_probe
from dcl_cstp_ext.networks import ResNetEncoder2D
from dcl_cstp_ext.networks.export import save_export


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


def test_paired_difference_of_scores_uses_the_signed_rank_test():
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(5)
    a = rng.random(40)
    b = a - 0.05 + 0.02 * rng.normal(size=40)
    out = paired_difference(a, b)
    assert out["difference"] == pytest.approx(100 * (a - b).mean())
    assert out["wilcoxon_p"] == pytest.approx(wilcoxon(a, b).pvalue) and "mcnemar_p" not in out


def test_dense_probe_finds_a_mask_that_one_channel_encodes_and_not_one_it_does_not():
    """Features whose first channel is the mask: held-out Dice 1; features of pure noise: Dice far below."""
    from dcl_cstp_ext.engines import cross_validated_dense_linear

    rng = np.random.default_rng(0)
    masks = np.zeros((30, 8, 8), dtype=bool)
    for i in range(30):
        r, c, s = rng.integers(0, 4), rng.integers(0, 4), rng.integers(2, 5)
        masks[i, r : r + s, c : c + s] = True
    noise = rng.normal(size=(30, 6, 8, 8)).astype(np.float32)
    informative = noise.copy()
    informative[:, 0] = masks + 0.05 * noise[:, 0]
    fold = np.arange(30) % 3
    np.testing.assert_allclose(cross_validated_dense_linear(informative, masks, fold, pixels_per_image=32), 1.0)
    assert cross_validated_dense_linear(noise, masks, fold, pixels_per_image=32).mean() < 0.5


def test_dense_features_share_one_grid_and_the_pooled_feature(tmp_path):
    import torch

    from dcl_cstp_ext.engines import dense_features
    from dcl_cstp_ext.networks import ResNetEncoder2D

    torch.manual_seed(0)
    enc = ResNetEncoder2D("resnet18", 3)
    images = torch.rand(4, 3, 64, 64)
    masks = torch.zeros(4, 1, 64, 64)
    masks[:, :, :32, :] = 1  # top half: the top 4 of the 8 rows of the stride-8 grid
    maps, grid_masks, pooled = dense_features(enc, [{"image": images, "label": masks}])
    assert maps.shape == (4, 128 + 256 + 512, 8, 8) and grid_masks.shape == (4, 8, 8)
    assert grid_masks[:, :4].all() and not grid_masks[:, 4:].any()
    with torch.no_grad():
        ref = enc.eval()(images)[1]
    np.testing.assert_allclose(pooled, torch.nn.functional.normalize(ref, dim=1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(maps[:, :128], enc(images)[0][2].detach().numpy(), rtol=1e-5, atol=1e-6)


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
    assert first["knn_accuracy"] == second["knn_accuracy"] and "knn_accuracy_vs_random" not in first
    for probe in ("knn_accuracy", "linear_accuracy"):
        same = second[f"{probe}_vs_random"]
        assert (same["difference"], same["a_only"], same["b_only"], same["n"]) == (0.0, 0, 0, n_images)
    assert 0 < first["dense_dice"] == second["dense_dice"] and second["dense_dice_vs_random"]["n"] == n_images
    # another first encoder is the reference: an exported random encoder against the seeded random one
    torch.manual_seed(1)
    torch.save(ResNetEncoder2D("resnet18", 3).state_dict(), tmp_path / "other.pt")
    report = module.probe(str(demo_data["kvasir_seg"]), encoders=f"{tmp_path / 'other.pt'},random", image_sizes="32",
                          in_channels=3, protocol="cv", folds=3)
    assert report["reference_encoder"].endswith("other.pt") and "knn_accuracy_vs_reference" in report["results"][1]


def test_probe_table_and_forest_plot(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "plot_probe.py"
    spec = importlib.util.spec_from_file_location("plot_probe", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    diff = {"difference": 2.5, "low": -0.5, "high": 5.25}
    report = {"labels": "classes", "protocol": "5-fold cross-validation", "majority_class_accuracy": 48.5,
              "results": [{"encoder": "random", "images": 10, "knn_accuracy": 70.0, "linear_accuracy": 71.0},
                          {"encoder": "/r/chest_after/pretrain/simclr/models/encoder.pt", "images": 10,
                           "knn_accuracy": 72.5, "linear_accuracy": 73.5, "knn_accuracy_vs_random": diff,
                           "linear_accuracy_vs_random": diff}]}
    (tmp_path / "probe_cv_chest.json").write_text(json.dumps(report))
    table = module.markdown_table(report).splitlines()
    assert table[2] == "| random | 70.0 |  | 71.0 |  |"
    assert table[3] == "| simclr (chest_after) | 72.5 | +2.5 [-0.5, +5.2] | 73.5 | +2.5 [-0.5, +5.2] |"
    module.plot(str(tmp_path / "probe_cv_chest.json"), figure=str(tmp_path / "f.png"))
    assert (tmp_path / "f.png").stat().st_size > 5000
    # other runs on the same split (collect_run files, rows named by init) join the same row of panels: a new
    # method by its name, a method already shown under its file's name, a run reproduced to the digit not at all
    simclr = report["results"][1]
    other = {**report, "results": [report["results"][0], {**simclr, "init": "mocov2"},
                                   {**simclr, "init": "simclr"}]}
    (tmp_path / "pipeline_chest_moco.json").write_text(json.dumps(other))
    again = {**report, "results": [report["results"][0], {**simclr, "init": "mocov2", "knn_accuracy": 75.0}]}
    (tmp_path / "pipeline_chest_moco_bn.json").write_text(json.dumps(again))
    merged = module.load_report(f"{tmp_path / 'probe_cv_chest.json'}+{tmp_path / 'pipeline_chest_moco_bn.json'}"
                                f"+{tmp_path / 'pipeline_chest_moco.json'}")
    assert [r["name"] for r in merged["results"]] == ["random", "simclr", "mocov2",  # METHOD_ORDER, then file order
                                                      "mocov2 (pipeline_chest_moco)"]
    assert module.markdown_table(merged).splitlines()[4].startswith("| mocov2 | 75.0 |")
    labelled = module.load_report(f"{tmp_path / 'probe_cv_chest.json'}+{tmp_path / 'pipeline_chest_moco_bn.json'}"
                                  f"+{tmp_path / 'pipeline_chest_moco.json'}=BN head")
    assert labelled["results"][-1]["name"] == "mocov2 (BN head)"
    module.plot(f"{tmp_path / 'probe_cv_chest.json'}+{tmp_path / 'pipeline_chest_moco.json'}", titles="chest",
                figure=str(tmp_path / "g.png"))
    assert (tmp_path / "g.png").stat().st_size > 5000
    other["results"][0] = {**report["results"][0], "knn_accuracy": 69.0}  # another split's random encoder
    (tmp_path / "pipeline_chest_other_split.json").write_text(json.dumps(other))
    with pytest.raises(ValueError, match="pipeline_chest_other_split.json: its random encoder"):
        module.load_report(f"{tmp_path / 'probe_cv_chest.json'}+{tmp_path / 'pipeline_chest_other_split.json'}")


def test_probe_workflow_pairs_an_encoder_with_the_random_reference(tmp_path, demo_data):
    """``bundles/dcl_pretrain/configs/probe.json`` (the pipeline's ``probe/<init>`` stages): the random reference
    keeps its per-image scores; an encoder probed against it is compared pair by pair; a reference of other folds,
    or an encoder of another backbone, is refused by name."""
    common = {"dataset_dir": str(demo_data["kvasir_seg"]), "backbone": "resnet18", "image_size": 32, "folds": 3,
              "device": "cpu"}
    reference = tmp_path / "random"
    run_bundle("dcl_pretrain", ["probe.json"], "infer", **common, encoder=None, output_dir=str(reference))
    torch.manual_seed(0)  # the reference's seeded random weights, exported: the same features, difference 0
    save_export(tmp_path / "encoder.pt", ResNetEncoder2D("resnet18", 3).state_dict(), {"backbone": "resnet18"})
    run_bundle("dcl_pretrain", ["probe.json"], "infer", **common, encoder=str(tmp_path / "encoder.pt"),
               reference_dir=str(reference), output_dir=str(tmp_path / "same"))
    summary = json.loads((tmp_path / "same" / "probe.json").read_text())
    n = summary["images"]
    assert summary["labels"] == "lesion-size tertiles" and summary["reference"] == str(reference)
    for probe in ("knn_accuracy", "linear_accuracy", "dense_dice"):
        assert summary[f"{probe}_vs_random"]["difference"] == 0.0 and summary[f"{probe}_vs_random"]["n"] == n
    assert json.loads((reference / "probe.json").read_text())["knn_accuracy"] == summary["knn_accuracy"]
    assert "knn_accuracy_vs_random" not in json.loads((reference / "probe.json").read_text())
    with np.load(reference / "scores.npz") as scores:
        assert len(scores["images"]) == n and scores["dense_dice"].shape == (n,)
    assert json.loads((reference / "run_info.json").read_text())[-1]["stage"] == "probe"  # the workflow's record
    datalist = build_datalist("auto", demo_data["kvasir_seg"], seed=0)
    with pytest.raises(ValueError, match="other images or folds"):
        run_probe(datalist, tmp_path / "x", 32, "resnet18", 3, reference_dir=reference, folds=4)
    with pytest.raises(ValueError, match="resnet18 encoder, but the probe compares resnet34"):
        run_probe(datalist, tmp_path / "y", 32, "resnet34", 3, encoder=str(tmp_path / "encoder.pt"))


def test_probe_folds_shrink_to_the_rarest_label_and_refuse_a_single_image(tmp_path):
    def item(i, label):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((16, 16), 10 * i, dtype=np.uint8)).save(path)
        return {"image": str(path), "label": label}

    datalist = {"training": [item(i, 0) for i in range(8)] + [item(8 + i, 1) for i in range(3)], "validation": []}
    summary = run_probe(datalist, tmp_path / "p", 32, "resnet18", 1, folds=5)
    assert summary["folds"] == 3 and summary["images"] == 11
    datalist["training"] = datalist["training"][:9]  # label 1: one image
    with pytest.raises(ValueError, match="label 1 .classes. has 1"):
        run_probe(datalist, tmp_path / "q", 32, "resnet18", 1)


def test_per_stage_dense_scores_are_the_dense_probe_on_each_stage_slice():
    """The per-stage diagnostic (``stage_dice``) probes each of C3, C4, C5 alone on the C3 grid and masks of the
    C3-C5 probe: each score equals the dense probe fitted on that stage's channels of the concatenated maps."""
    import torch

    from dcl_cstp_ext.engines import cross_validated_dense_linear, dense_features, probe_folds
    from dcl_cstp_ext.engines.encoder_probe import probe_scores
    from dcl_cstp_ext.networks import ResNetEncoder2D

    torch.manual_seed(0)
    enc = ResNetEncoder2D("resnet18", 3)
    images, masks = torch.rand(10, 3, 64, 64), torch.zeros(10, 1, 64, 64)
    masks[:, :, :32, :] = 1
    masks[::2, :, :, :16] = 0  # not every image alike, so that the stages' Dice can differ
    batch = [{"image": images, "mask": masks}]
    labels = np.array([0, 1] * 5)
    fold = probe_folds(labels, 2, 0)
    scores = probe_scores(enc, batch, labels, fold, dense=True, stage_dice=True)
    assert list(scores)[:3] == ["knn_accuracy", "linear_accuracy", "dense_dice"]
    maps, grid_masks, _ = dense_features(enc, batch, label_key="mask")
    for name, lo, hi in (("dense_dice_c3", 0, 128), ("dense_dice_c4", 128, 384), ("dense_dice_c5", 384, 896)):
        np.testing.assert_allclose(scores[name], cross_validated_dense_linear(maps[:, lo:hi], grid_masks, fold))
    assert all(v.shape == (10,) for v in scores.values())
    assert "dense_dice_c3" not in probe_scores(enc, batch, labels, fold, dense=True)


def test_the_pixels_baseline_hands_each_c3_cell_its_own_pixels_on_the_resnet_grid():
    """``"pixels"`` (no encoder: :class:`PixelPatchEncoder`) has a ResNet-18's five map sizes; its C3 map is every
    8x8 cell's raw pixels, so the dense probe recovers a mask drawn by colour alone and not a mask the pixels lack."""
    from dcl_cstp_ext.engines import dense_features, probe_folds
    from dcl_cstp_ext.engines.encoder_probe import build_probe_encoder, probe_scores
    from dcl_cstp_ext.networks import PixelPatchEncoder

    enc = build_probe_encoder("pixels", "resnet18", 3)
    assert isinstance(enc, PixelPatchEncoder) and not list(enc.parameters())
    x = torch.rand(2, 3, 64, 64)
    maps, pooled = enc(x)
    resnet_maps, _ = ResNetEncoder2D("resnet18", 3)(x)
    assert [m.shape[-2:] for m in maps] == [m.shape[-2:] for m in resnet_maps]
    assert all(m.shape[1] == 192 for m in maps) and pooled.shape == (2, 192)
    cell = x[1, :, 8:16, 24:32]  # row 1, column 3 of the 8x8 grid
    torch.testing.assert_close(maps[2][1, :, 1, 3].view(3, 8, 8), cell)
    torch.testing.assert_close(maps[3][0, :, 0, 0], maps[2][0, :, :2, :2].mean(dim=(1, 2)))
    torch.testing.assert_close(pooled, maps[2].mean(dim=(2, 3)))
    with pytest.raises(ValueError, match="multiples of 8"):
        enc(torch.rand(1, 3, 60, 60))

    g = torch.Generator().manual_seed(0)
    red = torch.rand(12, 1, 8, 8, generator=g) > 0.5  # which 8x8 cells are red: the mask
    images = 0.5 * torch.rand(12, 3, 64, 64, generator=g)
    images[:, 0] += 0.5 * red.float().repeat_interleave(8, 2).repeat_interleave(8, 3)[:, 0]
    colour_mask = red.float().repeat_interleave(8, 2).repeat_interleave(8, 3)
    other_mask = (torch.rand(12, 1, 8, 8, generator=g) > 0.5).float().repeat_interleave(8, 2).repeat_interleave(8, 3)
    labels, fold = np.array([0, 1] * 6), probe_folds(np.array([0, 1] * 6), 2, 0)
    by_colour = probe_scores(enc, [{"image": images, "mask": colour_mask}], labels, fold, dense=True)["dense_dice"]
    unrelated = probe_scores(enc, [{"image": images, "mask": other_mask}], labels, fold, dense=True)["dense_dice"]
    assert by_colour.mean() > 0.95 and unrelated.mean() < 0.7
    assert dense_features(enc, [{"image": images, "mask": colour_mask}], label_key="mask")[0].shape == (12, 576, 8, 8)
