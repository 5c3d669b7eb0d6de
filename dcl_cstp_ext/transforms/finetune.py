"""The light augmentations of fine-tuning: an image alone (classification) or an image and its mask jointly
(segmentation), inputs (C, H, W) in [0, 1], outputs plain float32 tensors."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.transforms import Compose, EnsureTyped, RandFlipd, RandRotated

from .channels import ToChannelsd
from .color_jitter import RandColorJitterd
from .intensity import ClipIntensityd
from .spatial import RandResizedCropd

__all__ = ["classification_augmentation", "segmentation_augmentation"]

def classification_augmentation(
    image_size: int | Sequence[int],
    channels: int = 3,
    scale: Sequence[float] = (0.7, 1.0),
    ratio: Sequence[float] = (0.8, 1.25),
    rotate_degrees: float = 10.0,
    rotate_prob: float = 0.5,
    brightness: float = 0.2,
    contrast: float = 0.2,
    jitter_prob: float = 0.8,
    flip_prob: float = 0.0,
    image_key: str = "image",
) -> Compose:
    """Light fine-tuning augmentation of an image (C, H, W) in [0, 1].

    Random resized crop (area fraction ``scale``, aspect ``ratio``) to ``image_size``, rotation by up to
    ``rotate_degrees`` (zero padding) with probability ``rotate_prob``, brightness/contrast jitter with
    probability ``jitter_prob`` (never colour), horizontal flip with probability ``flip_prob`` (0 by default: a
    chest X-ray has a left and a right: the heart is on the left), clip to [0, 1], then ``channels`` channels
    (:class:`ToChannelsd`). Output: a plain float32 tensor (no meta data).
    """
    xforms: list = [RandResizedCropd(image_key, image_size, scale=scale, ratio=ratio)]
    if rotate_degrees > 0 and rotate_prob > 0:
        rad = math.radians(rotate_degrees)
        xforms.append(RandRotated(image_key, range_x=(-rad, rad), prob=rotate_prob, keep_size=True,
                                  padding_mode="zeros"))
    if jitter_prob > 0 and (brightness > 0 or contrast > 0):
        xforms.append(RandColorJitterd(image_key, brightness=brightness, contrast=contrast, saturation=0.0, hue=0.0,
                                       prob=jitter_prob))
    if flip_prob > 0:
        xforms.append(RandFlipd(image_key, prob=flip_prob, spatial_axis=1))
    xforms += [
        ClipIntensityd(image_key, 0.0, 1.0),
        EnsureTyped(image_key, data_type="tensor", dtype=torch.float32, track_meta=False),
        ToChannelsd(image_key, channels),
    ]
    return Compose(xforms)


def segmentation_augmentation(
    image_size: int | Sequence[int],
    scale: Sequence[float] = (0.5, 1.0),
    ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
    flip_prob: float = 0.5,
    rotate_degrees: float = 15.0,
    rotate_prob: float = 0.5,
    brightness: float = 0.2,
    contrast: float = 0.2,
    jitter_prob: float = 0.8,
    image_key: str = "image",
    label_key: str = "label",
) -> Compose:
    """Random transforms applied jointly to an image (C, H, W) in [0, 1] and its {0, 1} mask (1, H, W).

    Random resized crop (area fraction ``scale``, aspect ``ratio``; bilinear for the image, nearest for the mask)
    to ``image_size``, horizontal and vertical flips, rotation by up to ``rotate_degrees`` (nearest for the mask,
    zero padding), then brightness/contrast jitter of the image only, clipped to [0, 1]. The output is plain
    float32 tensors (no meta data): the mask stays exactly {0, 1}.
    """
    keys = (image_key, label_key)
    xforms = [
        RandResizedCropd(keys, image_size, scale=scale, ratio=ratio, mode=("bilinear", "nearest")),
        RandFlipd(keys, prob=flip_prob, spatial_axis=1),
        RandFlipd(keys, prob=flip_prob, spatial_axis=0),
    ]
    if rotate_degrees > 0 and rotate_prob > 0:
        rad = math.radians(rotate_degrees)
        xforms.append(
            RandRotated(keys, range_x=(-rad, rad), prob=rotate_prob, keep_size=True, mode=("bilinear", "nearest"),
                        padding_mode="zeros")
        )
    if jitter_prob > 0 and (brightness > 0 or contrast > 0):
        xforms.append(RandColorJitterd(image_key, brightness=brightness, contrast=contrast, saturation=0.0, hue=0.0,
                                       prob=jitter_prob))
    xforms += [
        ClipIntensityd(image_key, 0.0, 1.0),
        EnsureTyped(keys, data_type="tensor", dtype=torch.float32, track_meta=False),
    ]
    return Compose(xforms)
