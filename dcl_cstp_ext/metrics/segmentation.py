"""Per-image binary segmentation metrics with a stated policy for empty masks: Dice, IoU, HD and HD95.

Per image, for a prediction P and a ground truth G (binary masks of one size):

* Dice ``2|P∩G| / (|P| + |G|)``, IoU ``|P∩G| / |P∪G|``;
* HD: the largest distance from a boundary pixel of one mask to the boundary of the other, both directions;
  HD95: the larger of the two directed 95th percentiles (MONAI's ``percentile=95``; medpy instead pools both
  directions before taking the percentile). Boundary pixels: mask pixels with a background 4-neighbour.
  Values equal MONAI's ``compute_hausdorff_distance`` (tested); one distance transform per direction gives
  both HD and HD95 (2 ms for a 256 x 256 pair, about 100x faster than two MONAI calls).
* empty masks: both empty -> Dice = IoU = 1, HD = HD95 = 0; exactly one empty -> Dice = IoU = 0 and
  HD = HD95 = the image diagonal ``sqrt(H**2 + W**2)`` (an upper bound of any distance on the image, so a missed
  or invented lesion counts as the worst case instead of being dropped).

Distances are in pixels of the arrays compared (the bundles evaluate at the training size, ``image_size``
squared).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from scipy.ndimage import binary_erosion, distance_transform_edt

__all__ = [
    "METRIC_NAMES",
    "binary_mask",
    "dice_score",
    "hausdorff_distance",
    "hausdorff_distances",
    "iou_score",
    "mask_contour",
    "segmentation_metrics",
    "summarize",
]

#: the per-image metrics of :func:`segmentation_metrics`, in report order
METRIC_NAMES = ("dice", "iou", "hd", "hd95")


def binary_mask(mask: Any) -> np.ndarray:
    """A 2-D boolean array from a (H, W) or (1, H, W) mask (bool, {0, 1}, {0, 255} or a probability > 0.5)."""
    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"expected a (H, W) or (1, H, W) mask, got shape {arr.shape}")
    return arr if arr.dtype == bool else arr > 0.5


def _pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
    p, t = binary_mask(pred), binary_mask(target)
    if p.shape != t.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {t.shape} differ in size")
    return p, t


def dice_score(pred: Any, target: Any) -> float:
    """Dice ``2|P∩G| / (|P| + |G|)`` of two binary masks; 1 when both are empty."""
    p, t = _pair(pred, target)
    total = int(p.sum()) + int(t.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(p, t).sum()) / total


def iou_score(pred: Any, target: Any) -> float:
    """IoU (Jaccard) ``|P∩G| / |P∪G|`` of two binary masks; 1 when both are empty."""
    p, t = _pair(pred, target)
    union = int(np.logical_or(p, t).sum())
    return 1.0 if union == 0 else int(np.logical_and(p, t).sum()) / union


def mask_contour(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a boolean mask: in the mask, with a background 4-neighbour (or on the image border)."""
    return mask & ~binary_erosion(mask)


def _surface_distances(p: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Directed distances from each boundary pixel of ``p`` to the boundary of ``t`` and back (both non-empty).

    Boundary: ``mask XOR binary_erosion(mask)`` (cross structuring element, outside the image is background), as
    MONAI's ``get_mask_edges``; distances: exact Euclidean distance transform. Computed on the bounding box of
    both masks plus a one-pixel margin (the same numbers, less work)."""
    rows, cols = np.nonzero(p | t)
    r0, r1 = max(rows.min() - 1, 0), min(rows.max() + 2, p.shape[0])
    c0, c1 = max(cols.min() - 1, 0), min(cols.max() + 2, p.shape[1])
    p, t = p[r0:r1, c0:c1], t[r0:r1, c0:c1]
    pe, te = mask_contour(p), mask_contour(t)
    return distance_transform_edt(~te)[pe], distance_transform_edt(~pe)[te]


def hausdorff_distances(pred: Any, target: Any, percentiles: Sequence[float | None] = (None, 95)) -> list[float]:
    """Symmetric Hausdorff distances in pixels, one per entry of ``percentiles``: ``None`` the Hausdorff distance
    (largest boundary-to-boundary distance), ``q`` the larger of the two directed ``q``-th percentiles (HD95 for
    95; linear interpolation). The numbers of MONAI's ``compute_hausdorff_distance(..., percentile=q)``.

    Both masks empty: 0. Exactly one empty: the image diagonal ``sqrt(H**2 + W**2)`` (an upper bound of any
    distance on the image, so an image where the lesion is missed or invented counts as the worst case)."""
    p, t = _pair(pred, target)
    p_any, t_any = bool(p.any()), bool(t.any())
    if not p_any and not t_any:
        return [0.0 for _ in percentiles]
    if p_any != t_any:
        return [float(math.hypot(*p.shape)) for _ in percentiles]
    d_pt, d_tp = _surface_distances(p, t)
    out = []
    for q in percentiles:
        if q is None:
            out.append(float(max(d_pt.max(), d_tp.max())))
        else:
            out.append(float(max(np.percentile(d_pt, q), np.percentile(d_tp, q))))
    return out


def hausdorff_distance(pred: Any, target: Any, percentile: float | None = None) -> float:
    """Hausdorff distance (``percentile=None``) or HD95 (``percentile=95``) in pixels; see :func:`hausdorff_distances`
    (and the module docstring for empty masks)."""
    return hausdorff_distances(pred, target, (percentile,))[0]


def segmentation_metrics(pred: Any, target: Any) -> dict[str, float]:
    """Dice, IoU, HD and HD95 of one image (see the module docstring for empty masks), plus the pixel counts
    ``gt_area`` and ``pred_area``."""
    p, t = _pair(pred, target)
    return {
        "dice": dice_score(p, t),
        "iou": iou_score(p, t),
        **dict(zip(("hd", "hd95"), hausdorff_distances(p, t, (None, 95)))),
        "gt_area": int(t.sum()),
        "pred_area": int(p.sum()),
    }


def summarize(rows: Sequence[Mapping[str, Any]], keys: Sequence[str] = METRIC_NAMES) -> dict[str, dict[str, float]]:
    """Mean, standard deviation (population, ``ddof=0``), median, min and max of each metric over ``rows``."""
    out = {}
    for k in keys:
        v = np.asarray([float(r[k]) for r in rows], dtype=np.float64)
        if v.size == 0:
            out[k] = {"mean": float("nan"), "std": float("nan"), "median": float("nan"), "min": float("nan"),
                      "max": float("nan")}
            continue
        out[k] = {"mean": float(v.mean()), "std": float(v.std()), "median": float(np.median(v)),
                  "min": float(v.min()), "max": float(v.max())}
    return out
