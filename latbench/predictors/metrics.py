"""How well predictions match measurements: shares within +-5% / +-10%, RMSPE, rank correlation, coverage."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from latbench.predictors.protocol import interval


def spearman(a, b) -> float:
    """Rank correlation of two sequences (ties get their mean rank); NaN for fewer than two."""
    if len(a) < 2:
        return float("nan")
    return float(np.corrcoef(pd.Series(list(a)).rank(), pd.Series(list(b)).rank())[0, 1])


def accuracy(predicted: np.ndarray, measured: np.ndarray, rel_sigma: np.ndarray | None = None) -> dict[str, float]:
    """Share within +-5% / +-10%, RMSPE, MAPE, Spearman, the median signed relative error and the errors' standard
    deviation (a wrong level apart from a wrong spread) and (with sigmas) 90% interval coverage."""

    err = (predicted - measured) / measured
    out = {
        "n": len(measured),
        "within_5pct": float(np.mean(np.abs(err) <= 0.05)),
        "within_10pct": float(np.mean(np.abs(err) <= 0.10)),
        "rmspe": float(np.sqrt(np.mean(err**2))),
        "mape": float(np.mean(np.abs(err))),
        "max_abs_pct_error": float(np.max(np.abs(err))) if len(err) else math.nan,
        "spearman": spearman(predicted, measured),
        "median_error": float(np.median(err)) if len(err) else math.nan,
        "error_sd": float(np.std(err)) if len(err) else math.nan,
    }
    if rel_sigma is not None:
        lo, hi = interval(predicted, rel_sigma)
        out["coverage_90"] = float(np.mean((measured >= lo) & (measured <= hi)))
    return out
