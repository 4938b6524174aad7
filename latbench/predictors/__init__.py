"""Latency predictors read a device profile and answer in microseconds, without building modules."""

from latbench.predictors.base import Prediction, Rescaled, accuracy
from latbench.predictors.flops import FlopsPredictor
from latbench.predictors.layer_sum import OutOfProfileError
from latbench.predictors.learned import LEARNED, LearnedPredictor
from latbench.predictors.lut import LutPredictor

PREDICTORS = ("lut", *LEARNED, "flops")


def build_predictor(kind: str, meta: dict, layers, folder=None):
    """An uncalibrated predictor of ``kind`` from a profile's metadata and layer samples
    (``folder``: where a stored learned model may be loaded from)."""
    if kind == "lut":
        return LutPredictor.from_profile(meta, layers)
    if kind == "flops":
        return FlopsPredictor()
    return LearnedPredictor.from_profile(kind, meta, layers, folder)

__all__ = [
    "LEARNED",
    "PREDICTORS",
    "FlopsPredictor",
    "LearnedPredictor",
    "LutPredictor",
    "OutOfProfileError",
    "Prediction",
    "Rescaled",
    "accuracy",
    "build_predictor",
]
