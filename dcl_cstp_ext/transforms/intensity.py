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
* :class:`RandColorJitter` - torchvision-style colour jitter without torchvision, grey-scale aware;
* :class:`RandPoissonNoise` - the Poisson noise perturbation (PNP) of the paper.
"""

from __future__ import annotations

import math
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
    "RandColorJitter",
    "RandColorJitterd",
    "RandPoissonNoise",
    "RandPoissonNoised",
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


# --------------------------------------------------------------------------------------------------- colour jitter
def _yiq_hue_matrix(theta: float) -> torch.Tensor:
    """3x3 RGB->RGB matrix rotating the chroma plane of YIQ by ``theta`` (luma and grey pixels unchanged)."""
    to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=np.float64)
    rot = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(theta), -math.sin(theta)], [0.0, math.sin(theta), math.cos(theta)]])
    return torch.as_tensor(np.linalg.inv(to_yiq) @ rot @ to_yiq, dtype=torch.float32)


class RandColorJitter(RandomizableTransform):
    """Colour jitter (torchvision ``ColorJitter`` semantics, random order of the four adjustments).

    * brightness: ``x * b``, ``b ~ U(max(0, 1 - brightness), 1 + brightness)``;
    * contrast: blend with the mean grey level, ``m + c (x - m)``, ``c ~ U(max(0, 1 - contrast), 1 + contrast)``;
    * saturation (RGB only): blend with the grey image, ``s ~ U(max(0, 1 - saturation), 1 + saturation)``;
    * hue (RGB only): rotation of the YIQ chroma plane by ``2 pi h``, ``h ~ U(-hue, hue)``, ``hue <= 0.5``
      (a linear approximation of torchvision's HSV hue shift: cheap, keeps luma, never colours a grey pixel).

    On an image with ``C != 3`` (grey X-ray) only brightness and contrast are applied: colour is never invented on
    a grey image. Grey/RGB is decided at call time from the channel count; the random draws do not depend on it.
    Each adjustment clips to ``[0, 1]``. A magnitude of 0 disables that adjustment.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.05,
        prob: float = 1.0,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {hue}.")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.factors = (1.0, 1.0, 1.0, 0.0)
        self.order: list[int] = [0, 1, 2, 3]

    def _factor(self, magnitude: float) -> float:
        return float(self.R.uniform(max(0.0, 1.0 - magnitude), 1.0 + magnitude))

    def randomize(self, data=None) -> None:
        super().randomize(None)
        if not self._do_transform:
            return
        b = self._factor(self.brightness)
        c = self._factor(self.contrast)
        s = self._factor(self.saturation)
        h = float(self.R.uniform(-self.hue, self.hue))
        self.factors = (b, c, s, h)
        self.order = [int(i) for i in self.R.permutation(4)]

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        x = to_float_tensor(img)
        check_image(x, "RandColorJitter")
        rgb = x.shape[0] == 3
        b, c, s, h = self.factors
        for op in self.order:
            if op == 0 and self.brightness > 0:
                x = (x * b).clamp_(0.0, 1.0)
            elif op == 1 and self.contrast > 0:
                mean = (rgb_to_grey(x) if rgb else x).mean()
                x = torch.lerp(mean.expand_as(x), x, c).clamp_(0.0, 1.0)
            elif op == 2 and rgb and self.saturation > 0:
                x = torch.lerp(rgb_to_grey(x).expand_as(x), x, s).clamp_(0.0, 1.0)
            elif op == 3 and rgb and self.hue > 0:
                m = _yiq_hue_matrix(2.0 * math.pi * h).to(x.device)
                x = torch.einsum("ij,jhw->ihw", m, x).clamp_(0.0, 1.0)
        return like_input(x, img)


class RandColorJitterd(RandArrayWrapd):
    """Dictionary version of :class:`RandColorJitter` (one draw shared by all keys)."""

    backend = RandColorJitter.backend

    def __init__(
        self,
        keys: KeysCollection,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.05,
        prob: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        xform = RandColorJitter(brightness, contrast, saturation, hue, prob=1.0)
        super().__init__(keys, xform, prob, allow_missing_keys)


# --------------------------------------------------------------------------------------------------- PNP
class RandPoissonNoise(RandomizableTransform):
    """Poisson noise perturbation (PNP).

    The intensity ``x`` in ``[0, 1]`` is read as the fraction of a photon count ``lam`` reached at full intensity;
    pixel counts are re-sampled, ``out = Poisson(x * lam) / lam``, then clipped to ``[0, 1]``. So ``E[out] = x`` and
    ``std(out) = sqrt(x / lam)``, a relative noise of ``1 / sqrt(x * lam)``: strong in dark regions and at low
    photon levels, as in a real detector. The photon level is drawn log-uniformly from ``lam_range`` on every call
    (``lam_range=(a, a)`` fixes it). Channels are perturbed independently.

    Sampling uses a ``numpy.random.Generator`` seeded from ``self.R`` (torch's generator for tensors not on the
    CPU), so ``set_random_state`` makes the noise reproducible.

    Args:
        lam_range: photon count at full intensity, ``(min, max)``; default ``(50, 1000)``: from clearly grainy
            (relative noise 20 % at mid-grey for 50) to mild (4.5 % at mid-grey for 1000).
        prob: probability of applying the perturbation.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, lam_range: Sequence[float] = (50.0, 1000.0), prob: float = 1.0) -> None:
        RandomizableTransform.__init__(self, prob)
        lo, hi = float(lam_range[0]), float(lam_range[1])
        if not 0 < lo <= hi:
            raise ValueError(f"lam_range must satisfy 0 < min <= max, got {lam_range}.")
        self.lam_range = (lo, hi)
        self.lam = lo
        self._rng = np.random.default_rng(0)

    def randomize(self, data=None) -> None:
        super().randomize(None)
        if not self._do_transform:
            return
        lo, hi = self.lam_range
        self.lam = float(math.exp(self.R.uniform(math.log(lo), math.log(hi)))) if hi > lo else lo
        # one generator per draw: successive keys of a dictionary get different (but reproducible) noise
        self._rng = np.random.default_rng(int(self.R.randint(2**31 - 1)))

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if randomize:
            self.randomize()
        if not self._do_transform:
            return img
        x = to_float_tensor(img)
        rate = x.clamp(0.0, 1.0) * self.lam
        if rate.device.type == "cpu":
            counts = torch.from_numpy(self._rng.poisson(rate.numpy()).astype(np.float32, copy=False))
        else:
            gen = torch.Generator(device=rate.device).manual_seed(int(self._rng.integers(2**63 - 1)))
            counts = torch.poisson(rate, generator=gen)
        out = (counts / self.lam).clamp_(0.0, 1.0)
        return like_input(out, img)


class RandPoissonNoised(RandArrayWrapd):
    """Dictionary version of :class:`RandPoissonNoise` (same photon level for all keys, independent noise)."""

    backend = RandPoissonNoise.backend

    def __init__(
        self,
        keys: KeysCollection,
        lam_range: Sequence[float] = (50.0, 1000.0),
        prob: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, RandPoissonNoise(lam_range, prob=1.0), prob, allow_missing_keys)
