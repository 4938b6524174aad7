"""Honest latency measurement: adaptive repeats, robust statistics, interleaved comparison."""

from latbench.measure.adaptive import MeasureSettings, measure, measure_fixed, warm_up
from latbench.measure.compare import Comparison, Ratio, compare
from latbench.measure.record import Measurement
from latbench.measure.stats import Summary, median_ci, median_ci_ranks
from latbench.measure.timers import CudaEventTimer, HostTimer, Timer

__all__ = [
    "Comparison", "CudaEventTimer", "HostTimer", "MeasureSettings", "Measurement", "Ratio", "Summary", "Timer",
    "compare", "measure", "measure_fixed", "median_ci", "median_ci_ranks", "warm_up",
]
