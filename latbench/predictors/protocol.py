"""What a latency predictor is: the ``Predictor`` protocol and the ``Prediction`` it returns.

A predictor is built from a profile (``from_profile``), calibrated on whole networks measured
in the profile's state (``fit``, as a scikit-learn estimator is fitted), and answers for one
candidate (``predict``: latency, 90% interval, per-layer breakdown) or many at once
(``predict_many``: latency and relative spread, vectorised). ``latbench.predictors.PREDICTORS``
registers each kind by name; ``register_predictor`` adds one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from latbench.arch import Arch

Z90 = 1.6448536269514722  # two-sided 90% interval of a normal


@dataclass
class Prediction:
    """Predicted latency (us) with a 90% interval; ``breakdown`` maps layers to their share. ``family_sigma`` is
    the part of ``rel_sigma`` that every network of the candidate's family shares (the level of a family no
    calibration network came from): it cancels in the ratio of two such networks."""

    latency_us: float
    low_us: float
    high_us: float
    rel_sigma: float
    predictor: str
    breakdown: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    family_sigma: float = 0.0

    @property
    def rel_halfwidth(self) -> float:
        return (self.high_us - self.low_us) / (2 * self.latency_us) if self.latency_us > 0 else math.inf


def interval(pred: np.ndarray, rel_sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A log-normal 90% interval around ``pred`` with relative spread ``rel_sigma``."""
    factor = np.exp(np.minimum(Z90 * rel_sigma, 50.0))  # an unbounded spread stays finite
    return pred / factor, pred * factor


@runtime_checkable
class Predictor(Protocol):
    """Latency of candidate architectures in microseconds, from one device profile."""

    name: str
    calibration: dict[str, Any]  # what ``fit`` found, stored in ``profile.json``

    @classmethod
    def from_profile(cls, meta: dict[str, Any], layers: Any, folder: Path | None = None) -> Predictor:
        """An uncalibrated predictor from a profile's metadata and layer samples (``folder``: where
        a stored model may be loaded from)."""
        ...

    def fit(self, archs: Sequence[Arch], measured_us: np.ndarray, prior: dict[str, float] | None = None) -> None:
        """Calibrate on whole networks measured in the profile's state (held toward ``prior``'s
        coefficients where the predictor has them)."""
        ...

    def predict(self, arch: Arch) -> Prediction:
        ...

    def predict_many(self, archs: Sequence[Arch]) -> tuple[np.ndarray, np.ndarray]:
        """(latency_us, rel_sigma), each (N,), in the order of ``archs``."""
        ...
