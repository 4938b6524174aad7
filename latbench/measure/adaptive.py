"""Adaptive, drift-aware timing of one runnable.

The loop, in order:

1. **Warm-up until settled.** Calls run in windows of about ``block_s`` seconds; warm-up ends
   when two consecutive window medians agree within ``settle_tol``, at least
   ``warmup_min_runs`` calls ran and at least ``warmup_min_s`` seconds passed (a slow first
   phase can be flat, so agreement alone is not enough), or when ``warmup_max_frac`` of the
   budget is spent (then the record says ``warmup_settled=False``).
2. **Repeat in blocks** of about ``block_s`` seconds. The confidence interval of the median is
   computed over the *block medians* (distribution-free, 95%), not over the raw samples:
   consecutive samples on a shared machine are correlated, and thousands of them would give a
   tight interval around a number the next run does not reproduce. Blocks that disagree because
   the machine drifts widen the interval instead. Measuring stops when the half-width is within
   ``target_rel_ci`` of the median after at least ``min_blocks`` blocks and ``min_time_s``
   seconds (``"converged"``), when the time budget is spent (``"time_budget"``) or at
   ``max_runs``.
3. **Drift check.** Before accepting convergence, the block medians of the first and second
   halves are compared. If they differ by more than ``drift_tol`` and their CIs do not overlap,
   the machine changed state under the measurement: the older half is discarded (counted in
   ``discarded_runs``) and measuring goes on, so the reported median describes one steady
   state rather than a blend of two.

Ctrl-C during the repeats ends the measurement with ``stop_reason="interrupted"`` and keeps the
blocks measured so far.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from latbench.errors import InvalidValueError
from latbench.measure.record import Measurement
from latbench.measure.stats import median_ci
from latbench.measure.timers import HostTimer, Timer

ProgressFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class MeasureSettings:
    """Knobs of the adaptive method; the defaults suit networks from ~10 us to ~100 ms."""

    target_rel_ci: float = 0.01
    ci_level: float = 0.95
    budget_s: float = 10.0
    min_runs: int = 10
    max_runs: int = 200_000
    warmup_min_runs: int = 3
    warmup_min_s: float = 0.1
    warmup_max_frac: float = 0.3
    settle_tol: float = 0.05
    block_s: float = 0.02
    rewarm_s: float = 0.01
    min_blocks: int = 10
    min_time_s: float = 0.5
    drift_tol: float = 0.02

    def __post_init__(self) -> None:
        if not 0 < self.target_rel_ci < 1:
            raise InvalidValueError(f"target_rel_ci must be in (0, 1), got {self.target_rel_ci}")
        if self.budget_s <= 0:
            raise InvalidValueError(f"budget_s must be positive, got {self.budget_s}")
        if self.min_blocks < 2:
            raise InvalidValueError(f"min_blocks must be at least 2, got {self.min_blocks}")
        if self.min_runs < 1 or self.max_runs < self.min_runs:
            raise InvalidValueError(f"need 1 <= min_runs <= max_runs, got {self.min_runs}, {self.max_runs}")


def _runnable_parts(fn: Any, timer: Timer | None, conditions: dict | None) -> tuple[Callable, Timer, dict]:
    """Accept a plain callable or a backend ``Runnable`` (which brings its timer and conditions)."""
    timer = timer or getattr(fn, "timer", None) or HostTimer()
    cond = dict(getattr(fn, "conditions", {}) or {})
    cond.update(conditions or {})
    cond.setdefault("timer", timer.name)
    return fn, timer, cond


def _block_size(estimate_us: float, block_s: float) -> int:
    if not math.isfinite(estimate_us) or estimate_us <= 0:
        return 1
    return int(min(10_000, max(1, round(block_s * 1e6 / estimate_us))))


def warm_up(fn: Callable, timer: Timer, settings: MeasureSettings,
            clock: Callable[[], float] = time.perf_counter) -> tuple[int, float, bool]:
    """Run ``fn`` until its timings settle. Returns (runs, last window median in us, settled)."""
    start = clock()
    limit = settings.warmup_max_frac * settings.budget_s
    minimum = min(settings.warmup_min_s, limit)
    first = timer.time(fn, 1)
    runs, estimate, previous = 1, first[0], None
    while True:
        window = timer.time(fn, max(settings.warmup_min_runs, _block_size(estimate, settings.block_s)))
        runs += len(window)
        estimate = float(np.median(window))
        if previous is not None and runs >= settings.warmup_min_runs and clock() - start >= minimum and (
            abs(estimate - previous) <= settings.settle_tol * previous
        ):
            return runs, estimate, True
        if clock() - start >= limit:
            return runs, estimate, False
        previous = estimate


def _drifted(values: np.ndarray, settings: MeasureSettings) -> tuple[float, bool]:
    """Relative change of the median from the first to the second half, and whether it is drift."""
    half = values.size // 2
    a, b = values[:half], values[half:]
    ma, mb = float(np.median(a)), float(np.median(b))
    drift = (mb - ma) / ma if ma > 0 else 0.0
    if abs(drift) <= settings.drift_tol:
        return drift, False
    (alo, ahi), (blo, bhi) = median_ci(a, settings.ci_level), median_ci(b, settings.ci_level)
    return drift, (ahi < blo or bhi < alo)


def _rel_halfwidth(values: np.ndarray, level: float) -> float:
    lo, hi = median_ci(values, level)
    med = float(np.median(values))
    return (hi - lo) / (2 * med) if med > 0 else math.inf


def measure(
    fn: Callable[[], object],
    settings: MeasureSettings | None = None,
    *,
    timer: Timer | None = None,
    conditions: dict[str, Any] | None = None,
    name: str = "",
    progress: ProgressFn | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Measurement:
    """Time ``fn`` (a callable or backend ``Runnable``) with the adaptive, drift-aware method."""
    settings = settings or MeasureSettings()
    fn, timer, cond = _runnable_parts(fn, timer, conditions)
    start = clock()
    warm_runs, estimate, settled = warm_up(fn, timer, settings, clock)
    block = _block_size(estimate, settings.block_s)
    measuring_from = clock()

    blocks: list[list[float]] = []
    medians: list[float] = []
    runs = discarded = 0
    stop_reason, rel = "time_budget", math.inf
    try:
        while True:
            blocks.append(timer.time(fn, block))
            medians.append(float(np.median(blocks[-1])))
            runs += len(blocks[-1])
            elapsed = clock() - start
            if len(blocks) >= settings.min_blocks and runs >= settings.min_runs:
                meds = np.asarray(medians)
                if len(blocks) >= 2 * settings.min_blocks and _drifted(meds, settings)[1]:
                    half = len(blocks) // 2
                    dropped = sum(len(b) for b in blocks[:half])
                    discarded, runs = discarded + dropped, runs - dropped
                    del blocks[:half], medians[:half]
                else:
                    rel = _rel_halfwidth(meds, settings.ci_level)
                    if rel <= settings.target_rel_ci and clock() - measuring_from >= settings.min_time_s:
                        stop_reason = "converged"
                        break
            if progress is not None:
                progress({"runs": runs, "rel_ci": rel, "elapsed_s": elapsed, "budget_s": settings.budget_s})
            if elapsed >= settings.budget_s:
                stop_reason = "time_budget"
                break
            if runs >= settings.max_runs:
                stop_reason = "max_runs"
                break
    except KeyboardInterrupt:
        if not blocks:
            raise
        stop_reason = "interrupted"  # keep what was measured; the caller decides what to do next

    drift = _drifted(np.asarray(medians), settings)[0] if len(medians) >= 2 else 0.0
    return Measurement(
        samples_us=[x for b in blocks for x in b], warmup_runs=warm_runs, wall_time_s=clock() - start,
        stop_reason=stop_reason, target_rel_ci=settings.target_rel_ci, drift=drift,
        discarded_runs=discarded, conditions=cond, name=name, ci_level=settings.ci_level,
        warmup_settled=settled, block_medians_us=medians,
    )


def measure_fixed(
    fn: Callable[[], object],
    runs: int,
    warmup: int = 0,
    *,
    timer: Timer | None = None,
    conditions: dict[str, Any] | None = None,
    name: str = "",
    clock: Callable[[], float] = time.perf_counter,
) -> Measurement:
    """The naive method: ``warmup`` untimed calls, then exactly ``runs`` timed calls."""
    fn, timer, cond = _runnable_parts(fn, timer, conditions)
    start = clock()
    if warmup:
        timer.time(fn, warmup)
    samples = timer.time(fn, runs)
    return Measurement(
        samples_us=samples, warmup_runs=warmup, wall_time_s=clock() - start, stop_reason="fixed",
        target_rel_ci=None, conditions=cond, name=name, warmup_settled=False,
    )
