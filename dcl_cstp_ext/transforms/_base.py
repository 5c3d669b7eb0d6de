"""Shared plumbing for the transforms of this package (not public API).

Conventions used by every transform in :mod:`dcl_cstp_ext.transforms`:

* array transforms take channel-first ``(C, H, W)`` images (numpy array, ``torch.Tensor`` or ``MetaTensor``) and
  return the input's type (numpy in, numpy out; ``MetaTensor`` in, ``MetaTensor`` out with its meta data kept);
  the arithmetic is done in torch, in float32;
* dictionary transforms (``...d``) always hand out torch tensors (``MetaTensor`` when MONAI's ``track_meta`` is on),
  like MONAI's own random dictionary transforms; one random draw per call is shared by all ``keys``;
* all randomness comes from the transform's ``self.R`` (a ``numpy.random.RandomState``), so
  ``set_random_state(seed=...)`` makes a transform reproducible.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import get_track_meta
from monai.transforms import MapTransform, Randomizable, RandomizableTransform
from monai.utils import MAX_SEED, convert_to_dst_type, convert_to_tensor

__all__: list[str] = []


def to_float_tensor(img: Any) -> torch.Tensor:
    """Plain (non-meta) float32 torch view/copy of ``img``."""
    return convert_to_tensor(img, dtype=torch.float32, track_meta=False)


def like_input(out: torch.Tensor, img: Any, dtype: Any = torch.float32) -> NdarrayOrTensor:
    """``out`` converted back to the type family of ``img`` (numpy, torch or MetaTensor with ``img``'s meta)."""
    return convert_to_dst_type(out, dst=img, dtype=dtype)[0]


def check_image(img: torch.Tensor, name: str) -> None:
    if img.ndim != 3:
        raise ValueError(f"{name} expects a channel-first 2D image (C, H, W), got shape {tuple(img.shape)}.")


def derive_seed(r: np.random.RandomState) -> int:
    """A child seed drawn from ``r`` (as MONAI's ``Compose.set_random_state`` does)."""
    return int(r.randint(MAX_SEED, dtype="uint32"))


def seed_child(parent: Randomizable, child: Any, seed: int | None, state: np.random.RandomState | None) -> None:
    """Seed ``child`` from ``parent`` after ``parent.set_random_state(seed, state)`` ran.

    A given ``state`` object is shared (sequential draws from one stream); a ``seed`` gives the child its own
    stream derived from the parent's, so that the parent's and the child's draws are not the same numbers.
    """
    if not isinstance(child, Randomizable):
        return
    if state is not None:
        child.set_random_state(state=state)
    elif seed is not None:
        child.set_random_state(seed=derive_seed(parent.R))
    else:
        child.set_random_state()


class RandArrayWrapd(RandomizableTransform, MapTransform):
    """Dictionary wrapper of a random array transform ``xform`` (whose own ``prob`` is 1).

    The wrapper draws ``prob``; when it fires, ``xform`` is randomised once on the first available key and applied
    with the same parameters to every key.
    """

    def __init__(self, keys: KeysCollection, xform: RandomizableTransform, prob: float, allow_missing_keys: bool):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.xform = xform

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        seed_child(self, self.xform, seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = convert_to_tensor(d[key], track_meta=get_track_meta())
        self.randomize(None)
        first_key = self.first_key(d)
        if not self._do_transform or first_key == ():
            return d
        self.xform.randomize(d[first_key])
        for key in self.key_iterator(d):
            d[key] = self.xform(d[key], randomize=False)
        return d
