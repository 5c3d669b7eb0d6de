"""Paired comparison of two initialisations over seeds (issue #21; METHOD.md, "Comparing initialisations").

Each seed gives one pair ``(a_i, b_i)``: the same labelled subset, split and fine-tuning seed, only the
initialisation differs. The unit of noise is the seed, so the interval is Student's t over the per-seed differences
``d_i = a_i - b_i`` and the tests are the paired t-test and the Wilcoxon signed-rank test on them:

    mean d +- t_{n-1, (1+level)/2} * sd(d) / sqrt(n)

The exact signed-rank test of n pairs cannot reach p < 2 / 2**n (two-sided; :func:`signed_rank_floor`: 0.25 with
three pairs, 0.0625 with five), so the t interval decides whether a difference is larger than its noise; the
signed-rank p is shown beside it as the assumption-free check.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["PairedComparison", "paired_comparison", "paired_by_key", "signed_rank_floor"]


@dataclass(frozen=True)
class PairedComparison:
    """``a - b`` over ``n`` pairs: the per-pair differences, their mean with a ``level`` t interval (``nan`` with
    fewer than 2 pairs), the two-sided paired t-test p and the two-sided Wilcoxon signed-rank p."""

    differences: tuple[float, ...]
    mean: float
    low: float
    high: float
    t_p: float
    wilcoxon_p: float
    level: float = 0.95

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def within_noise(self) -> bool:
        """True where the interval holds 0, or where there are too few pairs to have an interval."""
        return not (self.low > 0 or self.high < 0)

    def verdict(self, higher_is_better: bool = True) -> str:
        """``"better"``, ``"worse"`` (``a`` against ``b``, the interval clear of 0) or ``"within noise"``."""
        if self.within_noise:
            return "within noise"
        return "better" if (self.mean > 0) == higher_is_better else "worse"

    def as_dict(self) -> dict:
        return {**asdict(self), "differences": list(self.differences), "n": self.n, "within_noise": self.within_noise}


def signed_rank_floor(n: int) -> float:
    """The smallest two-sided p of the exact Wilcoxon signed-rank test on ``n`` pairs, ``2 / 2**n``: every
    difference of one sign (the one sign pattern of 2**n as extreme, and its mirror)."""
    if n < 1:
        raise ValueError(f"the signed-rank test needs at least 1 pair, got {n}")
    return min(1.0, 2.0 / 2**n)


def paired_comparison(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> PairedComparison:
    """Compare ``a`` with ``b``, paired by position (``a[i]`` and ``b[i]`` share seed ``i``)."""
    from scipy import stats

    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a_arr.shape != b_arr.shape or a_arr.ndim != 1:
        raise ValueError(f"paired comparison needs two equal-length lists, got shapes {a_arr.shape} and {b_arr.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    d = a_arr - b_arr
    n = len(d)
    if n == 0:
        raise ValueError("paired comparison needs at least one pair")
    mean = float(d.mean())
    low = high = t_p = math.nan
    if n >= 2:
        sd = float(d.std(ddof=1))
        half = float(stats.t.ppf((1 + level) / 2, n - 1)) * sd / math.sqrt(n)
        low, high = mean - half, mean + half
        # a constant difference has no spread: exact when it is 0, certain otherwise (scipy would give nan)
        t_p = float(stats.ttest_rel(a_arr, b_arr).pvalue) if sd > 0 else (1.0 if mean == 0 else 0.0)
    w_p = float(stats.wilcoxon(d).pvalue) if np.any(d != 0) else 1.0
    return PairedComparison(tuple(float(x) for x in d), mean, low, high, t_p, w_p, level)


def _seed_order(key: Hashable) -> tuple:
    text = str(key)
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)


def paired_by_key(a: Mapping[Hashable, float], b: Mapping[Hashable, float],
                  level: float = 0.95) -> PairedComparison | None:
    """:func:`paired_comparison` over the keys (seeds) that ``a`` and ``b`` share, in sorted key order; ``None``
    where they share none."""
    keys = sorted(set(a) & set(b), key=_seed_order)
    if not keys:
        return None
    return paired_comparison([a[k] for k in keys], [b[k] for k in keys], level)
