"""Latency predictors read a device profile and answer in microseconds, without building modules."""

from latbench.predictors.base import Prediction, Rescaled, accuracy
from latbench.predictors.flops import FlopsPredictor
from latbench.predictors.lut import LutPredictor, OutOfProfileError

PREDICTORS = ("lut", "flops")

__all__ = ["PREDICTORS", "FlopsPredictor", "LutPredictor", "OutOfProfileError", "Prediction", "Rescaled", "accuracy"]
