"""``layers.csv`` and ``models.csv``: their columns, a layer spec as CSV cells, and the checked reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from latbench.arch.spec import LayerSpec
from latbench.errors import ProfileError

SPEC_COLUMNS = ["op", "in_channels", "out_channels", "kernel", "stride", "padding", "groups", "dilation", "in_hw",
                "batch", "dtype", "bias", "epilogue", "in_mult"]
MEASURE_COLUMNS = ["median_us", "ci_low_us", "ci_high_us", "p90_us", "runs", "stop_reason", "wall_s"]
LAYER_COLUMNS = ["key", "shape_key", *SPEC_COLUMNS, "pass", *MEASURE_COLUMNS, "measured_at"]
MODEL_COLUMNS = ["key", "family", "split", "widths", "removed", "flops", "params", "anchor_us", *MEASURE_COLUMNS,
                 "measured_at"]
#: columns that must hold positive numbers, per file
NUMERIC = {"layers.csv": ("in_channels", "out_channels", "median_us", "batch"), "models.csv": ("median_us",)}


def parse_pair(value: Any) -> tuple[int, int]:
    """``3x3`` (CSV) or ``[3, 3]`` / ``(3, 3)`` as a pair of ints."""
    if isinstance(value, str):
        a, _, b = value.partition("x")
        return int(a), int(b or a)
    return int(value[0]), int(value[1])


def spec_to_row(spec: LayerSpec) -> dict[str, Any]:
    """A spec as CSV cells: pairs as ``3x3``, the epilogue as ``bn+relu``."""
    d = spec.to_dict()
    d["epilogue"] = "+".join(d["epilogue"])
    return {k: "x".join(map(str, d[k])) if isinstance(d[k], list) else d[k] for k in SPEC_COLUMNS}


def row_to_spec(row) -> LayerSpec:
    """The spec of a ``layers.csv`` row (the inverse of ``spec_to_row``)."""
    d: dict[str, Any] = {c: row[c] for c in SPEC_COLUMNS}
    for c in ("kernel", "stride", "padding", "dilation", "in_hw"):
        d[c] = parse_pair(d[c])
    for c in ("in_channels", "out_channels", "groups", "batch", "in_mult"):
        d[c] = int(d[c])
    d["epilogue"] = tuple(s for s in str(d["epilogue"]).split("+") if s)
    d["bias"] = str(d["bias"]).lower() in ("true", "1")
    return LayerSpec.from_dict(d)


def read_table(path: Path, columns: list[str]) -> pd.DataFrame:
    """``layers.csv`` or ``models.csv``, checked: every column there, numbers where numbers belong
    (a hand-edited or truncated file is one ``ProfileError`` naming the file, column and row)."""
    if not path.exists():
        raise ProfileError(f"{path.parent}: missing {path.name}")
    try:
        df = pd.read_csv(path, dtype={"key": str, "widths": str, "removed": str}, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - pandas raises several parser errors
        raise ProfileError(f"{path}: unreadable CSV ({exc})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ProfileError(f"{path}: missing column(s) {', '.join(missing)}")
    for col in NUMERIC.get(path.name, ()):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = np.flatnonzero(values.isna() | ~np.isfinite(values) | (values <= 0))
        if len(bad):
            raise ProfileError(f"{path}: column {col} has a missing, non-numeric or non-positive value "
                               f"at data row {int(bad[0]) + 1}")
        df[col] = values
    return df
