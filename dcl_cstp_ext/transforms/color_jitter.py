"""Colour jitter without torchvision, grey-scale aware: brightness, contrast, saturation and hue (a YIQ rotation) in
random order, on (C, H, W) images in [0, 1] (C = 1 or 3)."""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import RandomizableTransform
from monai.utils import TransformBackends

from ._base import RandArrayWrapd, check_image, like_input, to_float_tensor
from .intensity import rgb_to_grey

__all__ = ["RandColorJitter", "RandColorJitterd"]


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
