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
