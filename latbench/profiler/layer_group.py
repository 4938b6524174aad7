"""Layer samples measured in groups, interleaved with the reference layer, each as a paired ratio to it.

A shared machine's speed switches between modes well apart, in phases of a fraction of a second to seconds,
and not alike for every layer. Measured one after another, each in about 0.2 s, a layer sample gets whatever
phase the machine was in, and the reference layer measured every few samples does not see the same phase.
Measured in groups, every layer of the group and the reference layer one block each per round, in rotating
order, each layer's latency is estimated per round against the reference layer's block of the same round, and
the median of those ratios is taken: over the same time per sample, samples repeat about three times more
closely (``benchmarks/layer_sample_noise.py``; numbers in the README).

A group's rows are written together: the reference layer's row, the layers' rows and the reference layer's row
again, so that ``reference_factors`` (which interpolates the reference between its rows) brings the whole group
by the one reference measurement it was paired with. A layer row's ``median_us`` (and CI) is its paired ratio
times the reference layer's median in the group; ``p90_us`` and ``runs`` are its own samples', ``wall_s`` its
share of the group's time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from latbench.arch.spec import LayerSpec
from latbench.measure import MeasureSettings, compare
from latbench.profiler.journal import measurement_row
from latbench.profiler.microbench import build_layer

#: layer samples measured together with one reference measurement
GROUP_SIZE = 20
#: fewest rounds (one block of every member each) of a group
MIN_ROUNDS = 6
REFERENCE = "reference"


def layer_groups(items: list[tuple[LayerSpec, int]]) -> list[list[tuple[LayerSpec, int]]]:
    """Consecutive (spec, pass) items in groups of at most ``GROUP_SIZE`` that never span two passes."""
    groups: list[list[tuple[LayerSpec, int]]] = []
    for item in items:
        if groups and len(groups[-1]) < GROUP_SIZE and groups[-1][0][1] == item[1]:
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def group_budget_s(members: int, settings: MeasureSettings) -> float:
    """Time for a group of ``members`` layers and the reference layer: what measuring each alone would take at
    least (warm-up and minimum time per sample)."""
    return (members + 1) * (settings.warmup_min_s + settings.min_time_s)


def measure_group(backend, reference: LayerSpec, specs: list[LayerSpec], settings: MeasureSettings,
                  clock: Callable[[], float] = time.perf_counter) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Measure ``specs`` interleaved with ``reference``; returns the measurement columns of the reference layer's
    journal row and of one row per spec."""
    runnables = {REFERENCE: backend.deploy(*build_layer(reference))}
    runnables |= {str(i): backend.deploy(*build_layer(spec)) for i, spec in enumerate(specs)}
    result = compare(runnables, replace(settings, budget_s=group_budget_s(len(specs), settings)), baseline=REFERENCE,
                     min_rounds=MIN_ROUNDS, clock=clock)
    ref_row = measurement_row(result.measurements[REFERENCE])
    level = float(result.measurements[REFERENCE].summary.median)
    share = round(result.wall_time_s / len(runnables), 3)
    rows = []
    for i in range(len(specs)):
        ratio = result.ratios[str(i)]
        rows.append({**measurement_row(result.measurements[str(i)]), "median_us": round(ratio.ratio * level, 3),
                     "ci_low_us": round(ratio.ci_low * level, 3), "ci_high_us": round(ratio.ci_high * level, 3),
                     "wall_s": share})
    return {**ref_row, "wall_s": share}, rows
