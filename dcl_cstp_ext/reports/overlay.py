"""Pictures of masks: an image as RGB uint8, a mask filled and outlined over it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy.ndimage import binary_dilation

from ..metrics.segmentation import binary_mask, mask_contour

__all__ = ["overlay_mask", "to_rgb_uint8"]

def to_rgb_uint8(image: Any) -> np.ndarray:
    """(C, H, W) image in [0, 1] (C = 1 or 3) -> (H, W, 3) uint8."""
    arr = image.detach().cpu().float().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.shape[0] == 1:
        arr = np.repeat(arr, 3, axis=0)
    return (np.clip(arr[:3].transpose(1, 2, 0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def overlay_mask(
    rgb: np.ndarray,
    mask: Any,
    color: Sequence[int] = (255, 40, 40),
    alpha: float = 0.35,
    contour_color: Sequence[int] | None = None,
    contour: Any | None = None,
) -> np.ndarray:
    """``rgb`` (H, W, 3) uint8 with ``mask`` filled in ``color`` (opacity ``alpha``) and outlined; ``contour``
    (another mask, e.g. the ground truth) is outlined in ``contour_color`` on top."""
    m = binary_mask(mask)
    out = rgb.astype(np.float32).copy()
    col = np.asarray(color, np.float32)
    width = max(1, round(min(m.shape) / 300))  # outlines stay visible on large originals

    def outline(x: np.ndarray) -> np.ndarray:
        edge = mask_contour(x)
        return binary_dilation(edge, iterations=width - 1) if width > 1 else edge

    out[m] = (1.0 - alpha) * out[m] + alpha * col
    out[outline(m)] = col
    if contour is not None:
        out[outline(binary_mask(contour))] = np.asarray(contour_color or (40, 255, 40), np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
