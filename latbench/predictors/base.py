"""What every latency predictor returns, and the calibration fit they share."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

Z90 = 1.6448536269514722  # two-sided 90% interval of a normal


@dataclass
class Prediction:
    """Predicted latency (us) with a 90% interval; ``breakdown`` maps layers to their share."""

    latency_us: float
    low_us: float
    high_us: float
    rel_sigma: float
    predictor: str
    breakdown: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def rel_halfwidth(self) -> float:
        return (self.high_us - self.low_us) / (2 * self.latency_us) if self.latency_us > 0 else math.inf


def interval(pred: np.ndarray, rel_sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A log-normal 90% interval around ``pred`` with relative spread ``rel_sigma``."""
    factor = np.exp(np.minimum(Z90 * rel_sigma, 50.0))  # an unbounded spread stays finite
    return pred / factor, pred * factor


def fit_relative(features: np.ndarray, measured: np.ndarray, nonnegative: bool = False) -> tuple[np.ndarray, float]:
    """Least squares minimising relative error; returns (coefficients, RMS relative residual)."""
    weights = 1.0 / measured
    a, b = features * weights[:, None], np.ones_like(measured)
    if nonnegative:
        from scipy.optimize import nnls

        coef, _ = nnls(a, b)
    else:
        coef, *_ = np.linalg.lstsq(a, b, rcond=None)
    residual = (features @ coef - measured) / measured
    dof = max(1, len(measured) - features.shape[1])
    return coef, float(np.sqrt(np.sum(residual**2) / dof))


#: how strongly ``fit_toward`` holds coefficients to the prior's (a relative change of 100% in one
#: coefficient costs as much as a 17% relative error on one network); chosen on the 2 -> 1 thread
#: adaptation in ``benchmarks/predictor_accuracy.py``
PRIOR_STRENGTH = 0.03


def fit_toward(features: np.ndarray, measured: np.ndarray, prior: np.ndarray, strength: float = PRIOR_STRENGTH,
               iterations: int = 20) -> np.ndarray:
    """Non-negative coefficients minimising relative error on few samples, held toward ``prior``.

    The penalty is on each coefficient's relative departure from ``s * prior``, where ``s`` (the
    device's overall speed against the prior's) is refitted in turn with the coefficients: with
    few samples the fit keeps the prior's structure (how layers combine into a network) and moves
    only what the data ask for. Coefficients the prior has at zero are held near zero.
    """
    from scipy.optimize import nnls

    prior = np.asarray(prior, dtype=float)
    weights = 1.0 / measured
    speed = float(np.median(measured / np.maximum(features @ prior, 1e-9)))
    coef = speed * prior
    for _ in range(iterations):
        scale = speed * (np.abs(prior) + 0.05 * np.abs(prior).mean()) + 1e-12
        a = np.vstack([features * weights[:, None], np.sqrt(strength) * np.diag(1.0 / scale)])
        b = np.concatenate([np.ones_like(measured), np.sqrt(strength) * speed * prior / scale])
        coef, _ = nnls(a, b)
        new = float(np.sum(coef * prior / scale**2) / max(np.sum(prior**2 / scale**2), 1e-300))
        if new <= 0 or abs(new - speed) <= 1e-6 * speed:
            break
        speed = new
    return coef


def leave_one_out_spread(fit, features: np.ndarray, measured: np.ndarray) -> float:
    """RMS relative error of each sample predicted by ``fit(features, measured)`` on the others."""
    n = len(measured)
    if n < 3:
        return 1.0
    errors = []
    for i in range(n):
        keep = np.arange(n) != i
        errors.append(features[i] @ fit(features[keep], measured[keep]) / measured[i] - 1.0)
    return float(np.sqrt(np.mean(np.square(errors))))


def spearman(a, b) -> float:
    """Rank correlation of two sequences (ties get their mean rank); NaN for fewer than two."""
    if len(a) < 2:
        return float("nan")
    return float(np.corrcoef(pd.Series(list(a)).rank(), pd.Series(list(b)).rank())[0, 1])


def accuracy(predicted: np.ndarray, measured: np.ndarray, rel_sigma: np.ndarray | None = None) -> dict[str, float]:
    """Share within +-5% / +-10%, RMSPE, MAPE, Spearman and (with sigmas) 90% interval coverage."""

    err = (predicted - measured) / measured
    out = {
        "n": len(measured),
        "within_5pct": float(np.mean(np.abs(err) <= 0.05)),
        "within_10pct": float(np.mean(np.abs(err) <= 0.10)),
        "rmspe": float(np.sqrt(np.mean(err**2))),
        "mape": float(np.mean(np.abs(err))),
        "max_abs_pct_error": float(np.max(np.abs(err))) if len(err) else math.nan,
        "spearman": spearman(predicted, measured),
    }
    if rel_sigma is not None:
        lo, hi = interval(predicted, rel_sigma)
        out["coverage_90"] = float(np.mean((measured >= lo) & (measured <= hi)))
    return out


class Rescaled:
    """A predictor scaled, per base architecture, by measurements taken now.

    A shared machine's speed drifts between profiling and use. Measuring a few networks of a
    family now and scaling that family's predictions by the median of measured / predicted over
    them brings the profile to the machine's current state and keeps its relative structure.
    Several references (say, some of the profile's own calibration networks) average out their
    own measurement noise; one is enough on a quiet machine. Families without a reference are
    scaled by ``default`` (1: the profile's absolute scale).
    """

    def __init__(self, inner, references: list[tuple[Any, float]], default: float = 1.0,
                 label: str = "rescaled") -> None:
        self.inner = inner
        self.name = f"{inner.name}+{label}"
        self.default = default
        predicted, _ = inner.predict_many([arch for arch, _ in references]) if references else ([], None)
        ratios: dict[str, list[float]] = {}
        for (arch, measured), p in zip(references, predicted, strict=True):
            ratios.setdefault(arch.base.digest, []).append(measured / p)
        self.factors = {digest: float(np.median(r)) for digest, r in ratios.items()}
        self.calibration = {**inner.calibration, "rescale_factors": list(self.factors.values())}

    def __getattr__(self, name: str) -> Any:  # anything else (layer tables, plan) is the inner predictor's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _factor(self, archs) -> np.ndarray:
        return np.array([self.factors.get(a.base.digest, self.default) for a in archs])

    def predict_many(self, archs) -> tuple[np.ndarray, np.ndarray]:
        latency, sigma = self.inner.predict_many(archs)
        return latency * self._factor(archs), sigma

    def predict(self, arch) -> Prediction:
        p = self.inner.predict(arch)
        f = float(self._factor([arch])[0])
        return Prediction(p.latency_us * f, p.low_us * f, p.high_us * f, p.rel_sigma, self.name,
                          [{**row, "latency_us": row["latency_us"] * f} for row in p.breakdown], p.notes)
