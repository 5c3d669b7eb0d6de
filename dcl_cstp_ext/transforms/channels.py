"""Grey <-> RGB channel conversion of (C, H, W) tensors after augmentation."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from .intensity import LUMA

__all__ = ["ToChannelsd"]

class ToChannelsd(MapTransform):
    """(C, H, W) tensors under ``keys`` to ``channels`` channels: grey -> RGB by repetition, RGB -> grey by luma.

    The bundle caches grey images (a third of the memory) and repeats the channel after augmentation."""

    def __init__(self, keys: KeysCollection = "image", channels: int = 3, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.channels = channels

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            x = d[key]
            c = x.shape[0]
            if c == self.channels:
                continue
            if c == 1 and self.channels == 3:
                d[key] = x.repeat(3, 1, 1)
            elif c == 3 and self.channels == 1:
                w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(3, 1, 1)
                d[key] = (x * w).sum(dim=0, keepdim=True)
            else:
                raise ValueError(f"cannot convert {c} channel(s) to {self.channels}")
        return d
