"""Latency predictors read a device profile and answer in microseconds, without building modules."""

from latbench.predictors.base import Prediction, Rescaled, accuracy
from latbench.predictors.flops import FlopsPredictor
from latbench.predictors.layer_sum import OutOfProfileError
from latbench.predictors.learned import LEARNED, LearnedPredictor
from latbench.predictors.lut import LutPredictor

PREDICTORS = ("lut", *LEARNED, "flops")

__all__ = ["LEARNED", "PREDICTORS", "FlopsPredictor", "LearnedPredictor", "LutPredictor", "OutOfProfileError",
           "Prediction", "Rescaled", "accuracy"]
