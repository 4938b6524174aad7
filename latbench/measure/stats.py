"""Order statistics for latency samples: a distribution-free confidence interval of the median."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np

_EXACT_LIMIT = 1000  # exact binomial ranks up to this many samples, normal approximation above


def _binomial_cdf_half(n: int) -> np.ndarray:
    """P(B <= k) for B ~ Binomial(n, 1/2), k = 0..n."""
    k = np.arange(n + 1)
    log_pmf = (
        math.lgamma(n + 1)
        - np.array([math.lgamma(i + 1) + math.lgamma(n - i + 1) for i in k])
        - n * math.log(2.0)
    )
    return np.cumsum(np.exp(log_pmf))


@lru_cache(maxsize=4096)
def median_ci_ranks(n: int, level: float = 0.95) -> tuple[int, int] | None:
    """1-based ranks (lo, hi) of the sorted samples bounding the median with coverage >= level.

    Distribution-free: the number of samples below the true median is Binomial(n, 1/2).
    Returns None when n is too small for any interval to reach ``level``.
    """
    if n < 1:
        return None
    alpha = 1.0 - level
    if n <= _EXACT_LIMIT:
        cdf = _binomial_cdf_half(n)
        # largest l with P(B <= l - 1) <= alpha / 2; coverage of [x(l), x(n-l+1)] is 1 - 2 P(B <= l-1)
        candidates = np.nonzero(cdf <= alpha / 2 + 1e-15)[0]
        if candidates.size == 0:
            return None
        lo = int(candidates[-1]) + 1
    else:
        z = _normal_quantile(1 - alpha / 2)
        lo = math.floor(n / 2 - z * math.sqrt(n) / 2)
    lo = max(lo, 1)
    return lo, n - lo + 1


def _normal_quantile(p: float) -> float:
    """Inverse standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9)."""
    a = [-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
         1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00]
    b = [-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
         6.680131188771972e01, -1.328068155288572e01]
    c = [-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
         -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00]
    d = [7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00, 3.754408661907416e00]
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile level must be in (0, 1), got {p}")
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / (
            (((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    if p > 1 - 0.02425:
        return -_normal_quantile(1 - p)
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (
        ((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


def median_ci(samples: np.ndarray | list[float], level: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median; (min, max) when n is too small."""
    x = np.sort(np.asarray(samples, dtype=float))
    if x.size == 0:
        return (math.nan, math.nan)
    ranks = median_ci_ranks(x.size, level)
    if ranks is None:
        return (float(x[0]), float(x[-1]))
    lo, hi = ranks
    return (float(x[lo - 1]), float(x[hi - 1]))


@dataclass(frozen=True)
class Summary:
    """Robust summary of latency samples, in the samples' unit (microseconds in latbench)."""

    n: int
    median: float
    mean: float
    min: float
    max: float
    std: float
    p90: float
    p99: float
    iqr: float
    ci_low: float
    ci_high: float
    ci_level: float
    ci_method: str = "samples"

    @classmethod
    def of(cls, samples: np.ndarray | list[float], level: float = 0.95,
           blocks: np.ndarray | list[float] | None = None) -> Summary:
        """Summarise ``samples``; with ``blocks`` (block medians), the CI of the median uses them."""
        x = np.asarray(samples, dtype=float)
        if x.size == 0:
            raise ValueError("cannot summarise an empty set of samples")
        q25, q50, q75, q90, q99 = np.percentile(x, [25, 50, 75, 90, 99])
        use_blocks = blocks is not None and len(blocks) >= 2
        lo, hi = median_ci(blocks if use_blocks else x, level)
        lo, hi = min(lo, float(q50)), max(hi, float(q50))
        return cls(
            n=int(x.size), median=float(q50), mean=float(x.mean()), min=float(x.min()),
            max=float(x.max()), std=float(x.std(ddof=1)) if x.size > 1 else 0.0,
            p90=float(q90), p99=float(q99), iqr=float(q75 - q25),
            ci_low=lo, ci_high=hi, ci_level=level, ci_method="blocks" if use_blocks else "samples",
        )

    @property
    def rel_ci_halfwidth(self) -> float:
        """Half the width of the median's confidence interval, relative to the median."""
        if self.median <= 0 or math.isnan(self.ci_low):
            return math.inf
        return (self.ci_high - self.ci_low) / (2.0 * self.median)

    def to_dict(self) -> dict:
        return asdict(self)
