"""Find the channel step of a backend's latency staircase by measuring, not assuming.

A probe conv (3x3, 64 input channels, 16x16, BN + ReLU) is timed at every output width from 1
to ``2 * max_step``. On an engine that pads channels to blocks of ``S``, latency jumps right
after multiples of ``S`` and stays flat in between. For each candidate step ``s`` the score is the
share of the total absolute change between neighbours that happens at multiples of ``s``. Noise
alone gives about ``1/s``, so ``s * score`` measures enrichment over noise. A staircase of period
``S`` keeps the score of ``S`` close to that of ``S / 2`` (its jumps are at multiples of both) and
roughly halves it at ``2S``. The step is the largest candidate at least ``enrichment`` times above
noise that keeps ``keep`` of the score at half its size; a single noisy jump therefore cannot
promote or veto a step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from latbench.arch.spec import LayerSpec

CANDIDATE_STEPS = (2, 4, 8, 16, 32)
FALLBACK_STEP = 8
PROBE = LayerSpec("conv", 64, 64, (3, 3), (1, 1), (1, 1), in_hw=(16, 16), epilogue=("bn", "relu"))


def step_scores(latencies: dict[int, float]) -> dict[int, float]:
    """Share of |l(c+1) - l(c)| that falls at c = multiples of each candidate step."""
    cs = sorted(latencies)
    deltas = {c: abs(latencies[c + 1] - latencies[c]) for c in cs if c + 1 in latencies}
    total = sum(deltas.values()) or 1.0
    return {s: sum(d for c, d in deltas.items() if c % s == 0) / total for s in CANDIDATE_STEPS}


def detect_step(latencies: dict[int, float], keep: float = 0.6, enrichment: float = 3.0,
                ) -> tuple[int, dict[int, float], bool]:
    """(step, scores, found): see the module docstring; ``FALLBACK_STEP`` when no staircase shows."""
    scores = step_scores(latencies)
    good = [s for s in CANDIDATE_STEPS[1:] if s * scores[s] >= enrichment and scores[s] >= keep * scores[s // 2]]
    return (max(good), scores, True) if good else (FALLBACK_STEP, scores, False)


def sweep(measure_us: Callable[[LayerSpec], float], max_step: int = 32) -> dict[int, float]:
    """Median latency of the probe at every output width 1 .. 2 * max_step."""
    return {c: measure_us(replace(PROBE, out_channels=c)) for c in range(1, 2 * max_step + 1)}


def smooth(latencies: dict[int, float]) -> dict[int, float]:
    """Running median of 3, so one noisy point does not make a step."""
    cs = sorted(latencies)
    vals = np.array([latencies[c] for c in cs])
    out = vals.copy()
    out[1:-1] = np.median(np.stack([vals[:-2], vals[1:-1], vals[2:]]), axis=0)
    return dict(zip(cs, out.tolist(), strict=True))
