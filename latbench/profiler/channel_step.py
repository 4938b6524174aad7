"""Find the channel step of a backend's latency staircase by measuring, not assuming.

A probe conv (3x3, BN + ReLU; 64 input channels at 16x16 on CPU) is timed at every output width
from 1 to twice the largest candidate step. GPUs quantise work into tiles and waves: the probe
there is larger (256 input channels at 56x56, at the profile's batch) so that its kernel time, not
the launch, is what is measured, and steps up to 64 are candidates (tensor-core tiles at fp16).

On an engine that pads channels to blocks of ``S``, latency jumps right
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
GPU_CANDIDATE_STEPS = (*CANDIDATE_STEPS, 64)
FALLBACK_STEP = 8
PROBE = LayerSpec("conv", 64, 64, (3, 3), (1, 1), (1, 1), in_hw=(16, 16), epilogue=("bn", "relu"))
GPU_PROBE = LayerSpec("conv", 256, 64, (3, 3), (1, 1), (1, 1), in_hw=(56, 56), epilogue=("bn", "relu"))


def candidate_steps(device: str | None) -> tuple[int, ...]:
    return GPU_CANDIDATE_STEPS if device == "cuda" else CANDIDATE_STEPS


def probe(device: str | None, batch: int = 1) -> LayerSpec:
    """The staircase probe, which is also the reference layer a profile re-measures to track the
    machine's speed: the CPU probe at batch 1, or the GPU probe at the profile's batch."""
    return replace(GPU_PROBE, batch=batch) if device == "cuda" else PROBE


def reference_layer(meta: dict) -> LayerSpec:
    """The reference layer a profile was made with (profiles that do not record one used ``PROBE``)."""
    spec = meta.get("reference_layer")
    return LayerSpec.from_dict(spec) if spec else PROBE


def step_scores(latencies: dict[int, float], candidates: tuple[int, ...] = CANDIDATE_STEPS) -> dict[int, float]:
    """Share of |l(c+1) - l(c)| that falls at c = multiples of each candidate step."""
    cs = sorted(latencies)
    deltas = {c: abs(latencies[c + 1] - latencies[c]) for c in cs if c + 1 in latencies}
    total = sum(deltas.values()) or 1.0
    return {s: sum(d for c, d in deltas.items() if c % s == 0) / total for s in candidates}


def detect_step(latencies: dict[int, float], keep: float = 0.6, enrichment: float = 3.0,
                candidates: tuple[int, ...] = CANDIDATE_STEPS) -> tuple[int, dict[int, float], bool]:
    """(step, scores, found): see the module docstring; ``FALLBACK_STEP`` when no staircase shows."""
    scores = step_scores(latencies, candidates)
    good = [s for s in candidates[1:] if s * scores[s] >= enrichment and scores[s] >= keep * scores[s // 2]]
    return (max(good), scores, True) if good else (FALLBACK_STEP, scores, False)


def sweep(measure_us: Callable[[LayerSpec], float], max_step: int = 32, probe_spec: LayerSpec = PROBE,
          ) -> dict[int, float]:
    """Median latency of the probe at every output width 1 .. 2 * max_step."""
    return {c: measure_us(replace(probe_spec, out_channels=c)) for c in range(1, 2 * max_step + 1)}


def smooth(latencies: dict[int, float]) -> dict[int, float]:
    """Running median of 3, so one noisy point does not make a step."""
    cs = sorted(latencies)
    vals = np.array([latencies[c] for c in cs])
    out = vals.copy()
    out[1:-1] = np.median(np.stack([vals[:-2], vals[1:-1], vals[2:]]), axis=0)
    return dict(zip(cs, out.tolist(), strict=True))
