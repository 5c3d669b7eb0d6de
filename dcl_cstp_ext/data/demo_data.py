"""Built-in demo data: small procedurally generated sets in the official COVID-19 Radiography, ISIC 2018 and
Kvasir-SEG layouts, deterministic from a seed (byte-identical files), a few MB, a few seconds on 2 cores.

They exercise the whole pipeline (readers, validation, resizing, JPEG masks, training) without real data;
they are not a benchmark. Each image draws from its own generator seeded by ``(seed, set, index)``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from .covid_radiography import COVID_CLASSES, COVID_FOLDER
from .isic2018 import isic_folders
from .kvasir_seg import KVASIR_FOLDER

__all__ = ["DEMO_MARKER", "make_cxr_image", "make_demo_data", "make_polyp_pair", "make_skin_lesion_pair"]

DEMO_MARKER = ".dcl_cstp_demo.json"
_SUBDIRS = {"covid_radiography": "covid_radiography", "isic2018": "isic2018", "kvasir_seg": "kvasir-seg"}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40, 40)))


def _noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise of unit standard deviation."""
    n = gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap") if sigma > 0 else rng.standard_normal(shape)
    return n / (n.std() + 1e-8)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) coordinates, y in [-1, 1] downwards, x scaled by the same unit (aspect kept)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    unit = (h - 1) / 2
    return (y - (h - 1) / 2) / unit, (x - (w - 1) / 2) / unit


def _wobbly_radius(rng: np.random.Generator, theta: np.ndarray, r0: float, amp: float, orders: int = 6) -> np.ndarray:
    r = np.ones_like(theta)
    for k in range(2, orders + 1):
        r += rng.uniform(0, amp) / np.sqrt(k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return r0 * r


def _to_u8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


def make_cxr_image(rng: np.random.Generator, label: int, size: int = 128) -> np.ndarray:
    """A chest-X-ray-like grey (H, W) uint8 image of class ``label`` in :data:`COVID_CLASSES` order:
    thorax with two lung fields, heart, spine and ribs; COVID: bilateral peripheral ground-glass opacities;
    Lung_Opacity: a focal / lobar consolidation; Normal: clear lungs; Viral Pneumonia: patchy interstitial
    (reticular, perihilar) pattern. Severity, pose, contrast, blur and noise vary, and findings overlap."""
    y, x = _grid(size, size)
    s = rng.uniform(0.92, 1.06)
    y, x = (y - rng.normal(0, 0.03)) / s, (x - rng.normal(0, 0.03)) / s
    body = _sigmoid((1 - (x / rng.uniform(0.8, 0.9)) ** 2 - ((y - 0.1) / 1.05) ** 2) * 12)
    img = 0.06 + 0.5 * body
    lungs = np.zeros_like(x)
    centres = []
    for side in (-1, 1):
        lx, ly = side * rng.uniform(0.32, 0.40), rng.uniform(-0.03, 0.08)
        rx, ry = rng.uniform(0.23, 0.30), rng.uniform(0.50, 0.62)
        centres.append((lx, ly, rx, ry))
        lungs = np.maximum(lungs, _sigmoid((1 - ((x - lx) / rx) ** 2 - ((y - ly) / ry) ** 2) * rng.uniform(6, 12)))
    heart = np.exp(-(((x - rng.uniform(0.05, 0.15)) / 0.22) ** 2 + ((y - 0.33) / 0.2) ** 2) * 2)
    lungs = lungs * (1 - 0.8 * heart)
    img = img - 0.32 * lungs + 0.12 * heart + 0.08 * np.exp(-((x / 0.1) ** 2)) * body
    bend = (y - rng.uniform(0.2, 0.45) * x**2 - 0.1 * np.abs(x)) * rng.uniform(4.5, 6.0)
    ribs = (0.5 + 0.5 * np.cos(2 * np.pi * (bend + rng.uniform(0, 1)))) ** 4 * (0.6 + 0.4 * np.abs(x))
    vessels = np.abs(_noise(rng, x.shape, 1.2)) * np.exp(-(((np.abs(x) - 0.18) / 0.25) ** 2))
    img += (0.06 * ribs + 0.03 * vessels) * lungs
    sev = rng.uniform(0.25, 1.0)
    name = COVID_CLASSES[label]
    if name == "COVID":  # bilateral, peripheral, lower-zone ground glass
        periph = np.zeros_like(x)
        for lx, ly, rx, ry in centres:
            d = np.sqrt(((x - lx) / rx) ** 2 + ((y - ly) / ry) ** 2)
            periph = np.maximum(periph, np.clip(d, 0, 1) ** 1.5 * _sigmoid((y - ly + 0.2) * 6))
        patches = np.clip(_noise(rng, x.shape, size / 18) + 0.3, 0, None)
        img += 0.16 * sev * patches * periph * lungs
    elif name == "Lung_Opacity":  # one or two dense focal / lobar consolidations, mostly one side
        lx, ly, rx, ry = centres[rng.integers(2)]
        for _ in range(rng.integers(1, 3)):
            bx, by, r = lx + rng.uniform(-0.5, 0.5) * rx, ly + rng.uniform(-0.2, 0.7) * ry, rng.uniform(0.1, 0.22)
            blob = np.exp(-((((x - bx) ** 2 + (y - by) ** 2) / r**2) ** 1.5))
            img += 0.3 * sev * blob * (1 + 0.3 * _noise(rng, x.shape, 2)) * lungs
    elif name == "Viral Pneumonia":  # reticular streaks, bilateral, perihilar
        streaks = np.exp(-((_noise(rng, x.shape, 1.3) / 0.35) ** 2))
        perihilar = np.exp(-(((np.abs(x) - 0.2) / 0.3) ** 2 + ((y - 0.05) / 0.5) ** 2))
        img += 0.14 * sev * streaks * perihilar * lungs + 0.04 * sev * perihilar * lungs
    if rng.random() < 0.25:  # incidental faint nodule in any class
        bx, by = rng.uniform(-0.5, 0.5), rng.uniform(-0.3, 0.5)
        img += 0.08 * np.exp(-((x - bx) ** 2 + (y - by) ** 2) / 0.004) * lungs
    img = gaussian_filter(img, rng.uniform(0.3, 1.3))
    img = (img - img.min()) / (np.ptp(img) + 1e-8)
    img = np.clip(img * rng.uniform(0.8, 1.1) + rng.uniform(-0.05, 0.08), 0, 1) ** rng.uniform(0.8, 1.25)
    return _to_u8(img + rng.normal(0, rng.uniform(0.01, 0.04), img.shape))


def _hairs(rng: np.random.Generator, y: np.ndarray, x: np.ndarray, n: int) -> np.ndarray:
    """Darkening factor (1 = none) of ``n`` thin curved hairs (quadratic Bezier curves)."""
    shade = np.ones_like(x)
    t = np.linspace(0, 1, 160)[:, None]
    pts_y, pts_x = y.reshape(-1), x.reshape(-1)
    for _ in range(n):
        p = rng.uniform(-1.3, 1.3, size=(3, 2)) * [1.0, x.max()]
        curve = (1 - t) ** 2 * p[0] + 2 * (1 - t) * t * p[1] + t**2 * p[2]
        d2 = (pts_y[None] - curve[:, :1]) ** 2 + (pts_x[None] - curve[:, 1:]) ** 2
        width = rng.uniform(0.015, 0.03)
        shade *= 1 - rng.uniform(0.4, 0.8) * np.exp(-d2.min(0) / width**2).reshape(x.shape)
    return shade


def make_skin_lesion_pair(rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A dermoscopy-like RGB (H, W, 3) uint8 image, W = ``size``, H = 3/4 W, and its 0/255 lesion mask:
    an irregular pigmented blob of varying contrast on a skin tone, with hairs, vignetting and blur."""
    h, w = int(round(size * 0.75)), size
    y, x = _grid(h, w)
    tone = rng.uniform()
    skin = (1 - tone) * np.array([0.93, 0.78, 0.70]) + tone * np.array([0.62, 0.42, 0.30])
    img = skin * (1 + 0.06 * _noise(rng, (h, w), size / 10)[..., None] + 0.015 * rng.standard_normal((h, w, 1)))
    ang = rng.uniform(0, np.pi)
    cy, cx = rng.normal(0, 0.15), rng.normal(0, 0.2)
    yr = (y - cy) * np.cos(ang) - (x - cx) * np.sin(ang)
    xr = ((y - cy) * np.sin(ang) + (x - cx) * np.cos(ang)) / rng.uniform(0.7, 1.35)
    r, theta = np.hypot(yr, xr), np.arctan2(yr, xr)
    edge = _wobbly_radius(rng, theta, rng.uniform(0.25, 0.65), rng.uniform(0.05, 0.3))
    alpha = _sigmoid((edge - r) / (rng.uniform(0.01, 0.05)))
    brown = np.array([0.42, 0.26, 0.17]) * rng.uniform(0.45, 1.1)
    core = np.clip(1 - r / edge, 0, 1) ** 0.7
    pigment = np.clip(rng.uniform(0.3, 1.0) * (0.6 + 0.4 * core + 0.25 * _noise(rng, (h, w), 2.0)), 0, 1)
    lesion = skin + (brown - skin) * pigment[..., None]
    img = img * (1 - alpha[..., None]) + lesion * alpha[..., None]
    img *= _hairs(rng, y, x, rng.poisson(2.5))[..., None]
    if rng.random() < 0.4:  # dark dermoscope corners
        img *= _sigmoid((rng.uniform(1.15, 1.5) - np.hypot(y, x * 0.8)) * 12)[..., None]
    img = gaussian_filter(img, (rng.uniform(0.2, 1.2),) * 2 + (0,))
    return _to_u8(img + rng.normal(0, 0.01, img.shape)), np.where(alpha > 0.5, 255, 0).astype(np.uint8)


def make_polyp_pair(rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """An endoscopy-like RGB (H, W, 3) uint8 image of varied size (W in [0.94, 1.25] x ``size``) and its
    0/255 polyp mask: pink mucosa with folds, vessels and vignetting, a rounded shaded polyp, highlights."""
    w = int(rng.integers(round(size * 0.94), round(size * 1.25) + 1))
    h = int(round(w * rng.uniform(0.82, 1.0)))
    y, x = _grid(h, w)
    base = np.array([0.86, 0.47, 0.40]) * rng.uniform(0.85, 1.1, 3)
    a = rng.uniform(0, np.pi)
    folds = np.sin((x * np.cos(a) + y * np.sin(a)) * rng.uniform(4, 9) + _noise(rng, (h, w), 6))
    vessels = np.exp(-((_noise(rng, (h, w), 3.0) / 0.12) ** 2))
    img = base * (1 + 0.08 * folds[..., None] + 0.05 * _noise(rng, (h, w), size / 8)[..., None])
    img *= 1 - 0.25 * vessels[..., None] * np.array([0.3, 1.0, 1.0])
    cy, cx = rng.uniform(-0.45, 0.45), rng.uniform(-0.5, 0.5) * x.max()
    ang = rng.uniform(0, np.pi)
    yr = (y - cy) * np.cos(ang) - (x - cx) * np.sin(ang)
    xr = ((y - cy) * np.sin(ang) + (x - cx) * np.cos(ang)) / rng.uniform(0.75, 1.3)
    r, theta = np.hypot(yr, xr), np.arctan2(yr, xr)
    edge = _wobbly_radius(rng, theta, rng.uniform(0.15, 0.5), 0.12, orders=4)
    alpha = _sigmoid((edge - r) / 0.015)
    dome = np.sqrt(np.clip(1 - (r / edge) ** 2, 0, 1))
    light = 1 + 0.35 * dome * np.clip(-(y - cy) / edge - 0.3 * (x - cx) / edge + 0.6, 0, 2)
    polyp = (base * rng.uniform(0.95, 1.15) + np.array([0.04, -0.03, -0.02])) * light[..., None]
    polyp *= 1 + 0.06 * _noise(rng, (h, w), 1.5)[..., None]
    img = img * (1 - alpha[..., None]) + polyp * alpha[..., None]
    spec = _sigmoid((_noise(rng, (h, w), 1.5) - rng.uniform(2.3, 3.0) + 0.8 * alpha * dome) * 6)
    img = img * (1 - spec[..., None]) + spec[..., None]
    img *= np.clip(1 - rng.uniform(0.4, 0.8) * (np.hypot(y, x) / np.hypot(1, x.max())) ** 2.5, 0, 1)[..., None]
    img *= (np.abs(y) + np.abs(x) < rng.uniform(1.5, 1.9) * max(1.0, x.max()))[..., None]  # octagonal scope
    img = gaussian_filter(img, (rng.uniform(0.3, 1.0),) * 2 + (0,))
    return _to_u8(img + rng.normal(0, 0.01, img.shape)), np.where(alpha > 0.5, 255, 0).astype(np.uint8)


def _save(arr: np.ndarray, path: Path, **kw: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw)


def make_demo_data(
    out: str | Path, seed: int = 0, n_cls_per_class: int = 40, n_seg: int = 60, size: int = 128
) -> dict[str, str]:
    """Write the three demo sets under ``out`` and return their roots (each a ``dataset_dir``):

    - ``covid_radiography``: ``covid_radiography/COVID-19_Radiography_Dataset/<class>/images/<class>-<i>.png``,
      ``n_cls_per_class`` grey ``size`` x ``size`` PNGs per class;
    - ``isic2018``: ``isic2018/ISIC2018_Task1-2_Training_Input/ISIC_<i>.jpg`` (``size`` x 3/4 ``size``) with
      ``ISIC2018_Task1_Training_GroundTruth/ISIC_<i>_segmentation.png``, ``n_seg`` pairs;
    - ``kvasir_seg``: ``kvasir-seg/Kvasir-SEG/{images,masks}/<id>.jpg`` (RGB JPEG masks), ``n_seg`` pairs.

    Same arguments give byte-identical files. An earlier demo output under ``out`` (marked by
    :data:`DEMO_MARKER`) is replaced; other existing folders of those names are never touched.
    """
    out = Path(out)
    roots = {k: out / v for k, v in _SUBDIRS.items()}
    marker = out / DEMO_MARKER
    params = {"seed": seed, "n_cls_per_class": n_cls_per_class, "n_seg": n_seg, "size": size}
    clashing = [str(p) for p in roots.values() if p.exists()]
    if clashing and not marker.is_file():
        raise FileExistsError(f"{clashing} exist and are not demo output ({marker} missing); choose another folder")
    for p in roots.values():
        shutil.rmtree(p, ignore_errors=True)

    covid = roots["covid_radiography"] / COVID_FOLDER
    for label, name in enumerate(COVID_CLASSES):
        for i in range(n_cls_per_class):
            rng = np.random.default_rng([seed, 0, label, i])
            _save(make_cxr_image(rng, label, size), covid / name / "images" / f"{name}-{i + 1}.png")
    in_dir, gt_dir = isic_folders(roots["isic2018"], "Training")
    kvasir = roots["kvasir_seg"] / KVASIR_FOLDER
    for i in range(n_seg):
        img, mask = make_skin_lesion_pair(np.random.default_rng([seed, 1, i]), size)
        _save(img, in_dir / f"ISIC_{i:07d}.jpg", quality=90)
        _save(mask, gt_dir / f"ISIC_{i:07d}_segmentation.png")
        img, mask = make_polyp_pair(np.random.default_rng([seed, 2, i]), size)
        _save(img, kvasir / "images" / f"demo{i:04d}.jpg", quality=90)
        _save(np.repeat(mask[..., None], 3, axis=2), kvasir / "masks" / f"demo{i:04d}.jpg", quality=90)
    (in_dir / "ATTRIBUTION.txt").write_text("Procedurally generated demo data (dcl_cstp_ext.data.demo_data).\n")
    marker.write_text(json.dumps(params) + "\n")
    return {k: str(v) for k, v in roots.items()}
