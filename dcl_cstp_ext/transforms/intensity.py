"""Intensity operations of the DCL-CsTP strong augmentation (METHOD.md, Stage 2).

Inputs are channel-first ``(C, H, W)`` images, ``C = 1`` (grey X-ray) or ``C = 3`` (RGB), intensities in ``[0, 1]``.
Every operation returns float32, keeps the shape and clips to ``[0, 1]``.

What MONAI already has is used (brightness is :class:`monai.transforms.RandScaleIntensityd`); the rest is written
here because MONAI lacks it or its version does not fit:

* :class:`AutoContrast` - MONAI's ``ScaleIntensity(channel_wise=True)`` maps a constant channel to 0; PIL's
  autocontrast (and this one) leaves it unchanged;
* :class:`Equalize` - the same mapping as MONAI's ``HistogramNormalize`` (``np.interp`` of the normalised CDF at
  the bin centres), but per channel like PIL's ``ImageOps.equalize`` (MONAI flattens all channels together), in
  torch (no numpy round trip) and leaving constant channels unchanged (MONAI maps them to 0);
* :class:`RandSharpness` - PIL ``ImageEnhance.Sharpness``: blend with a smoothed image by a random factor
  (``< 1`` blurs, ``> 1`` sharpens). MONAI's ``RandGaussianSharpen`` only sharpens and costs two Gaussian filters;
* colour jitter (:mod:`.color_jitter`) and the Poisson noise perturbation (:mod:`.poisson_noise`) live in modules
  of their own.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import get_track_meta
from monai.transforms import MapTransform, RandomizableTransform, RandScaleIntensityd, Transform
from monai.utils import TransformBackends, convert_to_tensor

from ._base import RandArrayWrapd, check_image, like_input, to_float_tensor

__all__ = [
    "ClipIntensity",
    "ClipIntensityd",
    "AutoContrast",
    "RandAutoContrastd",
    "Equalize",
    "RandEqualized",
    "RandSharpness",
    "RandSharpnessd",
    "RandBrightnessd",
    "LUMA",
    "rgb_to_grey",
]

_EPS = 1e-6
# ITU-R 601 luma weights, as torchvision's rgb_to_grayscale and PIL's "L" conversion
LUMA = (0.299, 0.587, 0.114)


def rgb_to_grey(img: torch.Tensor) -> torch.Tensor:
    """Luma of an RGB ``(3, H, W)`` tensor, shape ``(1, H, W)``."""
    r, g, b = img.unbind(0)
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b).unsqueeze(0)


# --------------------------------------------------------------------------------------------------- clip
class ClipIntensity(Transform):
    """Clip intensities to ``[minv, maxv]`` (default ``[0, 1]``) and cast to float32."""

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, minv: float = 0.0, maxv: float = 1.0) -> None:
        self.minv, self.maxv = minv, maxv

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        return like_input(to_float_tensor(img).clamp(self.minv, self.maxv), img)


class ClipIntensityd(MapTransform):
    """Dictionary version of :class:`ClipIntensity`."""

    backend = ClipIntensity.backend

    def __init__(self, keys: KeysCollection, minv: float = 0.0, maxv: float = 1.0, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.clipper = ClipIntensity(minv, maxv)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.clipper(convert_to_tensor(d[key], track_meta=get_track_meta()))
        return d


class _RandDeterministicd(RandomizableTransform, MapTransform):
    """Apply a deterministic array transform ``self.op`` to all keys with probability ``prob``."""

    op: Transform

    def __init__(self, keys: KeysCollection, prob: float, allow_missing_keys: bool) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.randomize(None)
        for key in self.key_iterator(d):
            d[key] = convert_to_tensor(d[key], track_meta=get_track_meta())
            if self._do_transform:
                d[key] = self.op(d[key])
        return d


# --------------------------------------------------------------------------------------------------- autocontrast
class AutoContrast(Transform):
    """Per-channel min-max stretch to ``[0, 1]`` (PIL ``ImageOps.autocontrast`` with no cut-off).

    A channel whose range is below ``eps`` is left unchanged; an image already spanning ``[0, 1]`` is unchanged.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, eps: float = _EPS) -> None:
        self.eps = eps

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        x = to_float_tensor(img)
        flat = x.reshape(x.shape[0], -1)
        lo, hi = flat.aminmax(dim=1)
        rng = hi - lo
        ok = rng > self.eps
        scale = torch.where(ok, 1.0 / rng.clamp_min(self.eps), torch.ones_like(rng))
        shift = torch.where(ok, lo, torch.zeros_like(lo))
        shape = (-1,) + (1,) * (x.ndim - 1)
        out = ((x - shift.view(shape)) * scale.view(shape)).clamp_(0.0, 1.0)
        return like_input(out, img)


class RandAutoContrastd(_RandDeterministicd):
    """Apply :class:`AutoContrast` to ``keys`` with probability ``prob``."""

    backend = AutoContrast.backend

    def __init__(self, keys: KeysCollection, prob: float = 1.0, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, prob, allow_missing_keys)
        self.op = AutoContrast()


# --------------------------------------------------------------------------------------------------- equalize
class Equalize(Transform):
    """Per-channel histogram equalisation to ``[0, 1]``.

    Same mapping as MONAI's :class:`monai.transforms.HistogramNormalize` (``num_bins`` bins over the channel's
    ``[min, max]``, cumulative histogram rescaled to ``[0, 1]`` and linearly interpolated at the bin centres),
    computed per channel in torch. Constant channels are left unchanged.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, num_bins: int = 256, eps: float = _EPS) -> None:
        self.num_bins = int(num_bins)
        self.eps = eps

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        x = to_float_tensor(img)
        c = x.shape[0]
        nb = self.num_bins
        flat = x.reshape(c, -1)
        lo, hi = flat.aminmax(dim=1)
        rng = hi - lo
        ok = rng > self.eps
        # few full-size temporaries, updated in place: allocation (page faults) dominates the cost on CPU
        t = (flat - lo.unsqueeze(1)).mul_((nb / rng.clamp_min(self.eps)).unsqueeze(1))  # bin units, in [0, nb]
        idx = t.long().clamp_(0, nb - 1)
        idx += torch.arange(0, c * nb, nb, device=x.device).unsqueeze(1)
        hist = torch.bincount(idx.view(-1), minlength=c * nb).view(c, nb).to(torch.float32)
        cdf = hist.cumsum_(1)
        cdf = (cdf - cdf[:, :1]) / (cdf[:, -1:] - cdf[:, :1]).clamp_min(1.0)
        # np.interp(x, bin_centres, cdf): centres at (j + 0.5) bins, constant extrapolation outside;
        # the last value is repeated so that i0 + 1 needs no clamp
        lut = torch.cat([cdf, cdf[:, -1:]], dim=1).reshape(-1)
        t.sub_(0.5).clamp_(0.0, nb - 1.0)
        pos = idx.copy_(t)  # floor (t >= 0), reusing the index buffer
        pos += torch.arange(0, c * (nb + 1), nb + 1, device=x.device).unsqueeze(1)
        out = torch.take(lut, pos)
        upper = torch.take(lut, pos.add_(1))
        out.lerp_(upper, t.frac_())
        out = torch.where(ok.unsqueeze(1), out, flat).clamp_(0.0, 1.0).view(x.shape)
        return like_input(out, img)


class RandEqualized(_RandDeterministicd):
    """Apply :class:`Equalize` to ``keys`` with probability ``prob``."""

    backend = Equalize.backend

    def __init__(self, keys: KeysCollection, prob: float = 1.0, num_bins: int = 256, allow_missing_keys: bool = False):
        super().__init__(keys, prob, allow_missing_keys)
        self.op = Equalize(num_bins=num_bins)


# --------------------------------------------------------------------------------------------------- sharpness
class RandSharpness(RandomizableTransform):
    """PIL-style sharpness: ``out = blur + f * (img - blur)`` with ``f ~ U(factor_range)``.

    ``blur`` is PIL's 3x3 ``SMOOTH`` filter (``[[1,1,1],[1,5,1],[1,1,1]] / 13``) with the one-pixel border kept,
    as in ``PIL.ImageEnhance.Sharpness``: ``f = 0`` gives the smoothed image, ``f = 1`` the input, ``f = 2`` an
    unsharp-masked one. Result clipped to ``[0, 1]``.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, factor_range: Sequence[float] = (0.1, 1.9), prob: float = 1.0) -> None:
        RandomizableTransform.__init__(self, prob)
        self.factor_range = (float(factor_range[0]), float(factor_range[1]))
        self.factor = 1.0

    def randomize(self, data=None) -> None:
        super().randomize(None)
        if self._do_transform:
            self.factor = float(self.R.uniform(*self.factor_range))

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        x = to_float_tensor(img)
        check_image(x, "RandSharpness")
        if min(x.shape[-2:]) < 3:
            return like_input(x, img)
        # SMOOTH = (3x3 box sum + 4 * centre) / 13, as two separable 3-tap sums on shifted slices (fast on CPU)
        rows = x[:, :, :-2] + x[:, :, 1:-1] + x[:, :, 2:]
        box = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]
        blur = x.clone()
        blur[:, 1:-1, 1:-1] = (box + 4.0 * x[:, 1:-1, 1:-1]) / 13.0
        out = torch.lerp(blur, x, self.factor).clamp_(0.0, 1.0)
        return like_input(out, img)


class RandSharpnessd(RandArrayWrapd):
    """Dictionary version of :class:`RandSharpness`."""

    backend = RandSharpness.backend

    def __init__(
        self,
        keys: KeysCollection,
        factor_range: Sequence[float] = (0.1, 1.9),
        prob: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, RandSharpness(factor_range, prob=1.0), prob, allow_missing_keys)


# --------------------------------------------------------------------------------------------------- brightness
class RandBrightnessd(RandScaleIntensityd):
    """Multiplicative brightness ``v * f``, ``f ~ U(factor_range)``, then clip to ``[0, 1]``.

    MONAI's :class:`monai.transforms.RandScaleIntensityd` (``v * (1 + factor)``) with the range written as the
    multiplicative factor, plus the clip.
    """

    def __init__(
        self,
        keys: KeysCollection,
        factor_range: Sequence[float] = (0.6, 1.4),
        prob: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        lo, hi = float(factor_range[0]), float(factor_range[1])
        super().__init__(
            keys, factors=(lo - 1.0, hi - 1.0), prob=prob, dtype=np.float32, allow_missing_keys=allow_missing_keys
        )

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = super().__call__(data)
        for key in self.key_iterator(d):
            d[key] = d[key].clamp(0.0, 1.0)
        return d
