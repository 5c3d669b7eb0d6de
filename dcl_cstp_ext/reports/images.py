"""Images to disk: 8-bit PNGs (grey or RGB like the data) and PNG grids (contact sheets, input | reconstruction)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = ["to_uint8", "save_png", "make_grid", "save_grid", "save_pairs_grid"]


def to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """A channel-first image ``(C, H, W)`` in [0, 1] (values outside are clipped) -> ``(H, W)`` uint8 for one
    channel, ``(H, W, 3)`` uint8 for three."""
    arr = image.detach().float().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image, np.float32)
    if arr.ndim != 3 or arr.shape[0] not in (1, 3):
        raise ValueError(f"expected a (1|3, H, W) image, got shape {arr.shape}")
    arr = np.clip(np.round(np.nan_to_num(arr) * 255.0), 0, 255).astype(np.uint8)
    return arr[0] if arr.shape[0] == 1 else np.ascontiguousarray(arr.transpose(1, 2, 0))


def save_png(image: torch.Tensor | np.ndarray, path: str | Path) -> Path:
    """Write a ``(C, H, W)`` image in [0, 1] as an 8-bit PNG: mode ``L`` for one channel, ``RGB`` for three."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path)
    return path


def make_grid(
    images: torch.Tensor | Sequence[torch.Tensor], nrow: int | None = None, pad: int = 2, pad_value: float = 1.0
) -> torch.Tensor:
    """Tile ``N`` images ``(C, H, W)`` (same size; grey ones are repeated to RGB when mixed with colour) into one
    ``(C, rows * (H + pad) + pad, nrow * (W + pad) + pad)`` image; ``nrow`` defaults to ``ceil(sqrt(N))``."""
    imgs = [torch.as_tensor(im).detach().float().cpu() for im in images]
    if not imgs:
        raise ValueError("make_grid needs at least one image")
    channels = max(im.shape[0] for im in imgs)
    imgs = [im.expand(channels, -1, -1) if im.shape[0] != channels else im for im in imgs]
    h, w = imgs[0].shape[1:]
    nrow = nrow or math.ceil(math.sqrt(len(imgs)))
    rows = math.ceil(len(imgs) / nrow)
    grid = torch.full((channels, rows * (h + pad) + pad, nrow * (w + pad) + pad), float(pad_value))
    for i, im in enumerate(imgs):
        r, c = divmod(i, nrow)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[:, y : y + h, x : x + w] = im
    return grid


def save_grid(
    images: torch.Tensor | Sequence[torch.Tensor], path: str | Path, nrow: int | None = None, pad: int = 2
) -> Path:
    """:func:`make_grid` written as an 8-bit PNG."""
    return save_png(make_grid(images, nrow=nrow, pad=pad), path)


def save_pairs_grid(
    left: torch.Tensor | Sequence[torch.Tensor], right: torch.Tensor | Sequence[torch.Tensor], path: str | Path,
    pairs_per_row: int = 4, pad: int = 2,
) -> Path:
    """Side-by-side pairs ``left[i] | right[i]`` (e.g. input | reconstruction, synthetic | nearest training image),
    ``pairs_per_row`` pairs per row (fewer pairs: one row of just them)."""
    if len(left) != len(right):
        raise ValueError(f"pairs need as many left as right images, got {len(left)} and {len(right)}")
    tiles = [im for pair in zip(left, right) for im in pair]
    return save_grid(tiles, path, nrow=2 * max(1, min(pairs_per_row, len(left))), pad=pad)
