"""Segmentation metrics, loss, augmentation and report helpers of dcl_cstp_ext (metrics, data, reports, transforms), against
hand-made masks with known answers."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from conftest import BUNDLES
from ignite.engine import Engine
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.metrics import compute_hausdorff_distance
from PIL import Image
from scipy.ndimage import gaussian_filter

from dcl_cstp_ext.data import DataError, evaluation_items, evaluation_split, inference_items, write_datalist
from dcl_cstp_ext.metrics import (
    dice_score,
    hausdorff_distance,
    hausdorff_distances,
    iou_score,
    segmentation_metrics,
    summarize,
)
from dcl_cstp_ext.reports import SegmentationReport
from dcl_cstp_ext.transforms import segmentation_augmentation


def square(size=64, top=10, left=10, side=20):
    m = np.zeros((size, size), dtype=bool)
    m[top : top + side, left : left + side] = True
    return m


@pytest.mark.parametrize("k", [1, 3, 5, 8])
def test_squares_offset_horizontally(k):
    s = 20
    a, b = square(side=s), square(left=10 + k, side=s)
    inter = s * (s - k)
    assert dice_score(a, b) == pytest.approx(2 * inter / (2 * s * s))
    assert iou_score(a, b) == pytest.approx(inter / (2 * s * s - inter))
    assert hausdorff_distance(a, b) == pytest.approx(k)
    # a whole side (20 of ~76 boundary pixels) lies at distance k: the 95th percentile is k too
    assert hausdorff_distance(a, b, percentile=95) == pytest.approx(k)


@pytest.mark.parametrize("k", [2, 4])
def test_squares_offset_diagonally(k):
    s = 20
    a, b = square(side=s), square(top=10 + k, left=10 + k, side=s)
    inter = (s - k) ** 2
    assert dice_score(a, b) == pytest.approx(inter / (s * s))
    assert iou_score(a, b) == pytest.approx(inter / (2 * s * s - inter))
    assert hausdorff_distance(a, b) == pytest.approx(k * math.sqrt(2))  # corner to corner


def test_nested_squares():
    outer, inner = square(top=10, left=10, side=20), square(top=15, left=15, side=10)
    assert dice_score(inner, outer) == pytest.approx(2 * 100 / 500)
    assert iou_score(inner, outer) == pytest.approx(100 / 400)
    # the outer corner is 5 px from the inner boundary on both axes
    assert hausdorff_distance(inner, outer) == pytest.approx(5 * math.sqrt(2))


def test_identical_masks():
    a = square()
    m = segmentation_metrics(a, a)
    assert m["dice"] == m["iou"] == 1.0 and m["hd"] == m["hd95"] == 0.0
    assert m["gt_area"] == m["pred_area"] == 400


def test_empty_masks():
    empty, full = np.zeros((48, 64), bool), square(size=64)[:48]
    both = segmentation_metrics(empty, empty)
    assert both == {"dice": 1.0, "iou": 1.0, "hd": 0.0, "hd95": 0.0, "gt_area": 0, "pred_area": 0}
    diag = math.hypot(48, 64)  # 80
    for pred, gt in ((empty, full), (full, empty)):
        m = segmentation_metrics(pred, gt)
        assert m["dice"] == 0.0 and m["iou"] == 0.0
        assert m["hd"] == pytest.approx(diag) and m["hd95"] == pytest.approx(diag)


def test_disjoint_masks_score_zero():
    a, b = square(top=0, left=0, side=10), square(top=40, left=40, side=10)
    assert dice_score(a, b) == 0.0 and iou_score(a, b) == 0.0
    assert hausdorff_distance(a, b) == pytest.approx(40 * math.sqrt(2))  # (0, 0) -> (40, 40)


def test_hausdorff_matches_monai_on_random_blobs():
    rng = np.random.default_rng(0)
    checked = 0
    for i in range(25):
        a = gaussian_filter(rng.random((72, 60)), 3) > 0.52
        b = gaussian_filter(rng.random((72, 60)), 3) > 0.5
        if i % 5 == 0:
            a[:4] = True  # touching the image border
        if not (a.any() and b.any()):
            continue
        mine = hausdorff_distances(a, b, (None, 95, 50))
        for q, v in zip((None, 95, 50), mine):
            ref = compute_hausdorff_distance(
                torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None], include_background=True, percentile=q
            )
            assert v == pytest.approx(float(ref), abs=1e-4), (i, q)
        checked += 1
    assert checked >= 20


def test_input_forms_and_errors():
    a = square()
    t = torch.from_numpy(a).float()[None]  # (1, H, W) float {0, 1}
    u8 = a.astype(np.uint8) * 255  # PNG-style 0 / 255
    assert dice_score(t, u8) == 1.0
    assert dice_score(torch.from_numpy(a * 0.7), a) == 1.0  # probabilities > 0.5
    with pytest.raises(ValueError, match="differ in size"):
        dice_score(a, a[:32])
    with pytest.raises(ValueError, match="mask"):
        dice_score(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)))


def test_summarize():
    rows = [{"dice": 0.5, "iou": 0.2, "hd": 1.0, "hd95": 1.0}, {"dice": 1.0, "iou": 0.4, "hd": 3.0, "hd95": 2.0},
            {"dice": 0.0, "iou": 0.0, "hd": 8.0, "hd95": 6.0}]
    s = summarize(rows)
    assert s["dice"]["mean"] == pytest.approx(0.5) and s["dice"]["median"] == 0.5
    assert s["dice"]["std"] == pytest.approx(np.std([0.5, 1.0, 0.0]))
    assert s["hd"]["max"] == 8.0 and s["hd95"]["min"] == 1.0


@pytest.mark.parametrize("bundle", ["isic_seg", "kvasir_seg"])
def test_bundle_loss_is_soft_iou_plus_bce(bundle):
    """The loss each segmentation bundle trains with (its ``loss`` config) is per-image soft IoU loss + BCE, the
    paper's eq. 9, with both terms weighted 1."""
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / bundle / "configs" / "train.json"))
    loss_fn = parser.get_parsed_content("loss")
    torch.manual_seed(0)
    logits = torch.randn(3, 1, 16, 16)
    target = (torch.rand(3, 1, 16, 16) > 0.6).float()
    p = torch.sigmoid(logits)
    inter = (p * target).sum(dim=(1, 2, 3))
    union = p.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) - inter
    soft_iou_loss = (1 - (inter + 1e-5) / (union + 1e-5)).mean()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    torch.testing.assert_close(loss_fn(logits, target), soft_iou_loss + bce)


def test_augmentation_moves_image_and_mask_together():
    """Channel 0 of the image is the mask itself: after the joint random transforms they must still coincide."""
    mask = torch.from_numpy(square(size=64, top=12, left=20, side=24)).float()[None]
    image = torch.cat([mask, torch.full_like(mask, 0.3), torch.zeros_like(mask)])
    aug = segmentation_augmentation(48, brightness=0.0, contrast=0.0, rotate_prob=1.0, flip_prob=0.5)
    moved = 0
    for seed in range(12):
        aug.set_random_state(seed=seed)
        out = aug({"image": image.clone(), "label": mask.clone()})
        img, lab = out["image"], out["label"]
        assert img.shape == (3, 48, 48) and lab.shape == (1, 48, 48)
        assert img.dtype == lab.dtype == torch.float32
        assert set(torch.unique(lab).tolist()) <= {0.0, 1.0}
        assert iou_score(img[0] > 0.5, lab) > 0.85
        moved += not torch.equal(lab, torch.nn.functional.interpolate(mask[None], size=(48, 48))[0])
    assert moved >= 6


def test_augmentation_jitters_the_image_only():
    mask = torch.from_numpy(square(size=32)).float()[None]
    image = torch.full((3, 32, 32), 0.5)
    aug = segmentation_augmentation(32, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip_prob=0.0, rotate_prob=0.0,
                                    brightness=0.5, contrast=0.0, jitter_prob=1.0)
    aug.set_random_state(seed=3)
    out = aug({"image": image, "label": mask})
    assert torch.equal(out["label"], mask)
    assert not torch.allclose(out["image"], image)


def _item(image, gt, pred, name):
    meta = {"filename_or_obj": name}
    label = MetaTensor(gt[None].float(), meta={"filename_or_obj": name + "_m"})
    return {"image": MetaTensor(image, meta=dict(meta)), "label": label, "pred": torch.as_tensor(pred[None]).float()}


def test_report_files_and_worst_case_order(tmp_path):
    gt = torch.from_numpy(square(size=32, top=8, left=8, side=12))
    preds = {
        "good": gt.clone(),
        "bad": torch.from_numpy(square(size=32, top=8, left=14, side=12)),  # Dice 0.5
        "missed": torch.zeros_like(gt),  # Dice 0
    }
    batches = [[_item(torch.rand(3, 32, 32), gt, p, f"/x/{n}.jpg") for n, p in preds.items()]]
    engine = Engine(lambda e, b: b)
    report = SegmentationReport(str(tmp_path), num_worst=2, split="test", image_size=32, num_best=2)
    report.attach(engine)
    engine.run(batches, max_epochs=1)
    rows = list(csv.DictReader(open(tmp_path / "metrics_per_image.csv")))
    assert [r["image"] for r in rows] == ["/x/good.jpg", "/x/bad.jpg", "/x/missed.jpg"]
    assert [float(r["dice"]) for r in rows] == pytest.approx([1.0, 0.5, 0.0])
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["n"] == 3 and summary["split"] == "test"
    assert summary["dice"]["mean"] == pytest.approx(0.5) and summary["dice"]["median"] == pytest.approx(0.5)
    assert summary["hd"]["max"] == pytest.approx(math.hypot(32, 32))
    pictures = sorted(p.name for p in (tmp_path / "worst_cases").glob("*.png"))
    assert pictures == ["01_missed.png", "02_bad.png"]
    with Image.open(tmp_path / "worst_cases" / "01_missed.png") as im:
        assert im.width > 2 * im.height  # three panels side by side
    assert sorted(p.name for p in (tmp_path / "best_cases").glob("*.png")) == ["01_good.png", "02_bad.png"]
    with Image.open(tmp_path / "cases.png") as im:  # two rows (worst, best) of two thumbnails
        assert im.width > im.height > 0
    # a second evaluation into the same folder replaces the pictures instead of adding to them
    report2 = SegmentationReport(str(tmp_path), num_worst=1, num_best=0)
    engine2 = Engine(lambda e, b: b)
    report2.attach(engine2)
    engine2.run(batches, max_epochs=1)
    assert [p.name for p in (tmp_path / "worst_cases").glob("*.png")] == ["01_missed.png"]
    assert not list((tmp_path / "best_cases").glob("*.png"))


def test_evaluation_and_inference_item_lists(tmp_path):
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.jpg"):
        Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    items = inference_items(folder)
    assert sorted(it["image"].rsplit("/", 1)[1] for it in items) == ["a.png", "b.jpg"]
    assert inference_items(folder / "a.png") == [{"image": str(folder / "a.png")}]
    assert inference_items([str(folder / "a.png")]) == [{"image": str(folder / "a.png")}]
    dl = {"training": [{"image": str(folder / "a.png"), "label": "x"}],
          "validation": [{"image": str(folder / "sub/b.jpg")}], "test": []}
    path = write_datalist(tmp_path / "dl.json", dl)
    assert inference_items(path) == [{"image": str(folder / "sub/b.jpg")}]
    assert inference_items(path, "training") == [{"image": str(folder / "a.png")}]
    assert evaluation_split(dl) == "validation" and evaluation_split({**dl, "test": [1]}) == "test"
    assert evaluation_items(dl) == dl["validation"]
    with pytest.raises(DataError):
        evaluation_items(dl, "test")
    with pytest.raises(DataError):
        inference_items(tmp_path / "missing")
