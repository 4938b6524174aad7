"""The machine state a profile's samples were measured in, and how rows measured at different
times are brought to one state.

The profiler re-measures one fixed reference layer (``layers.csv`` rows with ``shape_key ==
"reference"``) every few layer samples, and measures every network sample interleaved with its
family's full-width network (the anchor, ``models.csv`` column ``anchor_us``). Layer rows are
scaled to the reference layer's median state, network rows to their family's median anchor; a family
added by ``profile --extend`` also by its ``family_state`` factor from ``profile.json``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def reference_factors(layers: pd.DataFrame) -> np.ndarray:
    """Per layer row, the factor that brings it to the median state of the reference layer
    (its latency interpolated over measurement order tracks the machine's speed)."""
    is_ref = (layers["shape_key"] == "reference").to_numpy()
    if is_ref.sum() < 2:
        return np.ones(len(layers))
    pos = np.arange(len(layers))
    ref = layers["median_us"].to_numpy(dtype=float)
    at = np.interp(pos, pos[is_ref], ref[is_ref])
    return np.median(ref[is_ref]) / at


def reference_us(layers: pd.DataFrame) -> float | None:
    """The reference layer's median over the profiling run, if the profile has one."""
    ref = layers.loc[layers["shape_key"] == "reference", "median_us"].astype(float)
    return float(ref.median()) if len(ref) else None


def anchor_latencies(models: pd.DataFrame, state: dict[str, float] | None = None) -> dict[str, float]:
    """Each family's median anchor latency: the state its network rows are normalised to (a family added
    by an extension divided by its ``state`` factor, which brings it to the profile's state)."""
    if "anchor_us" not in models:
        return {}
    anchors = pd.to_numeric(models["anchor_us"], errors="coerce").groupby(models["family"]).median()
    state = state or {}
    return {str(f): float(v) / state.get(str(f), 1.0) for f, v in anchors.items() if np.isfinite(v) and v > 0}


def normalised_network_latency(models: pd.DataFrame, state: dict[str, float] | None = None) -> pd.Series:
    """Each network row's median, scaled by its family's median anchor over its own run's anchor
    (rows without an anchor are kept as measured), and for a family an extension added, divided by its
    ``state`` factor (how much slower the old families' anchors ran in the extension's run)."""
    anchor = pd.to_numeric(models["anchor_us"], errors="coerce")
    reference = anchor.groupby(models["family"]).transform("median")
    factor = models["family"].map(lambda f: (state or {}).get(str(f), 1.0)).astype(float)
    return models["median_us"] * (reference / anchor).fillna(1.0) / factor
