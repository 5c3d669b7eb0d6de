"""inference_items: the one way every bundle turns a user's input into items to run on."""

import numpy as np
import pytest
from PIL import Image

from dcl_cstp_ext.data import DataError, inference_items, write_datalist


def test_inference_items_keeps_the_keys_asked_for(tmp_path):
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / name)
    a, b = str(tmp_path / "a.png"), str(tmp_path / "b.png")
    dl = write_datalist(tmp_path / "dl.json", {"training": [{"image": a, "label": 1, "extra": "x"}],
                                               "validation": [{"image": b, "label": 0}], "test": []})
    assert inference_items(dl) == [{"image": b}]  # auto: validation (test is empty)
    assert inference_items(dl, "training", keys=("image", "label")) == [{"image": a, "label": 1}]
    assert inference_items(dl, keys=("image", "label")) == [{"image": b, "label": 0}]
    assert inference_items(dl) == [{"image": b}]
    items = [{"image": a, "label": 2}, b]
    assert inference_items(items, keys=("image", "label")) == [{"image": a, "label": 2}, {"image": b}]
    assert inference_items(items) == [{"image": a}, {"image": b}]
    assert [it["image"] for it in inference_items(tmp_path)] == [a, b]
    with pytest.raises(DataError, match="'test' is empty"):
        inference_items(dl, "test")
    with pytest.raises(DataError, match="not a folder of images"):
        inference_items(tmp_path / "nothing.png")


def test_one_bad_file_is_named_or_skipped_with_skip_invalid(tmp_path):
    """Issue #23: a folder with one bad file is refused naming it, and ``skip_invalid`` (which the inference configs
    now pass on) runs on the others; a datalist or a list of paths is checked the same way before anything runs."""
    for name in ("a.png", "c.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / name)
    (tmp_path / "b.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"b\.png") as err:
        inference_items(tmp_path)
    assert "--skip_invalid True" in str(err.value) and "a.png" not in str(err.value)
    kept = inference_items(tmp_path, skip_invalid=True)
    assert [it["image"] for it in kept] == [str(tmp_path / "a.png"), str(tmp_path / "c.png")]
    listed = [str(tmp_path / n) for n in ("a.png", "b.png")]
    with pytest.raises(DataError, match="b.png"):
        inference_items(listed)
    assert inference_items(listed, skip_invalid=True) == [{"image": listed[0]}]


def test_every_inference_config_passes_skip_invalid_on():
    import json
    from pathlib import Path

    for bundle in ("kvasir_seg", "isic_seg", "pneumonia_cls"):
        path = Path(__file__).resolve().parents[1] / "bundles" / bundle / "configs" / "inference.json"
        config = json.loads(path.read_text())
        assert config["skip_invalid"] is False and "@skip_invalid)" in config["datalist"], bundle
