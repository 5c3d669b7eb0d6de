"""Preprocessing transforms: loading (orientation, bit depth, channels), resizing, masks, caching."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, PersistentDataset
from monai.transforms import Invertd, MapTransform, RandFlipd
from PIL import Image

from dcl_cstp_ext.data import (
    DataError,
    LoadImage2Dd,
    Resize2Dd,
    classification_preprocess,
    load_image_transforms,
    make_cached_dataset,
    read_image,
    segmentation_preprocess,
    unlabelled_preprocess,
)

H, W = 30, 40  # non-square on purpose: a transposition would show


def _ramp(dtype=np.uint8, top: int = 255) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    return np.round((y * W + x) / (H * W - 1) * top).astype(dtype)


def _save(arr: np.ndarray, path: Path, **kw) -> Path:
    Image.fromarray(arr).save(path, **kw)
    return path


def test_grey_8bit_keeps_orientation_and_scales(tmp_path):
    arr = _ramp()
    img = read_image(_save(arr, tmp_path / "g.png"))
    assert img.shape == (1, H, W) and img.dtype == np.float32
    np.testing.assert_allclose(img[0], arr / 255.0, atol=1e-6)
    out = LoadImage2Dd("image", channels=3)({"image": str(tmp_path / "g.png")})["image"]
    assert out.shape == (3, H, W) and torch.equal(out[0], out[2])
    assert out.meta["filename_or_obj"].endswith("g.png") and tuple(out.meta["spatial_shape"]) == (H, W)


def test_grey_16bit(tmp_path):
    arr = _ramp(np.uint16, 65535)
    img = read_image(_save(arr, tmp_path / "g16.png"))
    assert img.dtype == np.float32 and img.shape == (1, H, W)
    np.testing.assert_allclose(img[0], arr / 65535.0, atol=1e-6)
    assert img.max() == 1.0 and img.min() == 0.0
    out = classification_preprocess(64, channels=3)({"image": str(tmp_path / "g16.png"), "label": 2})
    assert out["image"].shape == (3, 64, 64) and out["label"].dtype == torch.long and int(out["label"]) == 2


def test_rgb_and_rgba(tmp_path):
    rgb = np.stack([_ramp(), 255 - _ramp(), np.full((H, W), 50, np.uint8)], axis=-1)
    img = read_image(_save(rgb, tmp_path / "c.png"))
    assert img.shape == (3, H, W)
    np.testing.assert_allclose(img.transpose(1, 2, 0), rgb / 255.0, atol=1e-6)
    rgba = np.concatenate([rgb, np.full((H, W, 1), 7, np.uint8)], axis=-1)
    np.testing.assert_allclose(read_image(_save(rgba, tmp_path / "a.png")), img)
    grey = LoadImage2Dd("image", channels=1)({"image": str(tmp_path / "c.png")})["image"]
    expected = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    assert grey.shape == (1, H, W)
    np.testing.assert_allclose(grey[0].numpy(), expected / 255.0, atol=1e-5)


def test_palette_image(tmp_path):
    p = Image.fromarray(_ramp()).convert("P")
    p.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").shape[0] in (1, 3)
    out = unlabelled_preprocess(16)({"image": str(tmp_path / "p.png")})["image"]
    assert out.shape == (3, 16, 16) and 0 <= out.min() and out.max() <= 1


def test_jpeg_mask_with_unclean_values(tmp_path):
    mask = np.zeros((H, W), np.uint8)
    mask[5:22, 8:30] = 255
    rgb_mask = np.repeat(mask[..., None], 3, axis=-1)
    _save(rgb_mask, tmp_path / "m.jpg", quality=60)
    decoded = np.asarray(Image.open(tmp_path / "m.jpg").convert("L"))
    assert len(np.unique(decoded)) > 2  # JPEG artefacts: not clean 0/255
    chain = load_image_transforms("label", image_size=None, is_mask=True)
    out = chain[1](chain[0]({"label": str(tmp_path / "m.jpg")}))["label"]
    assert out.shape == (1, H, W) and out.dtype == torch.float32
    assert set(out.unique().tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(out[0].numpy(), (decoded >= 128).astype(np.float32))


def test_segmentation_chain_shapes_ranges_and_inverse(tmp_path):
    rgb = np.stack([_ramp()] * 3, axis=-1)
    mask = np.zeros((H, W), np.uint8)
    mask[:, W // 2 :] = 255
    item = {"image": str(_save(rgb, tmp_path / "i.jpg")), "label": str(_save(mask, tmp_path / "m.png"))}
    chain = segmentation_preprocess(image_size=64, channels=3)
    out = chain(item)
    assert out["image"].shape == (3, 64, 64) and out["image"].dtype == torch.float32
    assert 0.0 <= out["image"].min() and out["image"].max() <= 1.0
    assert out["label"].shape == (1, 64, 64) and set(out["label"].unique().tolist()) == {0.0, 1.0}
    assert out["label"][0, :, :31].sum() == 0 and out["label"][0, :, 33:].min() == 1  # left half empty
    assert out["image"][0, 0, 0] < out["image"][0, 0, -1] < out["image"][0, -1, 0]  # row-major ramp kept
    back = Invertd(["image", "label"], chain, orig_keys=["image", "label"])(out)
    assert back["image"].shape == (3, H, W) and back["label"].shape == (1, H, W)
    rect = segmentation_preprocess(image_size=(32, 48), channels=1)(item)
    assert rect["image"].shape == (1, 32, 48) and rect["label"].shape == (1, 32, 48)


def test_image_and_mask_size_mismatch_at_load_time(tmp_path):
    item = {
        "image": str(_save(_ramp(), tmp_path / "i.png")),
        "label": str(_save(np.zeros((10, 10), np.uint8), tmp_path / "m.png")),
    }
    with pytest.raises(RuntimeError) as err:  # MONAI's Compose wraps the error, keeping it as the cause
        segmentation_preprocess(32)(item)
    cause = err.value.__cause__
    assert isinstance(cause, DataError) and "m.png: sizes differ" in str(cause)


def test_resize_modes(tmp_path):
    x = torch.zeros(1, 64, 64)
    x[:, ::2] = 1.0  # stripes: plain bilinear would alias, anti-aliased gives ~0.5
    out = Resize2Dd("x", 16, mode="bilinear")({"x": x})["x"]
    assert out.shape == (1, 16, 16) and torch.allclose(out, torch.full_like(out, 0.5), atol=0.05)
    nearest = Resize2Dd("x", (8, 8), mode="nearest")({"x": x})["x"]
    assert set(nearest.unique().tolist()) <= {0.0, 1.0}


class _Count(MapTransform):
    calls = 0

    def __call__(self, data):
        type(self).calls += 1
        return dict(data)


def test_cached_dataset_runs_deterministic_part_once(tmp_path):
    items = []
    for i in range(6):
        buf = io.BytesIO()
        Image.fromarray(_ramp() // (i + 1)).save(buf, format="PNG")
        (tmp_path / f"{i}.png").write_bytes(buf.getvalue())
        items.append({"image": str(tmp_path / f"{i}.png"), "label": i % 2})
    _Count.calls = 0
    pre = classification_preprocess(16)
    ds = make_cached_dataset(items, [pre, _Count("image")], augment=RandFlipd("image", prob=1.0, spatial_axis=1))
    assert isinstance(ds, CacheDataset) and _Count.calls == 6  # nested Compose flattened: all cached
    for _ in range(2):
        batch = [ds[i] for i in range(len(ds))]
    assert _Count.calls == 6
    plain = pre(items[0])["image"]
    assert torch.allclose(batch[0]["image"], torch.flip(plain, dims=[2]))  # augmentation runs after the cache
    disk = make_cached_dataset(items, pre, cache_dir=tmp_path / "cache")
    assert isinstance(disk, PersistentDataset) and disk[0]["image"].shape == (3, 16, 16)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1


def test_pretraining_crops_its_views_from_a_larger_picture():
    from dcl_cstp_ext.data import crop_source_size

    assert crop_source_size(64) == 128 and crop_source_size(128) == 256
    assert crop_source_size(256) == 512 and crop_source_size(512) == 512  # capped at 512 (or the view size)
    assert crop_source_size(1024) == 1024
