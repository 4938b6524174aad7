"""A predictor scaled per base architecture by measurements taken now."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from latbench.predictors.protocol import Prediction


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
        return replace(p, latency_us=p.latency_us * f, low_us=p.low_us * f, high_us=p.high_us * f, predictor=self.name,
                       breakdown=[{**row, "latency_us": row["latency_us"] * f} for row in p.breakdown])
