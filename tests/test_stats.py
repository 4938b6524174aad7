import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from latbench.measure.stats import Summary, _normal_quantile, median_ci, median_ci_ranks


@pytest.mark.parametrize("n", [6, 10, 17, 50, 101, 400, 1000])
def test_exact_ranks_reach_the_level_and_are_the_tightest(n):
    lo, hi = median_ci_ranks(n, 0.95)
    assert hi == n - lo + 1
    coverage = 1 - 2 * binom.cdf(lo - 1, n, 0.5)
    assert coverage >= 0.95
    tighter = 1 - 2 * binom.cdf(lo, n, 0.5)  # moving both ends one rank inwards
    assert tighter < 0.95


def test_too_few_samples_have_no_interval_and_fall_back_to_the_range():
    assert median_ci_ranks(5, 0.95) is None
    assert median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)


def test_normal_approximation_joins_the_exact_ranks():
    exact_lo, _ = median_ci_ranks(1000)
    approx_lo, _ = median_ci_ranks(1001)
    assert abs(exact_lo - approx_lo) <= 1


def test_normal_quantile():
    assert _normal_quantile(0.975) == pytest.approx(1.959964, abs=1e-5)
    assert _normal_quantile(0.01) == pytest.approx(-2.326348, abs=1e-5)


def test_interval_covers_the_true_median_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    true_median = np.exp(0.0)  # lognormal(0, 0.5) has median 1
    hits = 0
    trials = 2000
    for _ in range(trials):
        lo, hi = median_ci(rng.lognormal(0.0, 0.5, size=40))
        hits += lo <= true_median <= hi
    assert 0.94 <= hits / trials <= 0.99


def test_median_and_its_interval_ignore_a_tail_of_outliers():
    rng = np.random.default_rng(1)
    clean = rng.normal(100.0, 1.0, size=400)
    dirty = clean.copy()
    dirty[::10] = 10_000.0  # 10% of the runs hit by a context switch
    s_clean, s_dirty = Summary.of(clean), Summary.of(dirty)
    assert abs(s_dirty.median - s_clean.median) < 1.0
    assert s_dirty.ci_high < 102.0
    assert s_dirty.mean > 1000.0  # the mean is ruined, which is why it is not the headline


def test_summary_fields():
    s = Summary.of(list(range(1, 101)))
    assert s.n == 100 and s.median == 50.5 and s.min == 1 and s.max == 100
    assert s.p90 == pytest.approx(90.1) and s.iqr == pytest.approx(49.5)
    assert s.rel_ci_halfwidth == pytest.approx((s.ci_high - s.ci_low) / (2 * 50.5))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=0.1, max_value=1e6, allow_nan=False), min_size=1, max_size=300))
def test_interval_always_brackets_the_median(samples):
    s = Summary.of(samples)
    assert s.ci_low <= s.median <= s.ci_high
    assert s.min <= s.ci_low and s.ci_high <= s.max
