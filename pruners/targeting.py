"""Measure and correct toward a latency target: the loop every method's search ends with.

A method has a knob (a keep ratio, a pruning ratio, a predicted-latency budget; larger = bigger
network) and, on a grid of knob values, an *estimate* of the latency ratio each gives (the
oracle's prediction, or the budget itself). Predictions are biased, so the loop measures: after
measuring the candidate at knob ``x``, the log error ``log(measured / estimate)`` found there is
assumed to hold nearby; the errors at measured knobs are interpolated over the grid, the largest
knob whose corrected estimate meets the target is measured next, until one lands within
``tolerance / 2`` of the target, the next knob was measured already, or ``max_measurements`` are
spent. The candidate measured closest to the target wins.
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
        at = np.array(sorted(errors))
        corrected = estimate * np.exp(np.interp(grid, at, [errors[a] for a in at]))
        i = largest_meeting(corrected, target)
        nxt = float(grid[i if i is not None else fallback(corrected)])
        if any(abs(nxt - a) < 1e-9 for a in errors):
            break
        x = nxt
    _, knob, measured = best
    return Reached(knob, measured, history)
