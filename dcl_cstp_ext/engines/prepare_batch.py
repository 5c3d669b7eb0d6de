"""Moving a dict batch ``(image, label)`` to the device for MONAI's supervised engines (every downstream bundle)."""

from __future__ import annotations

from typing import Any

import torch
from monai.engines import PrepareBatch

__all__ = ["ImageLabelPrepareBatch"]


class ImageLabelPrepareBatch(PrepareBatch):
    """``(image, label)`` of a dict batch on ``device``; the image in the channels-last memory format when asked
    (faster convolutions with AMP on recent GPUs). For MONAI's ``SupervisedTrainer`` / ``SupervisedEvaluator``."""

    def __init__(self, channels_last: bool = False, image_key: str = "image", label_key: str = "label") -> None:
        self.channels_last = channels_last
        self.image_key = image_key
        self.label_key = label_key

    def __call__(self, batchdata: dict, device=None, non_blocking: bool = False, **kwargs: Any):
        fmt = torch.channels_last if self.channels_last else torch.preserve_format
        image = batchdata[self.image_key].to(device=device, non_blocking=non_blocking, memory_format=fmt, **kwargs)
        label = batchdata.get(self.label_key)
        if isinstance(label, torch.Tensor):
            label = label.to(device=device, non_blocking=non_blocking, **kwargs)
        return image, label
