"""Where the time goes and what pruning each layer buys: FLOPs vs latency proportion, latency
sensitivity, staircase curves and the report that draws them. Every function returns a pandas
DataFrame; the plots and ``latbench analyze`` are drawn from those same frames."""

from latbench.sensitivity.latency import RATIOS, measure_sensitivity, rank_groups, sensitivity
from latbench.sensitivity.proportion import proportion
from latbench.sensitivity.staircase import staircase_curves

__all__ = ["RATIOS", "measure_sensitivity", "proportion", "rank_groups", "sensitivity", "staircase_curves"]
