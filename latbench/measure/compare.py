"""Compare several runnables on a noisy machine: interleaved blocks, paired ratios with CIs.

Each round runs one block of every runnable, in an order that rotates from round to round, so
slow drift of the machine hits all of them alike. Every block starts with untimed calls for about
``settings.rewarm_s``: switching between engine sessions costs the first calls after a switch up to
twice their steady time (the other session's worker threads still spin, caches hold its data), and
the quantity compared is each runnable's steady-state latency, as ``measure`` reports it. The
ratio of a runnable to the baseline is estimated per round (block median over the baseline's
block median in the same round); the reported ratio is the median of those paired ratios with its
distribution-free 95% CI.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from latbench.errors import InvalidValueError
from latbench.measure.adaptive import MeasureSettings, _block_size, _runnable_parts, warm_up
from latbench.measure.record import Measurement
from latbench.measure.stats import median_ci


@dataclass(frozen=True)
class Ratio:
    """Latency of ``name`` divided by the baseline's, with a confidence interval."""

    name: str
    baseline: str
    ratio: float
    ci_low: float
    ci_high: float
    rounds: int

    @property
    def excludes_one(self) -> bool:
        return self.ci_low > 1.0 or self.ci_high < 1.0

    @property
    def rel_ci_halfwidth(self) -> float:
        return (self.ci_high - self.ci_low) / (2 * self.ratio) if self.ratio > 0 else math.inf


@dataclass
class Comparison:
    baseline: str
    measurements: dict[str, Measurement]
    ratios: dict[str, Ratio]
    rounds: int
    stop_reason: str
    wall_time_s: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline, "rounds": self.rounds, "stop_reason": self.stop_reason,
            "wall_time_s": self.wall_time_s,
            "ratios": {k: {"ratio": r.ratio, "ci_low": r.ci_low, "ci_high": r.ci_high} for k, r in self.ratios.items()},
            "measurements": {k: m.to_dict() for k, m in self.measurements.items()},
        }


def _ratios(block_medians: dict[str, list[float]], baseline: str, level: float) -> dict[str, Ratio]:
    base = np.asarray(block_medians[baseline])
    out = {}
    for name, meds in block_medians.items():
        paired = np.asarray(meds) / base
        lo, hi = median_ci(paired, level)
        out[name] = Ratio(name, baseline, float(np.median(paired)), lo, hi, int(paired.size))
    return out


def compare(
    runnables: Mapping[str, Callable[[], object]],
    settings: MeasureSettings | None = None,
    *,
    baseline: str | None = None,
    min_rounds: int = 10,
    max_rounds: int = 10_000,
    progress: Callable[[dict[str, Any]], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Comparison:
    """Measure ``runnables`` interleaved until every ratio's CI is within ``settings.target_rel_ci``.

    ``settings.budget_s`` bounds the whole comparison; ``baseline`` defaults to the first name.
    """
    if len(runnables) < 2:
        raise InvalidValueError("compare needs at least two runnables")
    settings = settings or MeasureSettings(target_rel_ci=0.02, budget_s=30.0)
    names = list(runnables)
    baseline = baseline or names[0]
    if baseline not in runnables:
        raise InvalidValueError(f"baseline {baseline!r} is not one of {names}")
    parts = {n: _runnable_parts(fn, None, None) for n, fn in runnables.items()}
    start = clock()
    warm_settings = MeasureSettings(**{**settings.__dict__, "budget_s": settings.budget_s / len(names)})
    warm, blocks, rewarm = {}, {}, {}
    for n, (fn, timer, _) in parts.items():
        runs, estimate, settled = warm_up(fn, timer, warm_settings, clock)
        warm[n] = (runs, settled)
        blocks[n] = max(3, _block_size(estimate, settings.block_s))
        rewarm[n] = _block_size(estimate, settings.rewarm_s) if settings.rewarm_s > 0 else 0

    samples: dict[str, list[float]] = {n: [] for n in names}
    medians: dict[str, list[float]] = {n: [] for n in names}
    stop_reason, rounds, ratios = "time_budget", 0, {}
    while True:
        order = names[rounds % len(names):] + names[: rounds % len(names)]
        for n in order:
            fn, timer, _ = parts[n]
            for _ in range(rewarm[n]):
                fn()
            block = timer.time(fn, blocks[n])
            samples[n].extend(block)
            medians[n].append(float(np.median(block)))
        rounds += 1
        elapsed = clock() - start
        if rounds >= min_rounds:
            ratios = _ratios(medians, baseline, settings.ci_level)
            if all(r.rel_ci_halfwidth <= settings.target_rel_ci for r in ratios.values()):
                stop_reason = "converged"
                break
        if progress is not None:
            progress({"rounds": rounds, "elapsed_s": elapsed, "budget_s": settings.budget_s})
        if elapsed >= settings.budget_s:
            break
        if rounds >= max_rounds:
            stop_reason = "max_runs"
            break
    if not ratios:
        ratios = _ratios(medians, baseline, settings.ci_level)
    wall = clock() - start
    measurements = {
        n: Measurement(samples_us=samples[n], warmup_runs=warm[n][0], wall_time_s=wall, stop_reason=stop_reason,
                       target_rel_ci=settings.target_rel_ci, conditions={**parts[n][2], "interleaved_with": names},
                       name=n, ci_level=settings.ci_level, warmup_settled=warm[n][1], block_medians_us=medians[n])
        for n in names
    }
    return Comparison(baseline, measurements, ratios, rounds, stop_reason, wall)
