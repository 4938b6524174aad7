"""Adaptive layer sampling: after the planned grids, add grid values where latency changes most.

The planned grids space channel counts evenly, so a staircase between two grid values is only
known as the change across the cell. A refinement round looks at every cell interval of every
grid axis (between two neighbouring input or output channel values, for all values of the other
axis) and scores it by the mean absolute latency change across it, in microseconds per sample
needed: that is the most the lookup table's interpolation can be wrong there (a jump in the
middle of the interval), and what its stated uncertainty is made of. Flat intervals (inside a
stair) and narrow ones (one step wide) score nothing. The round inserts the step-aligned midpoint
of the best-scoring intervals until ``batch`` new samples are planned, measures the new grid
row or column (and so a new point of a 1-D grid), and repeats: staircases get bisected down to
the step, smooth ramps get refined where they are steep, and nothing is spent where latency is
flat. Inserted values join the profile's grids, so the lookup table and the learned predictors
both use them.

Before a new point is measured, the lookup table's interpolation of it is kept, so every round
yields an honest held-out error on the cells it was least sure of (a pessimistic estimate of the
error elsewhere). The profiler stops refining when that error (median absolute percentage) is at
most ``target``, or when the time budget is spent.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from latbench.arch.spec import LayerSpec
from latbench.profile import Grid, spec_key, with_channels


@dataclass(frozen=True)
class RefineSettings:
    batch: int = 24  # new layer samples planned per round
    target: float = 0.05  # stop once the round's held-out median error is at most this


@dataclass(frozen=True)
class Insertion:
    """A new value on one axis of one grid, with the lookup table's estimates of its new points."""

    grid: int
    axis: str  # "in" or "out"
    value: int
    score: float  # mean |latency change| (us) across the interval it splits
    points: tuple[tuple[LayerSpec, float], ...]  # (spec, interpolated latency us) to measure

    def to_dict(self, round_: int) -> dict:
        return {"grid": self.grid, "axis": self.axis, "value": self.value, "round": round_,
                "score_us": round(self.score, 3)}


def axis_table(grid: Grid, axis: str, measured: dict[str, float]) -> tuple[list[int], list[int], np.ndarray]:
    """(axis values, other axis values, latency table with NaN where unmeasured); rows follow ``axis``."""
    ins, outs = [c for c, _ in grid.in_values], [c for c, _ in grid.out_values]
    if grid.one_d:
        outs = [0]
    table = np.array([[measured.get(spec_key(with_channels(grid.template, ci, ci if grid.one_d else co)), np.nan)
                       for co in outs] for ci in ins])
    return (ins, outs, table) if axis == "in" else (outs, ins, table.T)


def _spec(grid: Grid, axis: str, value: int, other: int) -> LayerSpec:
    if grid.one_d:
        return with_channels(grid.template, value, value)
    return with_channels(grid.template, value, other) if axis == "in" else with_channels(grid.template, other, value)


def interval_candidates(grids: list[Grid], step: int, measured: dict[str, float]) -> list[Insertion]:
    """Every step-aligned midpoint of a measured cell interval, scored (see the module docstring)."""
    out = []
    for gi, grid in enumerate(grids):
        for axis in ("in",) if grid.one_d else ("in", "out"):
            values, others, table = axis_table(grid, axis, measured)
            for i in range(len(values) - 1):
                a, b = values[i], values[i + 1]
                mid = int(round((a + b) / 2 / step) * step)
                if not a < mid < b:
                    continue
                lo, hi = table[i], table[i + 1]
                ok = np.isfinite(lo) & np.isfinite(hi)
                if not ok.any():
                    continue
                t = (mid - a) / (b - a)
                points = tuple((_spec(grid, axis, mid, o), float(lo[j] + t * (hi[j] - lo[j])))
                               for j, o in enumerate(others) if ok[j])
                out.append(Insertion(gi, axis, mid, float(np.mean(np.abs(hi - lo)[ok])), points))
    return out


def choose(candidates: list[Insertion], batch: int) -> list[Insertion]:
    """Best-scoring insertions until ``batch`` new samples are planned (at least one insertion)."""
    picked, planned = [], 0
    for c in sorted(candidates, key=lambda c: -c.score):
        if c.score <= 0 or planned >= batch:
            break
        if planned + len(c.points) > batch and picked:
            continue
        picked.append(c)
        planned += len(c.points)
    return picked


def insert(grids: list[Grid], insertions: list[dict]) -> list[Grid]:
    """``grids`` with the inserted values (``Insertion.to_dict`` records) on their axes; an inserted
    value's pass is ``1000 + round``, after every planned pass."""
    grids = list(grids)
    for rec in insertions:
        g = grids[rec["grid"]]
        field = "in_values" if rec["axis"] == "in" else "out_values"
        values = dict(getattr(g, field))
        values.setdefault(int(rec["value"]), 1000 + int(rec["round"]))
        grids[rec["grid"]] = replace(g, **{field: tuple(sorted(values.items()))})
    return grids


def missing_points(grids: list[Grid], measured: set[str]) -> list[LayerSpec]:
    """Aligned grid points not measured yet (e.g. where an inserted row meets an inserted column)."""
    seen, out = set(measured), []
    for grid in grids:
        outs = [0] if grid.one_d else [c for c, _ in grid.out_values]
        for ci, _ in grid.in_values:
            for co in outs:
                spec = with_channels(grid.template, ci, ci if grid.one_d else co)
                key = spec_key(spec)
                if key not in seen:
                    seen.add(key)
                    out.append(spec)
    return out


def held_out_error(predicted_us: np.ndarray, measured_us: np.ndarray) -> dict[str, float]:
    """Median and 90th-percentile absolute relative error of predictions made before measuring."""
    err = np.abs(np.asarray(predicted_us) / np.asarray(measured_us) - 1)
    return {"median_ape": round(float(np.median(err)), 4), "p90_ape": round(float(np.quantile(err, 0.9)), 4)}
