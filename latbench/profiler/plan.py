"""What a profiling run measures: layer grids per distinct layer shape, and whole-network variants.

Every distinct layer of the profiled families at full width gets a grid over its channel counts:
2-D (in x out) for convs and linear layers, 1-D for depthwise convs and channel-preserving ops.
Grid values are multiples of the backend's channel ``step`` (its latency staircase) between the
smallest sensible width (10% of full, at least one step) and the full width, which is always
included. Values come in nested passes: pass 1 is the two ends, pass 2 adds the middle, pass 3
the quarters, so a run cut short by its budget still holds complete (coarser) grids.

Engines with a blocked layout (ONNX Runtime's NCHWc on CPU) run a conv whose input channels are
not a multiple of the block on another kernel, with layout reorders around it: latency is not
a staircase there but other curves. Convs and depthwise convs therefore also get one
*off-layout* grid per unit in ``LAYOUT_UNITS``, measured ``unit`` channels below each aligned
input value (ends and middle only); a query uses the grid of the largest unit dividing its input
channels.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass

from latbench.arch import Arch
from latbench.arch.spec import LayerSpec
from latbench.profile.grid import UNALIGNED_PASSES, Grid
from latbench.profile.keys import shape_key, spec_key

#: ops whose kernel changes when input channels leave the engine's blocked layout
LAYOUT_OPS = ("conv", "dwconv")
#: sub-block channel multiples probed off the blocked layout (ONNX Runtime runs multiples of 4 on
#: its blocked kernels with a reorder in front, other widths on a plain NCHW conv)
LAYOUT_UNITS = (4, 1)
PASS_FRACTIONS = {1: (0.0, 1.0), 2: (0.5,), 3: (0.25, 0.75)}
MIN_FRACTION = 0.1


def axis_values(full: int, step: int, fixed: bool, passes: int = 3) -> list[tuple[int, int]]:
    """(channels, pass) along one axis: multiples of ``step`` from the smallest sensible width to ``full``."""
    if fixed or full <= step:
        return [(full, 1)]
    lo = min(full, max(step, math.ceil(MIN_FRACTION * full / step) * step))
    out: dict[int, int] = {}
    for p in range(1, passes + 1):
        for f in PASS_FRACTIONS[p]:
            v = full if f == 1.0 else max(step, round((lo + f * (full - lo)) / step) * step)
            out.setdefault(min(v, full), p)
    return sorted(out.items())


def sub_step_values(step: int, unit: int, full: int) -> list[tuple[int, int]]:
    """Widths below one step on the off-layout grid of ``unit`` (first pass), so narrow layers are
    not clamped to a whole step: a quarter and half of a step for sub-block units, one below half
    and one below a full step for unit 1."""
    fractions = (0.25, 0.5) if unit > 1 else (0.5, 1.0)
    values = {max(unit, round(f * step)) - (1 if unit == 1 else 0) for f in fractions}
    return [(v, 1) for v in sorted(values) if v % step and 0 < v < full]


def misaligned_values(values: tuple[tuple[int, int], ...], fixed: bool) -> tuple[tuple[int, int], ...]:
    """One channel below each first-pass value, and below half the smallest: widths off every
    power-of-two alignment (a fixed axis keeps its one value)."""
    ends = [c for c, p in values if p == 1]
    if fixed:
        return tuple((c, 1) for c in ends)
    out = {c - 1 for c in ends if c > 1} | ({max(1, round(ends[0] / 2)) - 1} if ends[0] > 3 else set())
    return tuple((c, 1) for c in sorted(out) if c > 0)


def layer_grids(archs: list[Arch], step: int, passes: int = 3, layout_units: tuple[int, ...] = LAYOUT_UNITS,
                misaligned: bool = False) -> list[Grid]:
    """One grid per distinct (shape, full widths, fixed axes) over the layers of ``archs``; off-layout
    grids for each of ``layout_units`` (none for engines without a blocked layout); with
    ``misaligned`` (GPUs: tensor cores want channels in multiples of 8) a grid of widths off
    every alignment, since a pruned network's widths rarely keep one."""
    grids: dict[tuple, Grid] = {}
    for arch in archs:
        fixed = {g.id for g in arch.groups if g.fixed}
        for layer in arch.base.layers:
            spec = layer.spec
            in_fixed = all(g in fixed for g in layer.in_groups)
            out_fixed = all(g in fixed for g in layer.out_groups)
            ident = (shape_key(spec), spec.in_channels, spec.out_channels, in_fixed, out_fixed)
            if ident in grids:
                continue
            in_values = tuple(axis_values(spec.in_channels, step, in_fixed, passes))
            off: list[tuple[int, tuple[tuple[int, int], ...]]] = []
            if spec.op in LAYOUT_OPS and not in_fixed and step > 1:
                for unit in (u for u in layout_units if u < step):
                    values = dict(sub_step_values(step, unit, spec.in_channels))
                    for c, p in in_values:
                        if c > step and p <= UNALIGNED_PASSES:
                            values.setdefault(c - unit, p)
                    off.append((unit, tuple(sorted(values.items()))))
            out_values = tuple(axis_values(spec.out_channels, step, out_fixed, passes))
            off_grid = None
            if misaligned and not (in_fixed and out_fixed):
                off_grid = (misaligned_values(in_values, in_fixed), misaligned_values(out_values, out_fixed))
            grids[ident] = Grid(key=shape_key(spec), template=spec, in_values=in_values, out_values=out_values,
                                off_layout=tuple(off), misaligned=off_grid)
    return list(grids.values())


def layer_samples(grids: list[Grid]) -> list[tuple[LayerSpec, int]]:
    """Distinct (spec, pass) to measure, ordered pass by pass."""
    seen: dict[str, tuple[LayerSpec, int]] = {}
    for grid in grids:
        for spec, p in grid.points():
            key = spec_key(spec)
            if key not in seen or seen[key][1] > p:
                seen[key] = (spec, p)
    return sorted(seen.values(), key=lambda sp: sp[1])


@dataclass(frozen=True)
class NetworkVariant:
    family: str
    widths: tuple[int, ...]
    removed: tuple[str, ...]
    split: str  # "calib" or "valid"

    @property
    def key(self) -> str:
        payload = json.dumps([self.family, list(self.widths), list(self.removed)])
        return hashlib.sha1(payload.encode()).hexdigest()[:16]

    def arch(self, base: Arch) -> Arch:
        return Arch(base.base, self.widths).without_blocks(self.removed)


def network_variants(family: str, base: Arch, count: int, seed: int = 0, valid_every: int = 4,
                     low: float = 0.3, align: int = 1) -> list[NetworkVariant]:
    """The full network, then random-width variants (keep ratio ~ U(low, 1) per group), about a
    third of them with 1-3 removable blocks dropped. Every third variant has its widths rounded
    to multiples of ``align`` (as group-wise pruners produce); every ``valid_every``-th is held out.
    A draw equal to an earlier variant (a small network rounded back to full width) is drawn again, so
    ``count`` distinct networks come out where the network has that many."""
    rng = random.Random(f"{family}-{seed}")
    removable = [b.name for b in base.blocks if b.removable]
    out = [NetworkVariant(family, base.width_tuple, (), "calib")]
    seen = {(base.width_tuple, ())}
    draws = 0
    while len(out) < count and draws < 100 * count:
        draws += 1
        widths = list(base.width_tuple)
        aligned = align > 1 and len(out) % 3 == 2
        for g in base.prunable_groups:
            w = max(1, round(g.channels * rng.uniform(low, 1.0)))
            widths[g.id] = min(g.channels, max(align, round(w / align) * align)) if aligned else w
        removed: tuple[str, ...] = ()
        if removable and rng.random() < 0.35:
            removed = tuple(sorted(rng.sample(removable, min(len(removable), rng.randint(1, 3)))))
        if (tuple(widths), removed) in seen:
            continue
        seen.add((tuple(widths), removed))
        split = "valid" if len(out) % valid_every == 0 else "calib"
        out.append(NetworkVariant(family, tuple(widths), removed, split))
    return out
