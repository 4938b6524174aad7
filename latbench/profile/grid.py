"""A lookup grid of the sampling plan, as ``profile.json`` stores it under ``plan.grids``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from latbench.arch.spec import LayerSpec
from latbench.profile.keys import with_channels

#: ops with one channel axis (output channels follow the input's)
ONE_D_OPS = ("dwconv", "maxpool", "avgpool", "gap", "add", "mul", "bn", "act")
#: passes of the output axis that off-layout grids sample (ends and middle)
UNALIGNED_PASSES = 2


def _pairs(values) -> tuple[tuple[int, int], ...]:
    return tuple(tuple(v) for v in values)


@dataclass(frozen=True)
class Grid:
    """A lookup grid for one distinct layer: its shape key, full widths, and axis values."""

    key: str
    template: LayerSpec  # the layer at full width
    in_values: tuple[tuple[int, int], ...]  # (channels, pass)
    out_values: tuple[tuple[int, int], ...]
    off_layout: tuple[tuple[int, tuple[tuple[int, int], ...]], ...] = ()  # (unit, input values)

    @property
    def one_d(self) -> bool:
        return self.template.op in ONE_D_OPS

    def unaligned_out(self) -> tuple[tuple[int, int], ...]:
        return tuple(v for v in self.out_values if v[1] <= UNALIGNED_PASSES)

    def points(self) -> list[tuple[LayerSpec, int]]:
        """(spec, pass) for every grid point, aligned grid first."""
        off = [v for _, values in self.off_layout for v in values]
        if self.one_d:
            return [(with_channels(self.template, c, c), p) for c, p in (*self.in_values, *off)]
        aligned = [(with_channels(self.template, ci, co), max(pi, po))
                   for ci, pi in self.in_values for co, po in self.out_values]
        return aligned + [(with_channels(self.template, ci, co), max(pi, po))
                          for ci, pi in off for co, po in self.unaligned_out()]

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "template": self.template.to_dict(),
                "in_values": [list(v) for v in self.in_values], "out_values": [list(v) for v in self.out_values],
                "off_layout": [[unit, [list(v) for v in values]] for unit, values in self.off_layout]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Grid:
        return cls(d["key"], LayerSpec.from_dict(d["template"]), _pairs(d["in_values"]), _pairs(d["out_values"]),
                   tuple((unit, _pairs(values)) for unit, values in d.get("off_layout", [])))
