"""``StrongAugmentd``: the strong augmentation of DCL-CsTP (METHOD.md, Stage 2).

A random combination of the paper's 8 operations: the random resized crop always runs first (it fixes the output
size), then a random subset of the other 7 in random order (MONAI's ``SomeOf``), each with its own random
magnitude, then a final clip to ``[0, 1]``. The same instance handles grey (C=1) and RGB (C=3) images; colour
jitter decides from the channel count at call time.

Timing: one 3-view call of ``strong_views_transform(256)`` (default arguments, MONAI ``track_meta`` on) on a
random 256x256 float32 tensor, ``torch.set_num_threads(1)`` as in a DataLoader worker; 8 blocks of 25 seeded calls
after 10 warm-up calls, ``time.perf_counter``; torch 2.13 CPU, MONAI 1.6.1, this project's shared 2-core CPU machine
(load average ~3 from other jobs, hence min and median of the blocks)::

    1 x 256 x 256:  min 15.8 ms, median 19.5 ms per 3-view call  (~5-7 ms per view)
    3 x 256 x 256:  min 29.0 ms, median 41.5 ms per 3-view call  (~10-14 ms per view)

Cost of one application of each operation (grey / RGB, ms, same set-up): crop 0.5 / 1.7, MONAI ``RandRotated``
4.1 / 5.6, exact Poisson sampling (PNP) 4.6 / 11, equalize 0.7 / 2-4, colour jitter 0.3 / 1.2, sharpness
0.2 / 0.4, autocontrast 0.5 / 0.9, brightness 0.3 / 0.4; 2-4 (3 on average) of the 7 are drawn per view. A fair
share of these costs is page faults on the large temporaries that glibc hands back to the OS:
``MALLOC_MMAP_THRESHOLD_=100000000 MALLOC_TRIM_THRESHOLD_=1000000000`` in the workers' environment saved ~20 %.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import Compose, EnsureTyped, MapTransform, Randomizable, RandomOrder, RandRotated, SomeOf

from ._base import seed_child
from .color_jitter import RandColorJitterd
from .intensity import ClipIntensityd, RandAutoContrastd, RandBrightnessd, RandEqualized, RandSharpnessd
from .poisson_noise import RandPoissonNoised
from .spatial import RandResizedCropd

__all__ = ["StrongAugmentd", "OP_NAMES", "ALL_OP_NAMES"]

#: the 7 operations drawn at random (the random resized crop, ``"crop"``, always runs)
OP_NAMES: tuple[str, ...] = ("rotate", "color_jitter", "autocontrast", "equalize", "sharpness", "brightness", "pnp")
#: the paper's 8 operations
ALL_OP_NAMES: tuple[str, ...] = ("crop",) + OP_NAMES


def _per_op(value: float | Mapping[str, float] | None, names: Sequence[str], default: float, what: str) -> list[float]:
    if value is None:
        return [default] * len(names)
    if isinstance(value, Mapping):
        unknown = set(value) - set(names)
        if unknown:
            raise ValueError(f"{what}: unknown operation(s) {sorted(unknown)}; choose from {list(names)}.")
        return [float(value.get(n, default)) for n in names]
    return [float(value)] * len(names)


class StrongAugmentd(Randomizable, MapTransform):
    """Strong augmentation of DCL-CsTP for channel-first 2D images in ``[0, 1]`` (C=1 grey or C=3 RGB).

    Pipeline: ``EnsureTyped`` (torch, float32) -> random resized crop to ``spatial_size`` -> a random subset of
    ``ops`` in random order -> clip to ``[0, 1]``. Output: float32 tensor ``(C, *spatial_size)`` per key
    (``MetaTensor`` when MONAI's ``track_meta`` is on), values in ``[0, 1]``.

    Selection: with ``num_ops=(a, b)`` (or an int) each call draws ``n ~ U{a..b}`` operations without replacement
    (sampling ``weights`` per op, uniform by default) and applies them in the drawn order, each one firing with its
    ``probs`` entry (default 1). With ``num_ops=None`` every op is considered in random order and fires with its
    ``probs`` entry (default 0.5). The paper leaves all of this open; the defaults aim at medical images (strong but
    anatomy preserving, no flips since laterality matters on X-rays):

    ====================  ===================================  ===============================================
    operation             magnitude argument (default)         effect
    ====================  ===================================  ===============================================
    ``crop``              ``crop_scale=(0.2, 1.0)``,           area fraction and aspect ratio (MoCo-v2 / CO2
                          ``crop_ratio=(3/4, 4/3)``            values), bilinear (anti-aliased) resize
    ``rotate``            ``rotate_degrees=30``                angle ``U(-30, 30)`` deg, reflection padding
                                                               (no black wedges), MONAI ``RandRotated``
    ``color_jitter``      ``jitter_brightness=0.4``,           torchvision semantics; saturation and hue only
                          ``jitter_contrast=0.4``,             on RGB; hue kept small (dermoscopy/endoscopy
                          ``jitter_saturation=0.4``,           colour carries meaning)
                          ``jitter_hue=0.05``
    ``autocontrast``      -                                    per-channel min-max stretch to ``[0, 1]``
    ``equalize``          -                                    per-channel histogram equalisation
    ``sharpness``         ``sharpness_range=(0.1, 1.9)``       blur (<1) ... sharpen (>1), PIL semantics
    ``brightness``        ``brightness_range=(0.6, 1.4)``      multiplicative factor
    ``pnp``               ``pnp_lam_range=(50, 1000)``         Poisson noise, photon level log-uniform
    ====================  ===================================  ===============================================

    Args:
        keys: image key(s); all get the same random parameters.
        spatial_size: output ``(H, W)`` or an int.
        num_ops: ``(min, max)`` or int number of ops drawn per call (default ``(2, 4)`` of 7, i.e. 3 on average),
            or ``None`` for independent per-op probabilities.
        ops: which of :data:`OP_NAMES` may be drawn (e.g. drop ``"pnp"`` for an ablation).
        probs: per-op firing probability once drawn, a float for all or a ``{name: p}`` mapping.
        weights: per-op sampling weights for ``num_ops`` mode, ``{name: w}`` (uniform by default).
        crop_prob: probability of a random crop (otherwise the whole image is resized).
        allow_missing_keys: don't raise if a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: int | Sequence[int],
        num_ops: int | tuple[int, int] | None = (2, 4),
        ops: Sequence[str] = OP_NAMES,
        probs: float | Mapping[str, float] | None = None,
        weights: Mapping[str, float] | None = None,
        crop_scale: Sequence[float] = (0.2, 1.0),
        crop_ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        crop_prob: float = 1.0,
        rotate_degrees: float = 30.0,
        jitter_brightness: float = 0.4,
        jitter_contrast: float = 0.4,
        jitter_saturation: float = 0.4,
        jitter_hue: float = 0.05,
        sharpness_range: Sequence[float] = (0.1, 1.9),
        brightness_range: Sequence[float] = (0.6, 1.4),
        pnp_lam_range: Sequence[float] = (50.0, 1000.0),
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        ops = tuple(ops)
        unknown = set(ops) - set(OP_NAMES)
        if unknown or len(set(ops)) != len(ops):
            raise ValueError(f"ops must be distinct names from {OP_NAMES}, got {ops}.")
        if isinstance(num_ops, list):
            num_ops = tuple(num_ops)  # from a JSON config
        p = _per_op(probs, ops, 0.5 if num_ops is None else 1.0, "probs")
        prob = dict(zip(ops, p))
        k, mk = self.keys, allow_missing_keys
        builders = {
            "rotate": lambda q: RandRotated(
                k,
                range_x=math.radians(rotate_degrees),
                prob=q,
                keep_size=True,
                mode="bilinear",
                padding_mode="reflection",
                dtype=np.float32,
                allow_missing_keys=mk,
            ),
            "color_jitter": lambda q: RandColorJitterd(
                k, jitter_brightness, jitter_contrast, jitter_saturation, jitter_hue, prob=q, allow_missing_keys=mk
            ),
            "autocontrast": lambda q: RandAutoContrastd(k, prob=q, allow_missing_keys=mk),
            "equalize": lambda q: RandEqualized(k, prob=q, allow_missing_keys=mk),
            "sharpness": lambda q: RandSharpnessd(k, sharpness_range, prob=q, allow_missing_keys=mk),
            "brightness": lambda q: RandBrightnessd(k, brightness_range, prob=q, allow_missing_keys=mk),
            "pnp": lambda q: RandPoissonNoised(k, pnp_lam_range, prob=q, allow_missing_keys=mk),
        }
        self.crop = RandResizedCropd(
            k, spatial_size, scale=crop_scale, ratio=crop_ratio, prob=crop_prob, allow_missing_keys=mk
        )
        #: the randomly drawn operations by name (each a MONAI dictionary transform)
        self.ops: dict[str, MapTransform] = {name: builders[name](prob[name]) for name in ops}
        op_list = list(self.ops.values())
        if num_ops is None:
            self.chooser: Compose = RandomOrder(op_list)
        else:
            w = _per_op(weights, ops, 1.0, "weights") if weights is not None else None
            self.chooser = SomeOf(op_list, num_transforms=num_ops, replace=False, weights=w)
        self.transform = Compose(
            [
                EnsureTyped(k, data_type="tensor", dtype=torch.float32, allow_missing_keys=mk),
                self.crop,
                self.chooser,
                ClipIntensityd(k, 0.0, 1.0, allow_missing_keys=mk),
            ]
        )

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        seed_child(self, self.transform, seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        return self.transform(dict(data))
