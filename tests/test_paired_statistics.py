"""Paired per-seed comparison of two initialisations: values worked out by hand and checked against scipy."""

import math

import numpy as np
import pytest
from scipy import stats

from dcl_cstp_ext.metrics import paired_by_key, paired_comparison


def test_three_pairs_by_hand():
    # d = (1, 2, 3): mean 2, sd 1; t_{2, 0.975} = 4.302653, half width 4.302653 / sqrt(3) = 2.484138
    # t = 2 / (1 / sqrt 3) = sqrt 12; with 2 degrees of freedom F(t) = 1/2 + t / (2 sqrt(2 + t^2)), so
    # p = 1 - sqrt(12) / sqrt(14) = 0.074180; signed ranks all positive: exact P(W- <= 0) = 1/8, two-sided 0.25
    c = paired_comparison([11.0, 12.0, 13.0], [10.0, 10.0, 10.0])
    assert c.differences == (1.0, 2.0, 3.0) and c.n == 3
    assert c.mean == pytest.approx(2.0)
    assert (c.low, c.high) == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-6)
    assert c.t_p == pytest.approx(1 - math.sqrt(12 / 14), abs=1e-6)
    assert c.wilcoxon_p == pytest.approx(0.25)
    assert c.within_noise and c.verdict() == "within noise"


def test_five_pairs_signed_rank_by_hand_and_interval_clear_of_zero():
    # d = (1, -2, 3, 4, 5): ranks 1..5, W- = 2; subsets of {1..5} summing to <= 2: {}, {1}, {2} -> 3/32, two-sided 6/32
    c = paired_comparison([1, -2, 3, 4, 5], [0, 0, 0, 0, 0])
    assert c.wilcoxon_p == pytest.approx(6 / 32)
    big = paired_comparison([3.1, 2.9, 3.0, 3.2], [1.0, 1.1, 0.9, 1.0])
    assert big.low > 0 and not big.within_noise and big.verdict() == "better"
    assert big.verdict(higher_is_better=False) == "worse"  # a distance that grew


def test_agrees_with_scipy_on_random_pairs():
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 8):
        a, b = rng.normal(size=n), rng.normal(size=n)
        c = paired_comparison(a, b, level=0.9)
        ref = stats.ttest_rel(a, b)
        assert c.t_p == pytest.approx(ref.pvalue)
        lo, hi = ref.confidence_interval(0.9)
        assert (c.low, c.high) == pytest.approx((lo, hi))
        assert c.wilcoxon_p == pytest.approx(stats.wilcoxon(a - b).pvalue)


def test_degenerate_cases():
    one = paired_comparison([0.8], [0.7])
    assert one.n == 1 and math.isnan(one.low) and math.isnan(one.t_p)
    assert one.within_noise  # one pair has no noise estimate: never called a difference
    same = paired_comparison([0.5, 0.6], [0.5, 0.6])
    assert (same.low, same.high, same.t_p, same.wilcoxon_p) == (0.0, 0.0, 1.0, 1.0)
    constant = paired_comparison([1.5, 2.5, 3.5], [1.0, 2.0, 3.0])  # exact in binary: sd is exactly 0
    assert constant.low == 0.5 and constant.t_p == 0.0 and not constant.within_noise
    with pytest.raises(ValueError, match="equal-length"):
        paired_comparison([1, 2], [1])
    with pytest.raises(ValueError, match="at least one pair"):
        paired_comparison([], [])


def test_pairs_by_seed_not_by_position():
    a = {"2": 0.9, "0": 0.5, "1": 0.7, "10": 0.2}
    b = {"1": 0.6, "0": 0.5, "2": 0.7}  # seed 10 has no partner
    c = paired_by_key(a, b)
    assert c.differences == pytest.approx((0.0, 0.1, 0.2))  # seeds 0, 1, 2
    assert paired_by_key({"0": 1.0}, {"1": 1.0}) is None
    assert c.as_dict()["n"] == 3 and c.as_dict()["within_noise"] is True


def test_the_signed_rank_floor_is_scipys_p_when_every_difference_has_one_sign():
    """The report states the smallest p the signed-rank test can give with its pairs: 2 / 2**n, which is scipy's
    exact p for n distinct differences all of one sign (0.25 with 3 pairs, 0.0625 with 5)."""
    from dcl_cstp_ext.metrics import signed_rank_floor

    for n in (2, 3, 5, 6, 8):
        assert signed_rank_floor(n) == pytest.approx(stats.wilcoxon(np.arange(1.0, n + 1)).pvalue)
        assert paired_comparison(np.arange(1.0, n + 1), np.zeros(n)).wilcoxon_p == pytest.approx(signed_rank_floor(n))
    assert (signed_rank_floor(1), signed_rank_floor(3), signed_rank_floor(5)) == (1.0, 0.25, 0.0625)
    with pytest.raises(ValueError, match="at least 1 pair"):
        signed_rank_floor(0)
