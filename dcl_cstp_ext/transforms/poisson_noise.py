"""The Poisson noise perturbation (PNP) of the paper's strong augmentation, on (C, H, W) images in [0, 1]."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import RandomizableTransform
from monai.utils import TransformBackends

from ._base import RandArrayWrapd, like_input, to_float_tensor

__all__ = ["RandPoissonNoise", "RandPoissonNoised"]


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
