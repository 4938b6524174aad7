"""The identity of a layer sample (``spec_key``) and of the lookup grid it belongs to (``shape_key``)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

from latbench.arch.spec import LayerSpec


def shape_key(spec: LayerSpec) -> str:
    """Everything about a layer but its channel counts: the lookup table's outer key."""
    return "|".join([
        spec.op, f"k{spec.kernel[0]}x{spec.kernel[1]}", f"s{spec.stride[0]}x{spec.stride[1]}",
        f"p{spec.padding[0]}x{spec.padding[1]}", f"d{spec.dilation[0]}x{spec.dilation[1]}",
        f"hw{spec.in_hw[0]}x{spec.in_hw[1]}", f"b{spec.batch}", spec.dtype, f"bias{int(spec.bias)}",
        "+".join(spec.epilogue) or "-", f"m{spec.in_mult}",
    ])


def spec_key(spec: LayerSpec) -> str:
    """Stable id of one measured layer sample."""
    return hashlib.sha1(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


def with_channels(spec: LayerSpec, cin: int, cout: int) -> LayerSpec:
    """``spec`` at other channel counts (a depthwise conv keeps one group per channel)."""
    groups = cin if spec.op == "dwconv" else spec.groups
    return replace(spec, in_channels=cin, out_channels=cout, groups=groups)
