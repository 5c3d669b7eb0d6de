"""Smoke test on the real development data in ../shared/data (skipped where it is absent)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from dcl_cstp_ext.data import build_datalist, detect_dataset, segmentation_preprocess

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not DATA.is_dir(), reason=f"real data not found at {DATA}"),
]


def _all(dl) -> list[dict]:
    return dl["training"] + dl["validation"] + dl["test"]


def test_kvasir_seg(tmp_path):
    split_file = tmp_path / "kvasir.json"
    dl = build_datalist("auto", DATA / "kvasir-seg", seed=0, split_file=split_file)
    assert detect_dataset(DATA / "kvasir-seg") == "kvasir_seg"
    assert len(_all(dl)) == 880 and len(dl["validation"]) == 176
    assert json.loads(split_file.read_text())["meta"]["dataset"] == "kvasir_seg"
    out = segmentation_preprocess(256)(dl["training"][0])
    assert out["image"].shape == (3, 256, 256) and set(out["label"].unique().tolist()) == {0.0, 1.0}


def test_isic2018():
    dl = build_datalist("isic2018", DATA / "isic2018", seed=0)
    assert len(_all(dl)) == 2335 and len(dl["validation"]) == 467
    assert all(Path(it["label"]).name == Path(it["image"]).stem + "_segmentation.png" for it in _all(dl))


def test_pediatric_cxr_three_classes():
    dl = build_datalist("pediatric_cxr", DATA / "chest_xray", seed=0, num_classes=3)
    assert dl["class_names"] == ["normal", "bacterial", "viral"]
    assert Counter(it["class_name"] for it in _all(dl)) == {"normal": 1341, "bacterial": 2530, "viral": 1345}
    assert Counter(it["label"] for it in dl["validation"]) == {0: 268, 1: 506, 2: 269}
