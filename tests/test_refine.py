"""Adaptive grid refinement: scoring, insertion, and a lower error than uniform grids at equal budget."""

from __future__ import annotations

import numpy as np
import pytest

from latbench.arch.spec import LayerSpec
from latbench.predictors.lut import _Grid, _lookup
from latbench.profile import Grid, shape_key, spec_key, with_channels
from latbench.profiler.plan import axis_values
from latbench.profiler.refine import choose, held_out_error, insert, interval_candidates, missing_points

STEP = 8
DW = LayerSpec("dwconv", 512, 512, (3, 3), (1, 1), (1, 1), groups=512, in_hw=(8, 8), epilogue=("bn", "relu"))
CONV = LayerSpec("conv", 256, 256, (3, 3), (1, 1), (1, 1), in_hw=(8, 8), epilogue=("bn", "relu"))


def staircase_1d(c: np.ndarray) -> np.ndarray:
    """Stairs every 32 channels and a kernel switch (a cliff) above 328."""
    return 2.0 + 0.02 * np.ceil(c / 32) * 32 + np.where(c > 328, 6.0, 0.0)


def staircase_2d(cin: np.ndarray, cout: np.ndarray) -> np.ndarray:
    """Stairs every 32 channels on both axes and a cache cliff past a weight size."""
    return 5.0 + 0.002 * np.ceil(cin / 32) * 32 * np.ceil(cout / 32) * 32 * np.where(cin * cout > 30000, 1.5, 1.0)


def planned(spec: LayerSpec, passes: int = 3) -> Grid:
    ins = tuple(axis_values(spec.in_channels, STEP, False, passes))
    outs = ins if spec.op == "dwconv" else tuple(axis_values(spec.out_channels, STEP, False, passes))
    return Grid(shape_key(spec), spec, ins, outs)


def measure_all(grid: Grid, measured: dict[str, float], truth) -> None:
    for spec in missing_points([grid], set(measured)):
        measured[spec_key(spec)] = float(truth(spec))


def truth_of(spec: LayerSpec) -> float:
    if spec.op == "dwconv":
        return float(staircase_1d(np.array(spec.in_channels)))
    return float(staircase_2d(np.array(spec.in_channels), np.array(spec.out_channels)))


def lut_error(grid: Grid, measured: dict[str, float]) -> float:
    """Mean absolute error (us) of the lookup table's interpolation over every step-aligned
    channel count (pair) in the grid's range: what a network's sum accumulates."""
    ins = np.array([c for c, _ in grid.in_values])
    if grid.one_d:
        table = np.array([[measured[spec_key(with_channels(grid.template, int(c), int(c)))]] for c in ins])
        c = np.arange(ins[0], ins[-1] + 1, STEP)
        value = _lookup(_Grid(ins, np.array([0]), table, True), c, c, STEP)[0]
        return float(np.mean(np.abs(value - staircase_1d(c))))
    outs = np.array([c for c, _ in grid.out_values])
    table = np.array([[measured[spec_key(with_channels(grid.template, int(a), int(b)))] for b in outs] for a in ins])
    a, b = (x.ravel() for x in np.meshgrid(np.arange(ins[0], ins[-1] + 1, STEP),
                                           np.arange(outs[0], outs[-1] + 1, STEP)))
    value = _lookup(_Grid(ins, outs, table, False), a, b, STEP)[0]
    return float(np.mean(np.abs(value - staircase_2d(a, b))))


def refined(grid: Grid, budget: int, batch: int) -> tuple[Grid, dict[str, float]]:
    """Refine ``grid`` round by round until ``budget`` samples; returns the grid and its samples."""
    measured: dict[str, float] = {}
    measure_all(grid, measured, truth_of)
    grids, n = [grid], 0
    while len(measured) < budget:
        n += 1
        picks = choose(interval_candidates(grids, STEP, measured), min(batch, budget - len(measured)))
        if not picks:
            break
        grids = insert(grids, [p.to_dict(n) for p in picks])
        measure_all(grids[0], measured, truth_of)
    return grids[0], measured


def uniform(spec: LayerSpec, count: int) -> Grid:
    """A grid with ``count`` step-aligned values per axis, evenly spaced over the planned range."""
    lo = planned(spec).in_values[0][0]
    values = tuple((int(v), 1) for v in np.unique(np.round(np.linspace(lo, spec.in_channels, count) / STEP) * STEP))
    return Grid(shape_key(spec), spec, values, values)


def test_refinement_beats_a_uniform_grid_on_a_1d_staircase():
    grid, measured = refined(planned(DW), budget=17, batch=1)
    assert len(measured) == 17
    base = uniform(DW, 17)
    flat: dict[str, float] = {}
    measure_all(base, flat, truth_of)
    assert len(flat) == 17
    e_adaptive, e_uniform = lut_error(grid, measured), lut_error(base, flat)
    assert e_adaptive < 0.75 * e_uniform, (e_adaptive, e_uniform)


def test_refinement_beats_a_larger_uniform_grid_on_a_2d_staircase():
    grid, measured = refined(planned(CONV), budget=64, batch=8)
    base = uniform(CONV, 9)  # 81 samples: at least as many as the refined grid's
    flat: dict[str, float] = {}
    measure_all(base, flat, truth_of)
    assert 64 <= len(measured) <= len(flat) == 81
    e_adaptive, e_uniform = lut_error(grid, measured), lut_error(base, flat)
    assert e_adaptive < e_uniform, (e_adaptive, e_uniform)


def test_flat_and_one_step_intervals_are_not_refined():
    spec = replace_channels(DW, 64)
    grid = Grid(shape_key(spec), spec, ((16, 1), (24, 1), (64, 1)), ((16, 1), (24, 1), (64, 1)))
    flat = {spec_key(with_channels(spec, c, c)): 10.0 for c in (16, 24, 64)}
    assert interval_candidates([grid], STEP, flat)[0].score == 0  # 24..64: flat
    assert choose(interval_candidates([grid], STEP, flat), 4) == []
    assert [c.value for c in interval_candidates([grid], STEP, flat)] == [48]  # 16..24 is one step: no midpoint


def test_insertions_extend_the_axis_and_leave_the_rest():
    grid = planned(CONV, passes=1)
    measured: dict[str, float] = {}
    measure_all(grid, measured, truth_of)
    picks = choose(interval_candidates([grid], STEP, measured), 4)
    assert [p.axis for p in picks] and all(len(p.points) == 2 for p in picks)
    out = insert([grid], [p.to_dict(1) for p in picks])[0]
    for p in picks:
        values = dict(out.in_values if p.axis == "in" else out.out_values)
        assert values[p.value] == 1001
    assert len(out.in_values) * len(out.out_values) - len(measured) == len(missing_points([out], set(measured)))
    assert insert([grid], []) == [grid]


def test_held_out_error_is_relative():
    err = held_out_error(np.array([110.0, 90.0, 100.0]), np.array([100.0, 100.0, 100.0]))
    assert err["median_ape"] == pytest.approx(0.1)
    assert err["p90_ape"] == pytest.approx(0.1)


def replace_channels(spec: LayerSpec, c: int) -> LayerSpec:
    return with_channels(spec, c, c)
