"""Staircase curves: one layer's latency as its output channels sweep from 1 to full width.

Engines compute channels in blocks (vector widths on CPUs, tiles on GPUs), so latency is flat
within a block and jumps at its edge: pruning a few channels inside a block buys nothing, pruning
to just below an edge buys a whole step. Each curve is measured on the backend (the layer alone,
built as the engine sees it, like the profiler's samples) and/or predicted by a profile's
layer table, at every ``step`` channels (1, or the device's natural step; see ``sweep_widths``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from latbench.errors import InvalidValueError
from latbench.measure import measure
from latbench.predictors.batch import CandidateBatch
from latbench.profile import spec_key
from latbench.profiler.microbench import build_layer
from latbench.profiler.run import LAYER_SETTINGS

SWEEPABLE = ("conv", "linear")


def key_layers(arch, predictor, n: int = 4) -> list[str]:
    """The ``n`` slowest conv/linear layers by predicted latency, one per distinct shape, among those whose
    output channels can be pruned (not the network's output)."""
    by_name = {layer.name: layer for layer in arch.active_layers()}
    shares = sorted(predictor.predict(arch).breakdown, key=lambda b: -b["latency_us"])
    chosen, seen = [], set()
    for b in shares:
        layer = by_name.get(b["layer"])
        if layer is None or layer.spec.op not in SWEEPABLE or len(layer.out_groups) != 1 \
                or arch.base.groups[layer.out_groups[0]].fixed:
            continue
        key = spec_key(arch.spec(layer))
        if key not in seen:
            seen.add(key)
            chosen.append(layer.name)
        if len(chosen) == n:
            break
    return chosen


def sweep_widths(channels: int, step: int = 1, max_points: int = 64) -> list[int]:
    """Output widths to sweep: every ``step`` from 1 when that is at most ``max_points`` widths;
    for wider layers, every ``step`` over the top three quarters of the points (the widths a
    pruner tries first, where the staircase decides what a few channels buy) and a coarse sweep
    below."""
    if channels <= max_points * step:
        return sorted({1, channels, *range(step, channels + 1, step)})
    dense = list(range(channels, channels - (3 * max_points // 4) * step, -step))
    coarse = np.linspace(1, dense[-1], max_points - len(dense), endpoint=False).round().astype(int)
    return sorted({*coarse.tolist(), *dense})


def staircase_curves(arch, layers: Sequence[str], predictor=None, backend=None, step: int = 1,
                     max_points: int = 64, progress: Callable[[dict], None] | None = None):
    """Long table ``layer, op, out_channels, full_channels, predicted_us, measured_us`` (a column
    is NaN when its source is not given). Predictions are the layer's own latency from
    ``predictor.layer_latency`` plus the engine overhead the isolated measurement also pays."""
    by_name = {layer.name: (j, layer) for j, layer in enumerate(arch.base.layers)}
    rows = []
    for name in layers:
        if name not in by_name:
            raise InvalidValueError(f"{arch.name}: no layer named {name!r}")
        j, layer = by_name[name]
        spec = arch.spec(layer)
        if spec.op not in SWEEPABLE or len(layer.out_groups) != 1:
            raise InvalidValueError(f"{name}: staircase curves sweep conv/linear layers, not {spec.op}")
        widths = sweep_widths(spec.out_channels, step, max_points)
        predicted = np.full(len(widths), np.nan)
        if predictor is not None:
            gid = layer.out_groups[0]
            if arch.base.groups[gid].fixed:
                raise InvalidValueError(f"{name}: its output channels are fixed (network output)")
            batch = CandidateBatch.of([arch.with_widths({gid: w}) for w in widths])
            predicted = predictor.layer_latency(batch).latency[:, j] + getattr(predictor, "overhead_us", 0.0)
        measured = np.full(len(widths), np.nan)
        if backend is not None:
            measured = _measure(backend, spec, widths, progress, name)
        rows += [{"layer": name, "op": spec.op, "out_channels": w, "full_channels": spec.out_channels,
                  "predicted_us": float(p), "measured_us": float(m)}
                 for w, p, m in zip(widths, predicted, measured, strict=True)]
    return pd.DataFrame(rows, columns=["layer", "op", "out_channels", "full_channels", "predicted_us",
                                       "measured_us"])


def _measure(backend, spec, widths: list[int], progress, name: str) -> np.ndarray:
    out = np.empty(len(widths))
    for i, w in enumerate(widths):
        module, x = build_layer(replace(spec, out_channels=w))
        out[i] = measure(backend.deploy(module, x), LAYER_SETTINGS).median_us
        if progress is not None:
            progress({"layer": name, "done": i + 1, "total": len(widths)})
    return out
