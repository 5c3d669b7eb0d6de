"""Sample-quality measures: Frechet distance, k-NN precision / recall and realism (Kynkaanniemi et al. 2019),
MS-SSIM diversity, nearest-neighbour memorisation; the feature encoder they are computed with is in
:mod:`.feature_encoder`.

Features come from an encoder the user names (by default the dcl_pretrain export ``models/encoder.pt``), or, when
there is none, from a randomly initialised ResNet-18 with a fixed seed whose batch-norm statistics are re-estimated
on the real images. Random-feature distances are a known, imperfect proxy for Inception/learned features (they
capture colour, texture and coarse layout, not semantics); they need no download and are deterministic, so they
compare samplers and checkpoints of the same data fairly, but their values are not comparable to published FIDs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics.regression import compute_ms_ssim

__all__ = [
    "frechet_distance",
    "feature_statistics",
    "frechet_distance_from_features",
    "pairwise_distances",
    "knn_radii",
    "knn_precision_recall",
    "realism_scores",
    "nearest_neighbours",
    "memorisation",
    "ms_ssim_settings",
    "ms_ssim_diversity",
    "summarise",
]

logger = logging.getLogger(__name__)

#: description of the fallback feature encoder (recorded in reports)


# ----------------------------------------------------------------------------------------------- Frechet distance
def feature_statistics(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (unbiased) of ``(N, D)`` features, float64."""
    f = np.asarray(torch.as_tensor(features).detach().cpu().double().numpy())
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need (N >= 2, D) features, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _sqrtm_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (Dowson & Landau 1982; FID, Heusel et al. 2017):

    ``||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))``

    The trace term is computed as ``sum sqrt(eig(sigma1^(1/2) sigma2 sigma1^(1/2)))`` (symmetric, positive
    semi-definite: stable in float64 even for singular covariances, N < D)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"shape mismatch: mu {mu1.shape} {mu2.shape}, sigma {s1.shape} {s2.shape}")
    r1 = _sqrtm_psd(s1)
    m = r1 @ s2 @ r1
    tr_covmean = float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean, 0.0))


def frechet_distance_from_features(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Frechet distance between the Gaussians fitted to two ``(N, D)`` feature sets."""
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


# ------------------------------------------------------------------------------------------- k-NN based measures
def pairwise_distances(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Euclidean distances ``(len(a), len(b))`` in float64, computed in chunks of rows."""
    a = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).double().cpu()
    b = torch.as_tensor(np.asarray(b) if not isinstance(b, torch.Tensor) else b).double().cpu()
    return torch.cat([torch.cdist(a[i : i + chunk], b) for i in range(0, len(a), chunk)]) if len(a) else torch.empty(0, len(b))


def knn_radii(features: np.ndarray | torch.Tensor, k: int = 3) -> torch.Tensor:
    """Distance of every item to its ``k``-th nearest *other* item of the same set (leave-one-out), ``(N,)``."""
    d = pairwise_distances(features, features)
    n = d.shape[0]
    if n <= k:
        raise ValueError(f"k-NN radii need more than k={k} items, got {n}")
    d.fill_diagonal_(float("inf"))
    return d.topk(k, dim=1, largest=False).values[:, -1]


def knn_precision_recall(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, k: int = 3) -> dict:
    """Improved precision and recall (Kynkaanniemi et al., NeurIPS 2019).

    Each set's manifold is the union of balls around its items with radius the distance to the ``k``-th nearest
    neighbour. Precision: fraction of ``fake`` items inside the real manifold (fidelity). Recall: fraction of
    ``real`` items inside the fake manifold (coverage)."""
    r_real, r_fake = knn_radii(real, k), knn_radii(fake, k)
    d = pairwise_distances(fake, real)  # (F, R)
    precision = (d <= r_real[None, :]).any(dim=1).double().mean().item()
    recall = (d <= r_fake[:, None]).any(dim=0).double().mean().item()
    return {"precision": precision, "recall": recall, "k": k}


def realism_scores(real: np.ndarray | torch.Tensor, fake: np.ndarray | torch.Tensor, k: int = 3,
                   prune: float = 0.5) -> torch.Tensor:
    """Realism score of every fake item (Kynkaanniemi et al. 2019, Sec. 5): ``max_r radius_r / ||fake - real_r||``
    over the real items whose k-NN radius is within the ``prune`` quantile (the paper drops the half with the
    largest radii, which lie in sparse regions). >= 1: inside the real manifold; higher: more typical."""
    radii = knn_radii(real, k)
    keep = radii <= torch.quantile(radii, prune)
    d = pairwise_distances(fake, torch.as_tensor(np.asarray(real) if not isinstance(real, torch.Tensor) else real)[keep])
    return (radii[keep][None, :] / d.clamp_min(1e-12)).max(dim=1).values


def nearest_neighbours(query: np.ndarray | torch.Tensor, bank: np.ndarray | torch.Tensor,
                       exclude_self: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Distance to and index of the nearest ``bank`` item for every ``query`` item; ``exclude_self`` (query is
    bank) skips the item itself (leave-one-out)."""
    d = pairwise_distances(query, bank)
    if exclude_self:
        d.fill_diagonal_(float("inf"))
    dist, idx = d.min(dim=1)
    return dist, idx


def memorisation(synthetic: np.ndarray | torch.Tensor, real: np.ndarray | torch.Tensor) -> dict:
    """Nearest-training-image check in one representation (features or pixels).

    For each synthetic item: the distance to its nearest real (training) item and that item's index; the
    reference is the real-real leave-one-out nearest-neighbour distance distribution, summarised by its median:
    ``ratio = d(synthetic, nearest real) / median(d(real, nearest other real))``. An exact copy has ratio 0;
    a typical new sample is around 1 or above."""
    d_syn, idx = nearest_neighbours(synthetic, real)
    d_real, _ = nearest_neighbours(real, real, exclude_self=True)
    median = float(d_real.median())
    ratio = d_syn / max(median, 1e-12)
    real_ratio = d_real / max(median, 1e-12)
    return {"distance": d_syn, "index": idx, "ratio": ratio, "real_median": median, "real_ratio": real_ratio}


# ---------------------------------------------------------------------------------------------------- MS-SSIM
_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def ms_ssim_settings(size: int, kernel_size: int | None = None) -> tuple[int, tuple[float, ...]]:
    """Kernel size and scale weights of MS-SSIM for ``size`` pixel images: the standard 5 scales and 11-pixel
    kernel when the image allows (256 px), else the most scales a kernel of 7 (or, below, 5 and 3) allows, the
    weights the first ones of the standard five, renormalised. The coarsest scale must hold the kernel and
    satisfy MONAI's size check (``size // (scales - 1)^2 > kernel - 1``)."""
    kernels = [kernel_size] if kernel_size else [11, 7, 5, 3]
    valid = [(k, n) for k in kernels for n in range(1, 6)
             if size // max(1, n - 1) ** 2 > k - 1 and size / 2 ** (n - 1) >= k]
    if not valid:
        raise ValueError(f"images of {size} pixels are too small for MS-SSIM (kernel {kernels})")
    k, n = max(valid, key=lambda kn: (kn[0] >= 7, kn[1], kn[0]))
    w = np.array(_MS_SSIM_WEIGHTS[:n])
    return k, tuple(float(x) for x in w / w.sum())


@torch.no_grad()
def ms_ssim_diversity(images: torch.Tensor, num_pairs: int = 500, seed: int = 0, kernel_size: int | None = None,
                      batch_size: int = 64) -> dict:
    """Mean MS-SSIM over ``num_pairs`` random distinct pairs of ``images`` ``(N, C, H, W)`` in [0, 1] (MONAI's
    ``MultiScaleSSIMMetric`` computation, data range 1). Lower means more diverse; ~1 means near-identical samples (mode
    collapse). Compare with the same measure on real images."""

    n = images.shape[0]
    if n < 2:
        raise ValueError("MS-SSIM diversity needs at least 2 images")
    k, weights = ms_ssim_settings(min(images.shape[2:]), kernel_size)
    g = torch.Generator().manual_seed(seed)
    i = torch.randint(0, n, (num_pairs,), generator=g)
    j = (i + torch.randint(1, n, (num_pairs,), generator=g)) % n  # j != i
    vals = []
    x = images.float()
    for s in range(0, num_pairs, batch_size):
        a, b = x[i[s : s + batch_size]], x[j[s : s + batch_size]]
        vals.append(compute_ms_ssim(a, b, spatial_dims=2, data_range=1.0, kernel_size=k, weights=weights).view(-1).cpu())
    v = torch.cat(vals).double()
    return {"ms_ssim": float(v.mean()), "ms_ssim_std": float(v.std()) if len(v) > 1 else 0.0,
            "num_pairs": int(num_pairs), "kernel_size": k, "scales": len(weights)}


def summarise(values: Sequence[float] | torch.Tensor) -> dict:
    """min / quartiles / max / mean of a 1-D array, rounded (for reports)."""
    v = torch.as_tensor(values).double()
    if v.numel() == 0:
        return {}
    q = torch.quantile(v, torch.tensor([0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0], dtype=torch.float64))
    names = ("min", "p05", "p25", "median", "p75", "p95", "max")
    out = {k: round(float(x), 5) for k, x in zip(names, q)}
    out["mean"] = round(float(v.mean()), 5)
    return out
