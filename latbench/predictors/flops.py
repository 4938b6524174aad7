"""The FLOPs baseline: latency linear in FLOPs, fitted on the profile's whole-network samples."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latbench.arch import Arch
from latbench.predictors.batch import CandidateBatch, group_by_base
from latbench.predictors.calibration import fit_relative
from latbench.predictors.protocol import Prediction, interval


class FlopsPredictor:
    """``latency = intercept + us_per_mflop * MFLOPs`` by least squares on relative error."""

    name = "flops"

    def __init__(self) -> None:
        self.calibration: dict[str, Any] = {"intercept_us": 0.0, "us_per_mflop": 0.0, "rel_sigma": 0.0}

    @classmethod
    def from_profile(cls, meta: dict[str, Any], layers: Any = None, folder: Path | None = None) -> FlopsPredictor:
        """FLOPs need nothing of the profile but its networks (given to ``fit``)."""
        return cls()

    def _mflops(self, archs: Sequence[Arch]) -> tuple[np.ndarray, np.ndarray]:
        groups, order = group_by_base(archs)
        return np.concatenate([CandidateBatch.of(g).flops() for g in groups]) / 1e6, order

    def fit(self, archs: Sequence[Arch], measured_us: np.ndarray, prior: dict[str, float] | None = None) -> None:
        """Least squares on the networks (two terms need no prior to hold them)."""
        mflops, order = self._mflops(archs)
        feats = np.stack([np.ones_like(mflops), mflops], axis=1)
        coef, sigma = fit_relative(feats, np.asarray(measured_us, dtype=float)[order])
        self.calibration = {"intercept_us": float(coef[0]), "us_per_mflop": float(coef[1]), "rel_sigma": sigma,
                            "n": len(order)}

    def predict_many(self, archs: Sequence[Arch]) -> tuple[np.ndarray, np.ndarray]:
        mflops, order = self._mflops(archs)
        pred = np.empty(len(archs))
        pred[order] = self.calibration["intercept_us"] + self.calibration["us_per_mflop"] * mflops
        return pred, np.full(len(archs), self.calibration["rel_sigma"])

    def predict(self, arch: Arch) -> Prediction:
        (pred,), (sig,) = self.predict_many([arch])
        lo, hi = interval(np.array([pred]), np.array([sig]))
        return Prediction(float(pred), float(lo[0]), float(hi[0]), float(sig), self.name)
