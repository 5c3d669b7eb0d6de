"""Tests of dcl_cstp_ext.transforms: strong augmentation (8 operations, PNP) and multi-view transforms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from monai.transforms import Compose, HistogramNormalize

from dcl_cstp_ext.transforms import (
    ALL_OP_NAMES,
    OP_NAMES,
    AutoContrast,
    Equalize,
    MultiViewd,
    RandAutoContrastd,
    RandBrightnessd,
    RandColorJitter,
    RandColorJitterd,
    RandEqualized,
    RandPoissonNoise,
    RandPoissonNoised,
    RandResizedCrop,
    RandResizedCropd,
    RandSharpness,
    RandSharpnessd,
    StrongAugmentd,
    strong_views_transform,
)

SIZE = (48, 40)


def _image(c: int, h: int = 60, w: int = 52, seed: int = 0) -> torch.Tensor:
    """Structured test image in [0.1, 0.8]: gradient + disc + texture; colourful for C=3."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    disc = (((yy - 0.45) ** 2 + (xx - 0.55) ** 2) < 0.06).float()
    chans = []
    for k in range(c):
        base = 0.3 * ((xx + k * yy) % 1.0) + 0.3 * disc + 0.1 * torch.rand(h, w, generator=g)
        chans.append(0.1 + base)
    return torch.stack(chans).clamp(0.1, 0.8).float()


def _views(t, x, seed):
    t.set_random_state(seed=seed)
    out = t({"image": x, "label": 3})
    return [torch.as_tensor(out[k]).clone() for k in ("view1", "view2", "view3")]


# ------------------------------------------------------------------------------------------ seeding
def test_same_seed_same_views_different_seed_different_views():
    x = _image(1)
    t = strong_views_transform(SIZE)
    a, b = _views(t, x, 7), _views(t, x, 7)
    for va, vb in zip(a, b):
        assert torch.equal(va, vb)
    c = _views(strong_views_transform(SIZE), x, 8)  # a fresh instance, other seed
    assert any(not torch.allclose(va, vc) for va, vc in zip(a, c))
    # seeding propagates through an outer Compose (as MONAI's DataLoader worker seeding does)
    outer1, outer2 = Compose([strong_views_transform(SIZE)]), Compose([strong_views_transform(SIZE)])
    outer1.set_random_state(seed=3)
    outer2.set_random_state(seed=3)
    o1, o2 = outer1({"image": x}), outer2({"image": x})
    assert all(torch.equal(o1[k], o2[k]) for k in ("view1", "view2", "view3"))


# ------------------------------------------------------------------------------------------ shape / dtype / range
@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("as_numpy", [False, True])
def test_strong_augment_shape_dtype_range(c, as_numpy):
    t = StrongAugmentd("image", SIZE, num_ops=(3, 7))
    t.set_random_state(seed=c)
    x = _image(c, 70, 50)
    src = x.numpy() if as_numpy else x
    for _ in range(12):
        out = t({"image": src, "id": "a"})
        y = out["image"]
        assert isinstance(y, torch.Tensor)
        assert tuple(y.shape) == (c, *SIZE)
        assert y.dtype == torch.float32
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
        assert out["id"] == "a"
    assert torch.equal(torch.as_tensor(src), x)  # input untouched


def test_same_instance_handles_grey_and_rgb_and_crop_prob_zero():
    t = StrongAugmentd("image", 32, num_ops=7, crop_prob=0.0)
    t.set_random_state(seed=0)
    for c in (1, 3, 1):
        y = t({"image": _image(c)})["image"]
        assert tuple(y.shape) == (c, 32, 32)


def test_num_ops_none_mode_and_argument_checks():
    t = StrongAugmentd("image", 32, num_ops=None, probs={"pnp": 1.0}, ops=("pnp", "equalize"))
    t.set_random_state(seed=0)
    assert set(t.ops) == {"pnp", "equalize"}
    assert t.ops["pnp"].prob == 1.0 and t.ops["equalize"].prob == 0.5
    assert tuple(t({"image": _image(1)})["image"].shape) == (1, 32, 32)
    StrongAugmentd("image", 32, weights={"pnp": 3.0})  # valid
    with pytest.raises(ValueError):
        StrongAugmentd("image", 32, ops=("flip",))
    with pytest.raises(ValueError):
        StrongAugmentd("image", 32, probs={"flip": 1.0})
    assert len(ALL_OP_NAMES) == 8 and set(ALL_OP_NAMES) == {"crop", *OP_NAMES}


# ------------------------------------------------------------------------------------------ grey scale
def test_colour_jitter_on_grey_is_brightness_contrast_only():
    x = _image(1)
    strong = RandColorJitter(brightness=0.4, contrast=0.4, saturation=0.9, hue=0.5)
    plain = RandColorJitter(brightness=0.4, contrast=0.4, saturation=0.0, hue=0.0)
    for seed in range(5):
        strong.set_random_state(seed=seed)
        plain.set_random_state(seed=seed)
        a, b = strong(x), plain(x)
        assert a.shape == x.shape
        assert torch.allclose(a, b)
    assert not torch.allclose(a, x)
    # the dictionary version and StrongAugmentd keep C=1
    d = RandColorJitterd("image", saturation=0.9, hue=0.5)
    d.set_random_state(seed=0)
    assert d({"image": x})["image"].shape == x.shape
    t = StrongAugmentd("image", SIZE, ops=("color_jitter",), num_ops=1)
    t.set_random_state(seed=0)
    assert t({"image": x})["image"].shape == (1, *SIZE)


def test_colour_jitter_never_colours_a_grey_rgb_image():
    grey = _image(1).repeat(3, 1, 1)
    j = RandColorJitter(brightness=0.0, contrast=0.0, saturation=0.9, hue=0.5)
    j.set_random_state(seed=1)
    for _ in range(5):
        y = j(grey)
        assert torch.allclose(y[0], y[1], atol=1e-5) and torch.allclose(y[1], y[2], atol=1e-5)
    rgb = _image(3)
    assert not torch.allclose(j(rgb), rgb, atol=1e-3)


# ------------------------------------------------------------------------------------------ PNP
@pytest.mark.parametrize("lam", [100.0, 400.0])
def test_pnp_noise_level_is_poisson(lam):
    x = torch.full((1, 256, 256), 0.5)
    t = RandPoissonNoise(lam_range=(lam, lam))
    t.set_random_state(seed=0)
    y = t(x)
    expected_std = math.sqrt(0.5 * lam) / lam
    assert abs(float(y.std()) - expected_std) < 0.1 * expected_std
    assert abs(float(y.mean()) - 0.5) < 0.01
    assert y.dtype == torch.float32 and float(y.min()) >= 0 and float(y.max()) <= 1
    # counts are integers: values on the 1/lam grid
    assert torch.allclose(y * lam, (y * lam).round(), atol=1e-3)


def test_pnp_photon_level_log_uniform_and_seeded():
    t = RandPoissonNoise(lam_range=(50.0, 1000.0))
    t.set_random_state(seed=0)
    lams = []
    for _ in range(200):
        t.randomize()
        lams.append(t.lam)
    lams = np.log(np.asarray(lams))
    assert lams.min() >= math.log(50) and lams.max() <= math.log(1000)
    assert abs(np.median(lams) - 0.5 * (math.log(50) + math.log(1000))) < 0.4  # log-uniform, not uniform
    d1, d2 = RandPoissonNoised("image"), RandPoissonNoised("image")
    d1.set_random_state(seed=5)
    d2.set_random_state(seed=5)
    x = _image(3)
    assert torch.equal(d1({"image": x})["image"], d2({"image": x})["image"])
    assert not torch.equal(d1({"image": x})["image"], d2({"image": x * 0.9})["image"])


# ------------------------------------------------------------------------------------------ the 8 operations
@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("name", list(OP_NAMES))
def test_each_operation_changes_the_image(name, c):
    x = _image(c)
    t = StrongAugmentd("image", SIZE)
    op = t.ops[name]
    op.set_random_state(seed=2)
    y = op({"image": x})["image"]
    assert tuple(y.shape) == tuple(x.shape) and y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert float((torch.as_tensor(y) - x).abs().mean()) > 1e-3, name


@pytest.mark.parametrize("c", [1, 3])
def test_random_resized_crop_changes_the_image(c):
    x = _image(c, 64, 64)
    crop = RandResizedCropd("image", 64)
    crop.set_random_state(seed=0)
    y = crop({"image": x})["image"]
    assert tuple(y.shape) == (c, 64, 64) and y.dtype == torch.float32
    assert float((y - x).abs().mean()) > 5e-3
    # identity case: full-area square crop of a square image of the output size
    full = RandResizedCropd("image", 64, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.allclose(full({"image": x})["image"], x)
    assert len(ALL_OP_NAMES) == len(OP_NAMES) + 1


def test_identity_cases():
    x = _image(3)
    stretched = AutoContrast()(x)
    assert torch.allclose(stretched.amin(dim=(1, 2)), torch.zeros(3)) and torch.allclose(
        stretched.amax(dim=(1, 2)), torch.ones(3)
    )
    assert torch.allclose(AutoContrast()(stretched), stretched, atol=1e-6)  # already stretched: identity
    const = torch.full((1, 16, 16), 0.3)
    assert torch.allclose(AutoContrast()(const), const) and torch.allclose(Equalize()(const), const)
    ramp = torch.linspace(0, 1, 256 * 64).reshape(1, 128, 128)  # flat histogram: equalize ~ identity
    assert float((Equalize()(ramp) - ramp).abs().max()) < 5e-3
    s = RandSharpness(factor_range=(1.0, 1.0))
    assert torch.allclose(s(x), x, atol=1e-6)
    j = RandColorJitter(0.0, 0.0, 0.0, 0.0)
    assert torch.allclose(j(x), x, atol=1e-6)
    b = RandBrightnessd("image", factor_range=(1.0, 1.0))
    assert torch.allclose(b({"image": x})["image"], x)
    p = RandPoissonNoise(lam_range=(1e7, 1e7))
    assert float((p(x) - x).abs().max()) < 5e-3
    for off in (
        RandAutoContrastd("image", prob=0.0),
        RandEqualized("image", prob=0.0),
        RandSharpnessd("image", prob=0.0),
    ):
        assert torch.equal(off({"image": x})["image"], x)


def test_equalize_matches_monai_histogram_normalize_per_channel():
    x = _image(3)
    x[1] = x[1] ** 3
    y = Equalize()(x)
    for ch in range(3):
        ref = torch.as_tensor(HistogramNormalize(num_bins=256, min=0, max=1)(x[ch : ch + 1]))
        assert torch.allclose(y[ch : ch + 1], ref, atol=1e-5)


def test_sharpness_blurs_and_sharpens():
    x = _image(1)
    grad = lambda im: float(im[:, 1:-1, 1:].sub(im[:, 1:-1, :-1]).abs().mean())  # noqa: E731
    blur, sharp = RandSharpness((0.0, 0.0))(x), RandSharpness((2.0, 2.0))(x)
    assert grad(blur) < grad(x) < grad(sharp)
    assert torch.equal(blur[:, 0], x[:, 0])  # PIL keeps the border


def test_array_transforms_keep_numpy_and_meta():
    xn = _image(1).numpy()
    for t in (AutoContrast(), Equalize(), RandSharpness(), RandColorJitter(), RandPoissonNoise(), RandResizedCrop(20)):
        out = t(xn)
        assert isinstance(out, np.ndarray) and out.dtype == np.float32
    m = MetaTensor(_image(1), meta={"filename_or_obj": "a.png"})
    out = RandPoissonNoise()(m)
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "a.png"


def test_random_resized_crop_updates_affine_and_shares_box_across_keys():
    h, w = 64, 80
    cols = torch.arange(w, dtype=torch.float32).expand(h, w)
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    img = MetaTensor(torch.stack([rows, cols]))  # each pixel holds its own (row, col)
    label = MetaTensor((torch.stack([rows]) > 30).float())
    t = RandResizedCropd(("image", "label"), (96, 96), scale=(0.1, 0.3), mode=("bilinear", "nearest"), dtype=None)
    t.set_random_state(seed=4)
    out = t({"image": img, "label": label})
    y, lab = out["image"], out["label"]
    assert tuple(y.shape) == (2, 96, 96) and tuple(lab.shape) == (1, 96, 96)
    assert set(torch.unique(lab).tolist()) <= {0.0, 1.0}
    u, v = 40, 50  # an interior output pixel: its value is the input position it maps to
    pos = y.affine.float() @ torch.tensor([u, v, 0.0, 1.0])
    assert torch.allclose(pos[:2], y[:, u, v], atol=1e-3)
    # the label was cropped with the same box
    assert torch.equal(lab[0] > 0.5, y[0] > 30) or float(((lab[0] > 0.5) != (y[0] > 30)).float().mean()) < 0.05


# ------------------------------------------------------------------------------------------ multi-view
def test_multiview_keys_distinct_views_and_untouched_input():
    x = MetaTensor(_image(1))
    n_ops_before = len(x.applied_operations)
    mv = MultiViewd("image", StrongAugmentd("image", SIZE), num_views=3)
    mv.set_random_state(seed=0)
    out = mv({"image": x, "label": 1, "name": "x.png"})
    assert set(out) == {"image", "label", "name", "view1", "view2", "view3"}
    assert out["label"] == 1 and out["name"] == "x.png" and out["image"] is x
    views = [out[k] for k in ("view1", "view2", "view3")]
    for i in range(3):
        assert tuple(views[i].shape) == (1, *SIZE)
        for j in range(i + 1, 3):
            assert not torch.allclose(views[i], views[j])
    assert len(x.applied_operations) == n_ops_before and torch.equal(x, _image(1))
    dropped = MultiViewd("image", StrongAugmentd("image", SIZE), num_views=2, view_keys=("q", "k"), drop_original=True)
    out2 = dropped({"image": x, "label": 1})
    assert set(out2) == {"q", "k", "label"}
    with pytest.raises(ValueError):
        MultiViewd("image", StrongAugmentd("image", SIZE), num_views=2, view_keys=("a", "a"))


def test_strong_views_collate_in_dataloader():
    data = [{"image": _image(1, seed=i), "label": i} for i in range(4)]
    ds = Dataset(data, transform=strong_views_transform(32))
    batch = next(iter(DataLoader(ds, batch_size=4, num_workers=0)))
    assert set(batch) == {"view1", "view2", "view3", "label"}
    for k in ("view1", "view2", "view3"):
        assert tuple(batch[k].shape) == (4, 1, 32, 32) and batch[k].dtype == torch.float32
