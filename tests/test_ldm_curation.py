"""Curation of synthetic images (configs/curate.json) on constructed cases: copies, outliers, keep fraction."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import run_bundle
from PIL import Image

from dcl_cstp_ext.data import build_datalist, build_pretrain_datalist, read_datalist


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _synthetic_folder(folder, real, demo_root):
    """Plausible new samples (held-out validation images, as 32 px PNGs), an exact copy of a training image, pure
    noise and a constant image."""
    folder.mkdir()
    names = []
    for i, it in enumerate(real["validation"][:7]):
        Image.open(it["image"]).convert("RGB").resize((32, 32)).save(folder / f"new_{i}.png")
        names.append(f"new_{i}.png")
    shutil.copy(real["training"][5]["image"], folder / "copy.jpg")  # an exact copy of a training image
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / "noise.png")
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(folder / "constant.png")
    return names + ["copy.jpg", "noise.png", "constant.png"]


def test_curation_drops_copies_and_outliers_and_keeps_the_requested_fraction(tmp_path, demo_data):
    real = build_datalist("auto", demo_data["kvasir_seg"], seed=0)
    names = _synthetic_folder(tmp_path / "synthetic", real, demo_data["kvasir_seg"])
    out = tmp_path / "curation"
    run_bundle("ldm_synthesis", ["curate.json"], workflow_type="infer", dataset_dir=str(demo_data["kvasir_seg"]),
               synthetic_dir=str(tmp_path / "synthetic"), output_dir=str(out), image_size=32, device="cpu",
               num_workers=0, keep_fraction=0.4, ms_ssim_pairs=20, feature_encoder=str(tmp_path / "no_encoder.pt"))
    report = json.loads((out / "curation.json").read_text())
    rows = {r["image"].rsplit("/", 1)[-1]: r for r in report["samples"]}
    assert set(rows) == set(names)
    assert rows["copy.jpg"]["near_copy"] and rows["copy.jpg"]["reason"] == "near_copy"
    assert rows["copy.jpg"]["pixel_nn_ratio"] < 1e-3 and rows["copy.jpg"]["feature_nn_ratio"] < 1e-3
    assert rows["copy.jpg"]["nearest_real_pixel"] == real["training"][5]["image"]
    for bad in ("noise.png", "constant.png"):
        assert rows[bad]["outlier"] and rows[bad]["reason"] == "outlier", bad
        assert not rows[bad]["kept"]
    counts = report["counts"]
    assert counts["kept"] == round(0.4 * len(names)) == 4  # enough plausible samples pass the filters
    assert sum(counts["dropped_by_reason"].values()) == len(names) - counts["kept"]
    assert counts["dropped_by_reason"]["near_copy"] >= 1 and counts["dropped_by_reason"]["outlier"] >= 2
    kept = [n for n, r in rows.items() if r["kept"]]
    assert all(n.startswith("new_") for n in kept)
    # stratified by nearest real image: the best sample of each neighbourhood comes before any second one
    unflagged = [r for r in rows.values() if r["reason"] in (None, "below_rank")]
    firsts = {}
    for r in sorted(unflagged, key=lambda r: -r["realism"]):
        firsts.setdefault(r["nearest_real_feature"], r["image"])
    kept_images = {rows[n]["image"] for n in kept}
    if len(firsts) >= len(kept):
        assert kept_images <= set(firsts.values())  # only neighbourhood-best samples
    else:
        assert set(firsts.values()) <= kept_images  # every neighbourhood-best sample, then seconds
    # the report, its pictures, and the datalist pre-training reads
    assert report["feature_encoder"]["encoder"] == "random"
    m = report["metrics"]
    assert m["frechet_distance"]["kept"] < m["frechet_distance"]["all"]
    assert m["precision_recall"]["kept"]["precision"] >= m["precision_recall"]["all"]["precision"]
    md = (out / "curation.md").read_text()
    assert "near_copy" in md and "random ResNet-18" in md and "imperfect proxy" in md
    for pic in ("best.png", "kept_vs_nearest_real.png", "worst.png", "near_copies.png", "outliers.png",
                "kept_sheet.png"):
        assert (out / pic).is_file(), pic
    items = read_datalist(out / "curated_datalist.json")["training"]
    assert len(items) == 4 and len(list((out / "curated").glob("*.png"))) == 4
    union = build_pretrain_datalist(real, synthetic=out / "curated", ratio=1.0)
    assert sum(it["source"] == "synthetic" for it in union) == 4


def test_curation_uses_a_named_encoder_and_refuses_a_missing_one_when_strict(tmp_path, demo_data):
    from dcl_cstp_ext.generative import build_feature_encoder
    from dcl_cstp_ext.networks import ResNetEncoder2D

    path = tmp_path / "encoder.pt"
    torch.save(ResNetEncoder2D("resnet18", 1).state_dict(), path)
    enc, info = build_feature_encoder(path, in_channels=3)
    assert info["encoder"] == "pretrained" and info["backbone"] == "resnet18" and info["in_channels"] == 1
    assert enc.conv1.in_channels == 1
    with pytest.raises(FileNotFoundError):
        build_feature_encoder(tmp_path / "missing.pt", strict=True)
