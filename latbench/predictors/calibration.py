"""The fits that turn per-layer sums (or FLOPs) into network latency, shared by the predictors."""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls


def fit_relative(features: np.ndarray, measured: np.ndarray, nonnegative: bool = False) -> tuple[np.ndarray, float]:
    """Least squares minimising relative error; returns (coefficients, RMS relative residual)."""
    weights = 1.0 / measured
    a, b = features * weights[:, None], np.ones_like(measured)
    if nonnegative:
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
