"""A measurement job: candidates timed interleaved with a reference network on one backend.

The unit of work a latency oracle hands out, locally or to a measurement pool (``latbench.fleet``):
self-contained (modules, example input, settings) so that it can travel to the process that owns a
device, and answered with ratios to the reference measured in the same run, which stay comparable
across devices of one kind and across machine states.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from latbench.measure.adaptive import MeasureSettings
from latbench.measure.compare import compare

REFERENCE = "reference"


@dataclass
class MeasureJob:
    """Time ``candidates`` (key -> module) interleaved with ``reference`` at ``example``.

    ``reference_key`` names the reference (e.g. its architecture's signature), so a worker deploys it
    once for every job that shares it; the run lasts at least ``seconds_each`` per network."""

    reference_key: str
    reference: Any
    example: Any
    candidates: dict[str, Any]
    settings: MeasureSettings
    seconds_each: float = 0.0

    @property
    def keys(self) -> list[str]:
        return list(self.candidates)


@dataclass(frozen=True)
class JobResult:
    """Per candidate key: (ratio to the reference, 95% CI low, high); the reference's median latency; who ran it."""

    ratios: dict[str, tuple[float, float, float]]
    reference_us: float
    worker: str = "local"
    seconds: float = 0.0


class JobRunner:
    """Runs jobs on one backend, keeping each reference deployed between jobs (deploying costs an export)."""

    def __init__(self, backend: Any, name: str = "local") -> None:
        self.backend = backend
        self.name = name
        self._references: dict[str, Any] = {}

    def run(self, job: MeasureJob) -> JobResult:
        if REFERENCE in job.candidates:
            raise ValueError(f"a candidate may not be called {REFERENCE!r}")
        reference = self._references.get(job.reference_key)
        if reference is None:
            reference = self._references[job.reference_key] = self.backend.deploy(job.reference.eval(), job.example)
        runnables = {REFERENCE: reference}
        runnables |= {key: self.backend.deploy(module.eval(), job.example) for key, module in job.candidates.items()}
        budget = max(job.settings.budget_s, job.seconds_each * len(runnables))
        result = compare(runnables, replace(job.settings, budget_s=budget), baseline=REFERENCE)
        ratios = {key: (r.ratio, r.ci_low, r.ci_high) for key, r in result.ratios.items() if key != REFERENCE}
        return JobResult(ratios, result.measurements[REFERENCE].median_us, self.name, result.wall_time_s)
