"""Test-time flip augmentation as a MONAI inferer."""

from __future__ import annotations

from typing import Any

import torch
from monai.inferers import Inferer

__all__ = ["FlipTTAInferer", "TTA_FLIPS"]

#: flips -> the spatial axes flipped in each pass (``()`` is the image as it is); axes count from the end
TTA_FLIPS: dict[str, tuple[tuple[int, ...], ...]] = {
    "none": ((),),
    "h": ((), (-1,)),
    "v": ((), (-2,)),
    "hv": ((), (-1,), (-2,), (-2, -1)),
}


class FlipTTAInferer(Inferer):
    """Runs ``network`` on the batch and on its flipped copies and returns the mean of the outputs (raw logits, as
    ttach's ``mean`` merge does), each dense output flipped back first.

    ``flips``: ``"none"`` (one pass, the same as ``SimpleInferer``), ``"h"`` (horizontal), ``"v"`` (vertical) or
    ``"hv"`` (both and their composition: 4 passes). Inputs ``(B, C, H, W)``; an output ``(B, K, H, W)`` (segmentation)
    is flipped back, an output ``(B, K)`` (classification) is averaged as it is.
    """

    def __init__(self, flips: str = "none") -> None:
        super().__init__()
        if flips not in TTA_FLIPS:
            raise ValueError(f"unknown test-time flips {flips!r}: expected one of {sorted(TTA_FLIPS)}")
        self.flips = flips

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        total = None
        for axes in TTA_FLIPS[self.flips]:
            out = network(torch.flip(inputs, axes) if axes else inputs, *args, **kwargs)
            if axes and out.ndim == inputs.ndim:
                out = torch.flip(out, axes)
            total = out if total is None else total + out
        return total / len(TTA_FLIPS[self.flips])
