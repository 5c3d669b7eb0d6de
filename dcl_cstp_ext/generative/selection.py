"""Which curated synthetic images to keep once near copies and outliers are dropped: the two selection rules
(stratified by nearest real image, or by realism alone)."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["SELECTIONS", "select_samples"]

SELECTIONS = ("stratified", "realism")


def select_samples(
    realism: torch.Tensor | np.ndarray,
    outlier: torch.Tensor | np.ndarray,
    near_copy: torch.Tensor | np.ndarray,
    keep_fraction: float = 0.5,
    realism_threshold: float | None = None,
    groups: torch.Tensor | np.ndarray | None = None,
    selection: str = "stratified",
) -> tuple[np.ndarray, list[str | None]]:
    """Decide which samples to keep: drop near copies and outliers, drop those below ``realism_threshold``
    (if given), then keep ``round(keep_fraction * N)`` of the rest (all of them if fewer): with
    ``selection="realism"`` the most realistic; with ``"stratified"`` (needs ``groups``, e.g. each sample's nearest
    real image) the most realistic of every group first, then the second of every group, and so on.
    Returns the keep mask ``(N,)`` and each sample's reason for being dropped (``None`` when kept)."""
    if not 0.0 <= keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction must be in [0, 1], got {keep_fraction}")
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if selection == "stratified" and groups is None:
        raise ValueError("stratified selection needs the group (e.g. nearest real image) of every sample")
    realism = np.asarray(torch.as_tensor(realism).double().cpu().numpy())
    outlier = np.asarray(torch.as_tensor(outlier).cpu().numpy(), bool)
    near_copy = np.asarray(torch.as_tensor(near_copy).cpu().numpy(), bool)
    n = len(realism)
    reasons: list[str | None] = [None] * n
    for i in range(n):
        if near_copy[i]:
            reasons[i] = "near_copy"
        elif outlier[i]:
            reasons[i] = "outlier"
        elif realism_threshold is not None and realism[i] < realism_threshold:
            reasons[i] = "below_threshold"
    candidates = [i for i in range(n) if reasons[i] is None]
    quota = int(np.floor(keep_fraction * n + 0.5))
    ranked = sorted(candidates, key=lambda i: (-realism[i], i))
    if selection == "stratified":
        group = np.asarray(torch.as_tensor(groups).cpu().numpy())
        seen: dict[int, int] = {}
        position = {}
        for i in ranked:  # position of each sample within its group, by realism
            position[i] = seen.get(int(group[i]), 0)
            seen[int(group[i])] = position[i] + 1
        ranked = sorted(candidates, key=lambda i: (position[i], -realism[i], i))
    for i in ranked[quota:]:
        reasons[i] = "below_rank"
    keep = np.array([r is None for r in reasons], bool)
    return keep, reasons
