"""Measure and correct toward a latency target: the loop every method's search ends with.

A method has a knob (a keep ratio, a pruning ratio, a predicted-latency budget; larger = bigger
network) and, on a grid of knob values, an *estimate* of the latency ratio each gives (the
oracle's prediction, or the budget itself). Predictions are biased, so the loop measures: after
measuring the candidate at knob ``x``, the log error ``log(measured / estimate)`` found there is
assumed to hold nearby; the errors at measured knobs are interpolated over the grid, the largest
knob whose corrected estimate meets the target is measured next, until one lands within
``tolerance / 2`` of the target, the next knob was measured already, or ``max_measurements`` are
spent. The candidate measured closest to the target wins.

Estimates move in steps (a channel count past a vector width), and a correction that is right on
average can put the next step over the target when on this machine it is under. So when the
correction points back at a knob measured already while every candidate measured so far is under
the target by more than ``tolerance / 2``, the next larger *different* candidate (the first grid
knob above the largest one measured whose estimate differs) is measured before stopping.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Reached:
    """The knob measured closest to the target, its measured ratio, and every measurement's record."""

    knob: float
    measured: float
    history: list[dict[str, Any]] = field(default_factory=list)


def largest_meeting(estimate: np.ndarray, target: float) -> int | None:
    """Index of the largest knob whose estimate meets ``target``, or None."""
    ok = np.flatnonzero(estimate <= target)
    return int(ok[-1]) if ok.size else None


def measure_toward(target: float, grid: np.ndarray, estimate: np.ndarray, first: float,
                   measure_at: Callable[[float], tuple[float, dict[str, Any], str]],
                   estimate_at: Callable[[float], float], fallback: Callable[[np.ndarray], int],
                   tolerance: float = 0.05, max_measurements: int = 6, stop_on_repeat: bool = False) -> Reached:
    """Measure from knob ``first`` toward ``target`` (module docstring).

    ``measure_at(x)`` measures the candidate at knob ``x`` and returns its ratio to the original, the
    history record of that measurement and the candidate's signature; ``estimate_at(x)`` is the
    estimate the log error is taken against; ``fallback(corrected)`` picks the grid index to try
    when no corrected estimate meets the target. ``stop_on_repeat`` stops when a knob gives a
    candidate measured before.
    """
    errors: dict[float, float] = {}  # knob -> log(measured / estimate)
    measured_at: dict[float, float] = {}
    history: list[dict[str, Any]] = []
    seen: set[str] = set()
    best: tuple[float, float, float] | None = None  # (|measured / target - 1|, knob, measured)
    x = first
    for _ in range(max_measurements):
        measured, record, key = measure_at(x)
        history.append(record)
        err = abs(measured / target - 1)
        if best is None or err < best[0]:
            best = (err, x, measured)
        if err <= tolerance / 2 or (stop_on_repeat and key in seen):
            break
        seen.add(key)
        errors[x] = math.log(measured / estimate_at(x))
        measured_at[x] = measured
        at = np.array(sorted(errors))
        corrected = estimate * np.exp(np.interp(grid, at, [errors[a] for a in at]))
        i = largest_meeting(corrected, target)
        nxt = float(grid[i if i is not None else fallback(corrected)])
        if any(abs(nxt - a) < 1e-9 for a in errors):
            probe = next_step_up(grid, estimate, measured_at, target, tolerance)
            if probe is None:
                break
            nxt = probe
        x = nxt
    _, knob, measured = best
    return Reached(knob, measured, history)


def next_step_up(grid: np.ndarray, estimate: np.ndarray, measured_at: dict[float, float], target: float,
                 tolerance: float) -> float | None:
    """The knob to probe when the correction sends the loop back (module docstring), or None: only when every
    measurement so far is under ``target`` by more than ``tolerance / 2``; the first grid knob above the
    largest measured knob whose estimate differs from that knob's (a different candidate)."""
    if not measured_at or max(measured_at.values()) >= target * (1 - tolerance / 2):
        return None
    top = max(measured_at)
    base = estimate[int(np.argmin(np.abs(grid - top)))]
    for j in np.flatnonzero(grid > top + 1e-12):
        if estimate[j] != base:
            return float(grid[j])
    return None
