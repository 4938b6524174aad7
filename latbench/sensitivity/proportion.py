"""FLOPs proportion against latency proportion, per layer.

A layer's *latency share* is its part of the summed per-layer latency: predicted (the
predictor's breakdown, calibration scale applied) and, with a deployed network, measured in
context by the engine's own profiler (ONNX Runtime's), where engine nodes are mapped back to
source modules. A layer is flagged

* ``latency-heavy`` when its latency share is at least ``MIN_SHARE`` and ``FLAG_RATIO`` times its
  FLOPs share (memory-bound and overhead-bound layers: depthwise and 1x1 convs, small late
  layers, element-wise ops with no FLOPs at all);
* ``latency-light`` when its FLOPs share is at least ``MIN_SHARE`` and its latency share under
  ``1 / FLAG_RATIO`` of it (FLOPs overstate what pruning it buys).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from latbench.arch.table import layer_table

FLAG_RATIO = 2.0
MIN_SHARE = 0.01


def proportion(arch, predictor, runnable: Any = None, runs: int = 20):
    """One row per active layer: ``latbench.arch.table.layer_table``'s columns (FLOPs and
    parameter shares) plus ``predicted_us``/``predicted_share``, with ``runnable`` (the deployed
    network) ``measured_us``/``measured_share``, then ``latency_to_flops`` (latency share over
    FLOPs share, measured where available) and ``flag``."""
    table = layer_table(arch)
    breakdown = {row["layer"]: row["latency_us"] for row in predictor.predict(arch).breakdown}
    table["predicted_us"] = table["name"].map(breakdown).fillna(0.0).astype(float)
    table["predicted_share"] = table["predicted_us"] / max(table["predicted_us"].sum(), 1e-12)
    share = "predicted_share"
    if runnable is not None:
        times = runnable.layer_times(runs)
        per_layer = times.groupby("layer")["time_us"].sum()
        table["measured_us"] = table["name"].map(per_layer).fillna(0.0).astype(float)
        table["measured_share"] = table["measured_us"] / max(float(times["time_us"].sum()), 1e-12)
        share = "measured_share"
    with np.errstate(divide="ignore", invalid="ignore"):
        table["latency_to_flops"] = np.where(table["flops_share"] > 0, table[share] / table["flops_share"], np.inf)
    table["flag"] = ""
    heavy = (table[share] >= MIN_SHARE) & (table[share] >= FLAG_RATIO * table["flops_share"])
    light = (table["flops_share"] >= MIN_SHARE) & (table[share] * FLAG_RATIO <= table["flops_share"])
    table.loc[heavy, "flag"] = "latency-heavy"
    table.loc[light, "flag"] = "latency-light"
    return table
