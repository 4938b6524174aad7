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


def has_blocked_layout(settings: dict[str, Any]) -> bool:
    """Whether a profile's engine runs convs in a blocked channel layout (ONNX Runtime's NCHWc on
    CPU), so that widths off the block take other kernels and need off-layout grids."""
    return settings.get("backend") == "onnxruntime" and settings.get("device") in (None, "cpu")


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
    #: GPU engines: (input values, output values) one channel off the tensor-core alignment
    misaligned: tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]] | None = None

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
        off_points = [(with_channels(self.template, ci, co), max(pi, po))
                      for ci, pi in off for co, po in self.unaligned_out()]
        return aligned + off_points + self.misaligned_points()

    def misaligned_points(self) -> list[tuple[LayerSpec, int]]:
        if self.misaligned is None:
            return []
        ins, outs = self.misaligned
        if self.one_d:
            return [(with_channels(self.template, c, c), p) for c, p in ins]
        return [(with_channels(self.template, ci, co), max(pi, po)) for ci, pi in ins for co, po in outs]

    def to_dict(self) -> dict[str, Any]:
        d = {"key": self.key, "template": self.template.to_dict(),
             "in_values": [list(v) for v in self.in_values], "out_values": [list(v) for v in self.out_values],
             "off_layout": [[unit, [list(v) for v in values]] for unit, values in self.off_layout]}
        if self.misaligned is not None:
            d["misaligned"] = [[list(v) for v in values] for values in self.misaligned]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Grid:
        misaligned = d.get("misaligned")
        return cls(d["key"], LayerSpec.from_dict(d["template"]), _pairs(d["in_values"]), _pairs(d["out_values"]),
                   tuple((unit, _pairs(values)) for unit, values in d.get("off_layout", [])),
                   (_pairs(misaligned[0]), _pairs(misaligned[1])) if misaligned else None)
