"""2-D image preprocessing as MONAI transforms: load (PNG/JPEG, DICOM or NIfTI by extension, see
:mod:`dcl_cstp_ext.data.formats`), channel count, resize, [0, 1] scaling, masks.

The deterministic chains built here end before any random transform, so a MONAI ``CacheDataset`` (see
:func:`make_cached_dataset`) keeps their output and later epochs skip JPEG decoding and resizing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import CacheDataset, Dataset, MetaTensor, PersistentDataset
from monai.transforms import Compose, EnsureTyped, InvertibleTransform, MapTransform, Transform
from monai.utils import TraceKeys, ensure_tuple, ensure_tuple_rep

from ..transforms.intensity import LUMA
from .errors import DataError
from .formats import read_image

__all__ = [
    "BinarizeMaskd",
    "CheckSameSized",
    "LoadImage2D",
    "LoadImage2Dd",
    "Resize2Dd",
    "classification_preprocess",
    "crop_source_size",
    "load_image_transforms",
    "make_cached_dataset",
    "read_image",
    "resize_2d",
    "segmentation_preprocess",
    "to_channels",
    "unlabelled_preprocess",
]

_LUMA = np.array(LUMA, dtype=np.float32)  # ITU-R 601, as PIL's convert("L")


def to_channels(arr: np.ndarray, channels: int | None) -> np.ndarray:
    """Convert a (C, H, W) image to ``channels``: grey -> 3 by repeating, colour -> 1 by luminance."""
    if channels is None or arr.shape[0] == channels:
        return arr
    if channels == 3 and arr.shape[0] == 1:
        return np.repeat(arr, 3, axis=0)
    if channels == 1 and arr.shape[0] == 3:
        return np.tensordot(_LUMA, arr, axes=1)[None].astype(np.float32)
    raise ValueError(f"cannot convert {arr.shape[0]} channel(s) to {channels}")


class LoadImage2D(Transform):
    """Path -> channel-first float32 ``MetaTensor`` in [0, 1] (see :func:`read_image`) with ``channels``
    channels (``None``: as stored). ``meta["filename_or_obj"]`` and ``meta["spatial_shape"]`` (H, W) record
    the source, so that predictions can be mapped back to the original size."""

    def __init__(self, channels: int | None = None) -> None:
        self.channels = channels

    def __call__(self, path: str | Path) -> MetaTensor:
        try:
            arr = to_channels(read_image(path), self.channels)
        except OSError as exc:  # PIL: unreadable or truncated (DICOM / NIfTI readers raise DataError themselves)
            raise DataError(f"{path}: unreadable or truncated image ({exc})", [(str(path), str(exc))]) from exc
        meta = {"filename_or_obj": str(path), "spatial_shape": np.asarray(arr.shape[1:]), "original_channel_dim": 0}
        return MetaTensor(torch.from_numpy(arr), affine=torch.eye(3, dtype=torch.float64), meta=meta)


class LoadImage2Dd(MapTransform):
    """Dictionary version of :class:`LoadImage2D`; ``channels`` may be given per key."""

    def __init__(
        self, keys: KeysCollection, channels: int | None | Sequence[int | None] = None, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        chans = channels if isinstance(channels, Sequence) else ensure_tuple_rep(channels, len(self.keys))
        self.loaders = [LoadImage2D(c) for c in chans]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, loader in self.key_iterator(d, self.loaders):
            d[key] = loader(d[key])
        return d


class CheckSameSized(MapTransform):
    """Raise :class:`DataError` when the loaded images under ``keys`` differ in (H, W) (e.g. image and mask)."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        shapes = {key: tuple(d[key].shape[1:]) for key in self.key_iterator(d)}
        if len(set(shapes.values())) > 1:
            files = ", ".join(str(getattr(d[k], "meta", {}).get("filename_or_obj", k)) for k in shapes)
            raise DataError(f"{files}: sizes differ {shapes}", [(files, f"sizes differ {shapes}")])
        return d


class BinarizeMaskd(MapTransform):
    """Binarise masks in [0, 1] into a {0, 1} float32 (1, H, W) mask: ``max over channels >= threshold``.

    The default 0.5 on 8-bit data is the threshold at 128 of 255 that JPEG masks (Kvasir-SEG) need."""

    def __init__(self, keys: KeysCollection, threshold: float = 0.5, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.threshold = threshold

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = (d[key].amax(dim=0, keepdim=True) >= self.threshold).to(torch.float32)
        return d


def resize_2d(img: torch.Tensor, size: Sequence[int], mode: str = "bilinear") -> torch.Tensor:
    """Resize a (C, H, W) tensor to ``size`` (H, W): ``"bilinear"`` is anti-aliased when shrinking (as PIL),
    ``"nearest"`` is torch's ``nearest-exact`` (no half-pixel shift). Meta data of a ``MetaTensor`` is kept."""
    size = tuple(int(s) for s in size)
    if tuple(img.shape[1:]) == size:
        return img
    x = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)
    if mode == "bilinear":
        out = F.interpolate(x[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    elif mode == "nearest":
        out = F.interpolate(x[None].float(), size=size, mode="nearest-exact")[0]
    else:
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    if isinstance(img, MetaTensor):
        return MetaTensor(out, meta=img.meta, applied_operations=list(img.applied_operations))
    return out


class Resize2Dd(MapTransform, InvertibleTransform):
    """Resize 2-D images to ``spatial_size`` (int: square) with :func:`resize_2d`; invertible (``Invertd``)."""

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: int | Sequence[int],
        mode: str | Sequence[str] = "bilinear",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spatial_size = ensure_tuple_rep(spatial_size, 2) if isinstance(spatial_size, int) else tuple(spatial_size)
        self.mode = ensure_tuple_rep(mode, len(self.keys))

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, mode in self.key_iterator(d, self.mode):
            orig = tuple(d[key].shape[1:])
            d[key] = resize_2d(d[key], self.spatial_size, mode)
            if isinstance(d[key], MetaTensor):
                d[key] = self.push_transform(d[key], orig_size=orig, extra_info={"mode": mode})
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            op = self.pop_transform(d[key])
            d[key] = resize_2d(d[key], op[TraceKeys.ORIG_SIZE], op[TraceKeys.EXTRA_INFO]["mode"])
        return d


def load_image_transforms(
    keys: KeysCollection, image_size: int | Sequence[int] | None = 256, channels: int | None = 3, is_mask: bool = False
) -> list[Transform]:
    """Load + resize for images (``channels`` channels, anti-aliased bilinear) or, with ``is_mask``, masks
    ({0, 1} float32, 1 channel, threshold 0.5, nearest). ``image_size=None`` keeps the stored size."""
    keys = ensure_tuple(keys)
    xforms: list[Transform] = [LoadImage2Dd(keys, channels=1 if is_mask else channels)]
    if is_mask:
        xforms.append(BinarizeMaskd(keys))
    if image_size is not None:
        xforms.append(Resize2Dd(keys, image_size, mode="nearest" if is_mask else "bilinear"))
    return xforms


def segmentation_preprocess(
    image_size: int | Sequence[int] | None = 256, channels: int = 3, image_key: str = "image", label_key: str = "label"
) -> Compose:
    """Deterministic chain for ``{"image": path, "label": mask_path}`` items: image (C, S, S) in [0, 1] and
    mask (1, S, S) in {0, 1}, both float32; raises :class:`DataError` if image and mask sizes differ."""
    load = [LoadImage2Dd((image_key, label_key), channels=(channels, 1)), CheckSameSized((image_key, label_key))]
    rest = [BinarizeMaskd(label_key)]
    if image_size is not None:
        rest.append(Resize2Dd((image_key, label_key), image_size, mode=("bilinear", "nearest")))
    return Compose(load + rest)


def classification_preprocess(
    image_size: int | Sequence[int] | None = 256, channels: int = 3, image_key: str = "image", label_key: str = "label"
) -> Compose:
    """Deterministic chain for ``{"image": path, "label": int}`` items: image (C, S, S) float32 in [0, 1],
    label an int64 scalar tensor (other keys such as ``class_name`` pass through)."""
    label = EnsureTyped(label_key, data_type="tensor", dtype=torch.long, track_meta=False, allow_missing_keys=True)
    return Compose([*load_image_transforms(image_key, image_size, channels), label])


def unlabelled_preprocess(
    image_size: int | Sequence[int] | None = 256, channels: int = 3, image_key: str = "image"
) -> Compose:
    """Deterministic chain for ``{"image": path}`` items (pre-training): image (C, S, S) float32 in [0, 1]."""
    return Compose(load_image_transforms(image_key, image_size, channels))


def crop_source_size(image_size: int, factor: float = 2.0, cap: int = 512) -> int:
    """The side at which pre-training caches its images, ``min(factor x image_size, max(cap, image_size))``: the
    random resized crop then cuts its views from a picture with more detail than a view, instead of blowing up a
    region of an already-shrunk one (a median crop of 0.5 of the area is ``0.71 x`` the side: at 64 px cached, a
    45 px region shown at 64 px). 128 px views crop from 256 px; the paper's 256 px from 512 px."""
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    return int(min(round(factor * image_size), max(cap, image_size)))


def make_cached_dataset(
    data: Sequence[Mapping[str, Any]],
    transform: Callable | Sequence[Callable],
    cache_dir: str | Path | None = None,
    cache_rate: float = 1.0,
    num_workers: int | None = None,
    augment: Callable | Sequence[Callable] | None = None,
) -> Dataset:
    """Dataset that computes the deterministic part of ``transform`` (up to its first random transform)
    once: in memory (MONAI ``CacheDataset``, filled now with ``num_workers`` threads, ``cache_rate`` of the
    items) or, with ``cache_dir``, on disk (``PersistentDataset``). ``augment`` (random transforms) is
    appended and runs on every access. Nested ``Compose`` objects are flattened, since MONAI treats a
    ``Compose`` as random and would otherwise cache nothing.
    """
    xforms = list(Compose(transform).flatten().transforms)
    if augment is not None:
        xforms += list(Compose(augment).flatten().transforms)
    chain = Compose(xforms)
    if cache_dir is not None:
        return PersistentDataset(list(data), chain, cache_dir=Path(cache_dir))
    workers = num_workers or os.cpu_count() or 1
    return CacheDataset(list(data), chain, cache_rate=cache_rate, num_workers=workers, progress=False)
