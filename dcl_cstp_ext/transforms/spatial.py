"""Spatial operations of the DCL-CsTP strong augmentation: random resized crop (rotation is MONAI's ``RandRotated``).

MONAI has no exact ``RandomResizedCrop`` (``RandSpatialCrop`` + ``Resize`` draws side lengths, not an area fraction
and an aspect ratio), so :class:`RandResizedCrop` / :class:`RandResizedCropd` follow torchvision's algorithm.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor, get_track_meta
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import TransformBackends, convert_to_tensor, ensure_tuple_rep

from ._base import check_image, like_input, seed_child

__all__ = ["RandResizedCrop", "RandResizedCropd"]

_INTERP_MODES = ("bilinear", "bicubic", "nearest", "nearest-exact", "area")


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ValueError(f"spatial_size must be an int or (H, W), got {size}.")
    return size  # type: ignore[return-value]


class RandResizedCrop(RandomizableTransform):
    """Crop a random region of random area and aspect ratio, resize it to ``spatial_size`` (torchvision semantics).

    Up to ``max_attempts`` times, an area ``U(scale) * H * W`` and an aspect ratio (width / height) drawn
    log-uniformly from ``ratio`` are tried; the first box that fits is placed uniformly at random. If none fits,
    the largest central crop within ``ratio`` is used. When the transform does not fire (``prob < 1``) the whole
    image is resized, so the output size is always ``spatial_size``.

    Resizing uses ``torch.nn.functional.interpolate`` (``align_corners=False``; anti-aliased when shrinking with
    ``bilinear``/``bicubic`` and ``antialias=True``). A ``MetaTensor``'s affine is updated for the crop and scaling.

    Args:
        spatial_size: output ``(H, W)`` (or one int for a square).
        scale: range of the cropped area as a fraction of the image area.
        ratio: range of the aspect ratio (width / height) of the crop.
        mode: interpolation mode, one of ``bilinear``, ``bicubic``, ``nearest``, ``nearest-exact``, ``area``.
        antialias: anti-alias when down-sampling (bilinear/bicubic only).
        prob: probability of cropping (the resize always happens).
        dtype: output dtype; ``None`` keeps the input's.
        max_attempts: number of random boxes tried before the central fallback.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        spatial_size: int | Sequence[int],
        scale: Sequence[float] = (0.2, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        mode: str = "bilinear",
        antialias: bool = True,
        prob: float = 1.0,
        dtype: torch.dtype | None = torch.float32,
        max_attempts: int = 10,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        self.spatial_size = _pair(spatial_size)
        self.scale = (float(scale[0]), float(scale[1]))
        self.ratio = (float(ratio[0]), float(ratio[1]))
        if not (0 < self.scale[0] <= self.scale[1] <= 1.0):
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {scale}.")
        if not (0 < self.ratio[0] <= self.ratio[1]):
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {ratio}.")
        if mode not in _INTERP_MODES:
            raise ValueError(f"mode must be one of {_INTERP_MODES}, got {mode!r}.")
        self.mode = mode
        self.antialias = antialias
        self.dtype = dtype
        self.max_attempts = int(max_attempts)
        self.box: tuple[int, int, int, int] | None = None  # top, left, height, width

    def _sample_box(self, h: int, w: int) -> tuple[int, int, int, int]:
        area = h * w
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(self.max_attempts):
            target_area = area * self.R.uniform(*self.scale)
            aspect = math.exp(self.R.uniform(*log_ratio))
            cw = int(round(math.sqrt(target_area * aspect)))
            ch = int(round(math.sqrt(target_area / aspect)))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(self.R.randint(0, h - ch + 1))
                left = int(self.R.randint(0, w - cw + 1))
                return top, left, ch, cw
        in_ratio = w / h
        if in_ratio < self.ratio[0]:
            cw, ch = w, int(round(w / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            ch, cw = h, int(round(h * self.ratio[1]))
        else:
            cw, ch = w, h
        return (h - ch) // 2, (w - cw) // 2, ch, cw

    def randomize(self, img: NdarrayOrTensor) -> None:  # type: ignore[override]
        super().randomize(None)
        h, w = (int(s) for s in img.shape[-2:])
        self.box = self._sample_box(h, w) if self._do_transform else (0, 0, h, w)

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True, mode: str | None = None) -> NdarrayOrTensor:
        if randomize:
            self.randomize(img)
        if self.box is None:
            raise RuntimeError("call randomize() first.")
        x = convert_to_tensor(img, track_meta=False)
        check_image(x, "RandResizedCrop")
        top, left, ch, cw = self.box
        if top + ch > x.shape[-2] or left + cw > x.shape[-1]:
            raise ValueError(f"crop box {self.box} does not fit an image of shape {tuple(x.shape)}.")
        mode = mode or self.mode
        out_dtype = self.dtype if self.dtype is not None else x.dtype
        patch = x[:, top : top + ch, left : left + cw]
        oh, ow = self.spatial_size
        if (ch, cw) == (oh, ow):
            out = patch.to(out_dtype, copy=True)
        else:
            xf = patch.unsqueeze(0)
            if not xf.is_floating_point():
                xf = xf.float()
            kwargs = {}
            if mode in ("bilinear", "bicubic"):
                kwargs = {"align_corners": False, "antialias": self.antialias and (ch > oh or cw > ow)}
            out = F.interpolate(xf, size=(oh, ow), mode=mode, **kwargs).squeeze(0)
            if not out_dtype.is_floating_point:
                out = out.round()
            out = out.to(out_dtype)
        out = like_input(out, img, dtype=out_dtype)
        if isinstance(out, MetaTensor):
            out.affine = self._updated_affine(out.affine, top, left, ch / oh, cw / ow)
        return out

    @staticmethod
    def _updated_affine(affine: torch.Tensor, top: int, left: int, sy: float, sx: float) -> torch.Tensor:
        """``affine @ M`` with M mapping output voxels to input voxels (crop offset, ``align_corners=False``)."""
        r = affine.shape[-1] - 1
        m = torch.eye(r + 1, dtype=torch.float64)
        for i, (start, s) in enumerate(((top, sy), (left, sx))[:r]):
            m[i, i] = s
            m[i, r] = start + (s - 1.0) / 2.0
        return affine.to(torch.float64) @ m.to(affine.device)


class RandResizedCropd(RandomizableTransform, MapTransform):
    """Dictionary version of :class:`RandResizedCrop`: the same box for all keys (e.g. an image and its mask).

    ``mode`` may be a sequence, one per key (use ``"nearest"`` for label maps, with ``dtype=None`` to keep theirs).
    The crop always runs (it fixes the output size); ``prob`` is the probability of a random box rather than the
    whole image.
    """

    backend = RandResizedCrop.backend

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: int | Sequence[int],
        scale: Sequence[float] = (0.2, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        mode: str | Sequence[str] = "bilinear",
        antialias: bool = True,
        prob: float = 1.0,
        dtype: torch.dtype | None = torch.float32,
        max_attempts: int = 10,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, 1.0)
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.cropper = RandResizedCrop(spatial_size, scale, ratio, self.mode[0], antialias, prob, dtype, max_attempts)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        seed_child(self, self.cropper, seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        first_key = self.first_key(d)
        if first_key == ():
            return d
        self.cropper.randomize(d[first_key])
        for key, mode in self.key_iterator(d, self.mode):
            img = convert_to_tensor(d[key], track_meta=get_track_meta())
            d[key] = self.cropper(img, randomize=False, mode=mode)
        return d
