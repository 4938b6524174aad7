"""The lookup-table predictor: measured layer latencies, staircase-aware interpolation, calibration.

**Blocked layouts.** Input channels that are not a multiple of ``step`` (and not measured
exactly) put a conv on another kernel; such queries use the off-layout table of the largest unit
dividing their channels, interpolated linearly without rounding (see ``latbench.profiler.plan``).

**Tensor-core alignment.** On GPUs, a width that is not a multiple of 8 (fp16 tensor cores) runs
other, slower kernels, whatever the staircase step. Profiles measured on CUDA hold a *misaligned*
grid per layer (widths one channel below the aligned ones); a query with a free width off the
alignment is interpolated linearly in it.

**Lookup.** A layer is found by its shape key (everything but channel counts) among the
profile's grids; of the grids with that key, the smallest one whose full widths cover the query
is used.

**Interpolation that respects staircases.** Engines pad channels to blocks of ``step``
(measured by the profiler), so latency is flat within a block and jumps at its boundary. A
channel count that is a measured grid value is looked up exactly. Any other count is first
rounded *up* to the next multiple of ``step`` (the block the engine will really compute), then
interpolated linearly between the two measured grid values around it, in each dimension
(bilinear for in x out channels). Interpolating the raw count instead would smear every step
into a ramp and underestimate layers just past a boundary.

**Calibration and uncertainty** are those of every layer-sum predictor (``latbench.predictors.
layer_sum``). The LUT's per-layer uncertainty is half the change across a layer's grid cell,
weighted by the distance from measured points (zero at measured points). Queries outside a
grid's range are clamped to it and add half the layer's latency to the uncertainty, and are
named in ``Prediction.notes``. Layers whose shape was never profiled raise ``OutOfProfileError``,
which names them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from latbench.arch import ArchBase
from latbench.arch.spec import LayerSpec
from latbench.predictors.batch import CandidateBatch
from latbench.predictors.layer_sum import LayerLookup, LayerSumPredictor, OutOfProfileError, profile_layout_block
from latbench.profile import Grid, reference_factors, shape_key, spec_key, with_channels

#: layers whose grids span at most this many (in, out) channel pairs are tabulated densely once
DENSE_MAX = 1 << 18
#: GPU tensor cores take fp16 channels in multiples of 8; other widths run slower kernels
TENSOR_CORE_ALIGNMENT = 8


@dataclass
class _Grid:
    in_values: np.ndarray
    out_values: np.ndarray
    table: np.ndarray  # (len(in), len(out)) latency in us; one_d grids have a single column
    one_d: bool
    off_layout: tuple[tuple[int, _Grid], ...] = ()  # (unit, table) for input channels off the blocked layout
    misaligned: _Grid | None = None  # GPU engines: widths off the tensor-core alignment

    @property
    def in_max(self) -> int:
        return int(self.in_values[-1])

    @property
    def out_max(self) -> int:
        return int(self.out_values[-1])


def _table(grid, ins: list[int], outs: list[int], measured: dict[str, float]) -> _Grid | None:
    """The measured table of one grid's points; a budget-truncated run keeps its complete sub-grid."""
    outs = outs if not grid.one_d else [0]
    if not ins or not outs:
        return None
    table = np.array([[measured.get(spec_key(with_channels(grid.template, ci, ci if grid.one_d else co)), np.nan)
                       for co in outs] for ci in ins])
    rows, cols = list(range(len(ins))), list(range(len(outs)))
    while rows and cols and np.isnan(table[np.ix_(rows, cols)]).any():
        # drop the row or column with the largest share of unmeasured points: the values of
        # passes a budget cut left unmeasured go first, the complete coarser sub-grid stays
        missing = np.isnan(table[np.ix_(rows, cols)])
        by_row, by_col = missing.mean(axis=1), missing.mean(axis=0)
        if by_row.max() >= by_col.max():
            rows.pop(int(by_row.argmax()))
        else:
            cols.pop(int(by_col.argmax()))
    if not rows or not cols:
        return None
    return _Grid(np.array([ins[i] for i in rows]), np.array([outs[j] for j in cols]), table[np.ix_(rows, cols)],
                 grid.one_d)


def _axis(values: np.ndarray, c: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower index, weight of the upper neighbour, and out-of-range flag for channel counts ``c``."""
    exact = np.isin(c, values)
    rounded = np.where(exact, c, np.ceil(c / step) * step)
    out = (rounded < values[0]) | (rounded > values[-1])
    q = np.clip(rounded, values[0], values[-1]).astype(np.float64)
    if len(values) == 1:
        return np.zeros(len(c), dtype=np.int64), np.zeros(len(c)), out
    lo = np.clip(np.searchsorted(values, q, side="right") - 1, 0, len(values) - 2)
    t = (q - values[lo]) / (values[lo + 1] - values[lo])
    return lo, t, out


def _misaligned(grid: _Grid, cin: np.ndarray, cout: np.ndarray) -> np.ndarray:
    """Queries with a free width (not fixed by the network) off the tensor-core alignment; a fixed
    axis is one whose misaligned values are the aligned grid's own."""
    mis = grid.misaligned
    free_in = not set(mis.in_values.tolist()) <= set(grid.in_values.tolist())
    use = free_in & (cin % TENSOR_CORE_ALIGNMENT != 0)
    if not grid.one_d:
        free_out = not set(mis.out_values.tolist()) <= set(grid.out_values.tolist())
        use = use | (free_out & (cout % TENSOR_CORE_ALIGNMENT != 0))
    return use


def _lookup(grid: _Grid, cin: np.ndarray, cout: np.ndarray, step: int,
            out_step: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interpolated latency, interpolation spread and out-of-range flag for one grid."""
    lo_i, t_i, out_i = _axis(grid.in_values, cin, step)
    hi_i = np.minimum(lo_i + 1, len(grid.in_values) - 1)
    if grid.one_d:
        v0, v1 = grid.table[lo_i, 0], grid.table[hi_i, 0]
        return v0 + t_i * (v1 - v0), np.abs(v1 - v0) * 2 * t_i * (1 - t_i), out_i
    lo_o, t_o, out_o = _axis(grid.out_values, cout, step if out_step is None else out_step)
    hi_o = np.minimum(lo_o + 1, len(grid.out_values) - 1)
    t00, t01 = grid.table[lo_i, lo_o], grid.table[lo_i, hi_o]
    t10, t11 = grid.table[hi_i, lo_o], grid.table[hi_i, hi_o]
    value = t00 * (1 - t_i) * (1 - t_o) + t01 * (1 - t_i) * t_o + t10 * t_i * (1 - t_o) + t11 * t_i * t_o
    spread = np.abs(t10 - t00) * 2 * t_i * (1 - t_i) + np.abs(t01 - t00) * 2 * t_o * (1 - t_o)
    return value, spread, out_i | out_o


class LutPredictor(LayerSumPredictor):
    name = "lut"

    def __init__(self, grids: dict[str, list[_Grid]], step: int, overhead_us: float,
                 layout_block: int | None = None) -> None:
        super().__init__(layout_block)
        self.grids = grids
        self.step = step
        self.overhead_us = overhead_us
        self._compiled: dict[str, list[tuple[int, _Grid | None]]] = {}
        self._dense_tables: dict[tuple[str, int], tuple[np.ndarray, ...] | None] = {}

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_profile(cls, meta: dict[str, Any], layers, folder: Path | None = None) -> LutPredictor:
        corrected = layers["median_us"].to_numpy(dtype=float) * reference_factors(layers)
        measured = dict(zip(layers["key"], corrected, strict=True))
        grids: dict[str, list[_Grid]] = defaultdict(list)
        for g in meta["plan"]["grids"]:
            grid = Grid.from_dict(g)
            aligned = _table(grid, [c for c, _ in grid.in_values], [c for c, _ in grid.out_values], measured)
            if aligned is not None:
                tables = ((unit, _table(grid, [c for c, _ in values], [c for c, _ in grid.unaligned_out()], measured))
                          for unit, values in grid.off_layout)
                aligned.off_layout = tuple(sorted(((u, t) for u, t in tables if t is not None), key=lambda ut: -ut[0]))
                if grid.misaligned is not None:
                    ins, outs = ([c for c, _ in values] for values in grid.misaligned)
                    aligned.misaligned = _table(grid, ins, outs, measured)
                grids[g["key"]].append(aligned)
        return cls(dict(grids), int(meta["plan"]["step"]), float(meta.get("overhead_us", 0.0)),
                   profile_layout_block(meta))

    def _grid_for(self, spec: LayerSpec) -> _Grid | None:
        candidates = self.grids.get(shape_key(spec))
        if not candidates:
            return None
        covering = [g for g in candidates
                    if spec.in_channels <= g.in_max and (g.one_d or spec.out_channels <= g.out_max)]
        pool = covering or candidates
        return min(pool, key=lambda g: (g.in_max * max(g.out_max, 1)) * (1 if covering else -1))

    def _compile(self, base: ArchBase) -> list[tuple[int, _Grid | None]]:
        compiled = self._compiled.get(base.digest)
        if compiled is None:
            compiled = [(j, self._grid_for(layer.spec)) for j, layer in enumerate(base.layers)]
            missing = [base.layers[j].name for j, g in compiled if g is None]
            if missing:
                raise OutOfProfileError(
                    f"{base.name}: {len(missing)} layer(s) have shapes this profile never measured: "
                    f"{', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''} (profile the family first)")
            self._compiled[base.digest] = compiled
        return compiled

    # --- lookup ------------------------------------------------------------------------------
    def _layer(self, grid: _Grid, cin: np.ndarray, cout: np.ndarray) -> tuple[np.ndarray, ...]:
        """Latency (overhead removed), uncertainty, out-of-range and off-layout flags of one layer."""
        value, spread, out = _lookup(grid, cin, cout, self.step)
        off = np.zeros(len(cin), dtype=bool)
        if grid.off_layout:
            off = (cin % self.step != 0) & ~np.isin(cin, grid.in_values)
            taken = ~off
            for unit, table in grid.off_layout:  # largest unit first
                use = ~taken & (cin % unit == 0)
                if use.any():
                    # input channels off the blocks; outputs still padded to them unless unit 1 (plain NCHW)
                    u_value, u_spread, u_out = _lookup(table, cin, cout, 1, self.step if unit > 1 else 1)
                    value, spread, out = (np.where(use, u_value, value), np.where(use, u_spread, spread),
                                          np.where(use, u_out, out))
                    taken |= use
        if grid.misaligned is not None:
            use = _misaligned(grid, cin, cout)
            if use.any():
                m_value, m_spread, m_out = _lookup(grid.misaligned, cin, cout, 1, 1)
                value, spread, out = (np.where(use, m_value, value), np.where(use, m_spread, spread),
                                      np.where(use, m_out, out))
        core = np.maximum(value - self.overhead_us, 0.02 * value)
        return core, 0.5 * spread + np.where(out, 0.5 * core, 0.0), out, off

    def _dense(self, base: ArchBase, j: int, grid: _Grid) -> tuple[np.ndarray, ...] | None:
        """``_layer`` for every channel pair up to the grid's full widths, once per layer (small grids)."""
        key = (base.digest, j)
        if key not in self._dense_tables:
            n_in, n_out = grid.in_max + 1, (1 if grid.one_d else grid.out_max + 1)
            table = None
            if n_in * n_out <= DENSE_MAX:
                ci, co = np.meshgrid(np.arange(n_in), np.arange(n_out), indexing="ij")
                table = tuple(a.reshape(n_in, n_out) for a in self._layer(grid, ci.ravel(), co.ravel()))
            self._dense_tables[key] = table
        return self._dense_tables[key]

    def layer_latency(self, batch: CandidateBatch) -> LayerLookup:
        """Per candidate and layer: latency (overhead removed), interpolation uncertainty, flags."""
        n, n_layers = batch.cin.shape
        columns = [np.zeros((n, n_layers)), np.zeros((n, n_layers)), np.zeros((n, n_layers), dtype=bool),
                   np.zeros((n, n_layers), dtype=bool)]
        for j, grid in self._compile(batch.base):
            cin, cout = batch.cin[:, j], batch.cout[:, j]
            dense = self._dense(batch.base, j, grid)
            if dense is not None and cin.max() < dense[0].shape[0] and (grid.one_d or cout.max() < dense[0].shape[1]):
                co = 0 if grid.one_d else cout
                values = [t[cin, co] for t in dense]
            else:
                values = self._layer(grid, cin, cout)
            for column, value in zip(columns, values, strict=True):
                column[:, j] = value
        lat, unc, oor, layout = columns
        lat *= batch.active
        unc *= batch.active
        return LayerLookup(lat, unc, oor & batch.active, layout & batch.active)
