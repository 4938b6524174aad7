"""The latency oracle: what a pruning method asks when it needs to know how fast a candidate is.

Latency is asked *relative to the unpruned network* (a ratio), which is how targets are given:

- ``predict(arch)``: the profile's predictor, as the ratio of the candidate's prediction to the
  reference's, so a calibration bias common to both cancels; with the predictor's 90% interval.
- ``measure(module, arch)``: the candidate deployed on the profile's backend and timed
  interleaved with the reference network (``latbench.measure.compare``): the ratio of paired
  medians is robust to the drift of a shared machine.
- ``ratio(arch, build)``: by ``mode``: ``"predict"``, ``"measure"``, or ``"auto"``, which measures
  when the prediction's relative uncertainty exceeds ``threshold`` (``uncertain(arch)``).

With an ``Anchor`` (another pruned network and the ratio it was measured at), every measurement also
times the anchor in the same interleaved run and reports ``anchor.ratio * candidate / anchor``: the
ratio on the anchor's scale. On a shared machine a small network's ratio to the original moves with
the machine's state (on a 2-vCPU VM by up to 15% between runs minutes apart) while two pruned networks'
ratio to each other holds within a few percent, so a second method pruned to an anchored target lands
at the first method's latency, not at the same number in another machine state.

Results are cached by the architecture's signature and every call is counted, so a method's
report says how many predictions and measurements it made.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from latbench.arch import Arch
from latbench.errors import ProfileError
from latbench.measure import MeasureSettings
from latbench.measure.jobs import JobResult, JobRunner, MeasureJob
from latbench.predictors import OutOfProfileError
from pruners.errors import PruningError

#: the predictor a network the chosen one cannot price falls back to
LEARNED_FALLBACK = "xgb"

MODES = ("predict", "measure", "auto")


@dataclass(frozen=True)
class Estimate:
    """A candidate's latency relative to the reference (``ratio``) and in microseconds."""

    ratio: float
    latency_us: float
    low: float  #: lower end of the ratio's interval (90% for predictions, 95% CI for measurements)
    high: float
    source: str  #: "predicted" or "measured"

    @property
    def rel_halfwidth(self) -> float:
        return (self.high - self.low) / (2 * self.ratio) if self.ratio > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return {"ratio": self.ratio, "latency_us": self.latency_us, "low": self.low, "high": self.high,
                "source": self.source}


#: the anchor's key among a job's candidates (architecture signatures are hex digests, never this)
ANCHOR = "anchor"


@dataclass(frozen=True)
class Anchor:
    """A network measured before at ``ratio`` of the reference; measurements are taken relative to it."""

    module: nn.Module
    ratio: float
    name: str = "anchor"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.ratio) and self.ratio > 0):
            raise PruningError(f"an anchor's latency ratio must be positive, got {self.ratio}")

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "ratio": self.ratio}


@dataclass
class Counts:
    predictions: int = 0
    measurements: int = 0
    cache_hits: int = 0
    measure_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def anchored(ratios: dict[str, tuple[float, float, float]],
             anchor: Anchor | None) -> dict[str, tuple[float, float, float]]:
    """A job's (ratio, low, high) per candidate, on the anchor's scale when there is one: each divided by the
    anchor's ratio in the same job and multiplied by ``anchor.ratio``; the anchor's own entry dropped."""
    if anchor is None:
        return ratios
    scale = anchor.ratio / ratios[ANCHOR][0]
    return {key: (r * scale, low * scale, high * scale) for key, (r, low, high) in ratios.items() if key != ANCHOR}


@dataclass
class LatencyOracle:
    """Predicts and measures candidates of ``reference`` (traced as ``arch``) on one device profile.

    ``backend``: where measurements run; defaults to the profile's own backend, and one whose name
    differs from the profile's is refused (a profile prices one engine, not another). ``pool``: a
    measurement pool (``latbench.fleet.pool.RayPool``) whose devices measure instead, the candidates of
    one call spread over its actors, each job interleaved with the reference; ``None`` measures here.
    ``anchor``: measure on an anchor's scale (module docstring).
    """

    profile: Any
    reference: nn.Module
    arch: Arch
    example: torch.Tensor
    predictor: str = "lut"
    mode: str = "auto"
    threshold: float = 0.05
    backend: Any = None
    settings: MeasureSettings = field(default_factory=lambda: MeasureSettings(target_rel_ci=0.01, budget_s=6.0))
    counts: Counts = field(default_factory=Counts)
    pool: Any = None
    anchor: Anchor | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise PruningError(f"unknown oracle mode {self.mode!r}; choose from {', '.join(MODES)}")
        expected = self.profile.meta["settings"]["backend"]
        if self.backend is None:
            self.backend = self.profile.backend()
        elif self.backend.name != expected:
            raise PruningError(f"profile {self.profile.name} prices backend {expected!r}, not {self.backend.name!r}; "
                               f"measure on {expected} or use a profile made with {self.backend.name}")
        self.notes: list[str] = []
        self._model = self.profile.predictor(self.predictor)
        self._predicted: dict[str, Estimate] = {}
        self._measured: dict[str, Estimate] = {}
        self._runner: JobRunner | None = None
        self.reference_predicted_us = self._price_reference()
        self.reference_measured_us: float | None = None

    def _price_reference(self) -> float:
        """The original's predicted latency; a network the chosen predictor cannot price (layer shapes the
        profile never measured) is priced by the learned predictor instead, with a note, else refused in one
        line before any search starts."""
        try:
            return float(self._model.predict(self.arch).latency_us)
        except OutOfProfileError as exc:
            unpriced = str(exc)
        if self.predictor != LEARNED_FALLBACK:
            try:
                model = self.profile.predictor(LEARNED_FALLBACK)
                latency = float(model.predict(self.arch).latency_us)
            except (OutOfProfileError, ProfileError):
                pass
            else:
                self.notes.append(f"{unpriced}; priced by the learned predictor {LEARNED_FALLBACK} instead "
                                  f"(latbench profile --extend would measure them)")
                self._model, self.predictor = model, LEARNED_FALLBACK
                return latency
        raise PruningError(f"{unpriced}; no predictor of this profile prices it (not the learned one either): "
                           "prune to a --flops-target, or profile this network's layers first")

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def predict(self, arch: Arch) -> Estimate:
        key = arch.signature()
        if key in self._predicted:
            self.counts.cache_hits += 1
            return self._predicted[key]
        self.counts.predictions += 1
        p = self._model.predict(arch)
        ref = self.reference_predicted_us
        ratio, low, high = p.latency_us / ref, p.low_us / ref, p.high_us / ref
        # the family's level (``family_sigma``) is common to the candidate and its reference: it cancels in the
        # ratio, so its share of the (log-normal) interval goes
        if p.family_sigma and p.rel_sigma > 0:
            shrink = math.sqrt(max(p.rel_sigma**2 - p.family_sigma**2, 0.0)) / p.rel_sigma
            low, high = ratio * (low / ratio) ** shrink, ratio * (high / ratio) ** shrink
        est = Estimate(ratio, p.latency_us, low, high, "predicted")
        self._predicted[key] = est
        return est

    def predict_ratios(self, archs: list[Arch]) -> np.ndarray:
        """Predicted latency ratios of many candidates in one batched call (not cached: for searches
        that price hundreds of neighbours of one candidate). A candidate the predictor gives no usable
        latency for (a degenerate network, e.g. every convolution of a path removed) is ``inf``: it never
        counts as meeting a target, and a search that wants it measures it."""
        if not archs:
            return np.empty(0)
        self.counts.predictions += len(archs)
        return self._ratios(archs)

    def _ratios(self, archs: list[Arch]) -> np.ndarray:
        try:
            latency_us, _ = self._model.predict_many(archs)
        except OutOfProfileError:
            if len(archs) == 1:
                return np.array([np.inf])
            return np.concatenate([self._ratios([a]) for a in archs])
        return np.asarray(latency_us, dtype=float) / self.reference_predicted_us

    def uncertain(self, arch: Arch) -> bool:
        """Whether the prediction's relative half-width exceeds ``threshold`` (then ``auto`` measures)."""
        return self.predict(arch).rel_halfwidth > self.threshold

    def measure(self, module: nn.Module, arch: Arch) -> Estimate:
        """Time ``module`` (whose trace is ``arch``) interleaved with the reference network."""
        return self.measure_many([(module, arch)], seconds_each=0.0)[0]

    def measure_many(self, candidates: list[tuple[nn.Module, Arch]], seconds_each: float = 0.5) -> list[Estimate]:
        """Time several candidates in one run, interleaved with each other and the reference network, so
        that their differences are measured in one machine state (ratios to the reference); the run takes
        at least ``seconds_each`` per network. Candidates measured before come from the cache; each new
        one counts as a measurement."""
        keys = [arch.signature() for _, arch in candidates]
        new = {key: (module, arch) for key, (module, arch) in zip(keys, candidates, strict=True)
               if key not in self._measured}
        self.counts.cache_hits += len(candidates) - len(new)
        if new:
            start = time.perf_counter()
            for result in self._run(new, seconds_each):
                self.reference_measured_us = self.reference_measured_us or result.reference_us
                for key, (ratio, low, high) in anchored(result.ratios, self.anchor).items():
                    self._measured[key] = Estimate(ratio, ratio * self.reference_measured_us, low, high, "measured")
            self.counts.measurements += len(new)
            self.counts.measure_seconds += time.perf_counter() - start
        return [self._measured[key] for key in keys]

    def _run(self, new: dict[str, tuple[nn.Module, Arch]], seconds_each: float) -> list[JobResult]:
        """Here: one job of every new candidate. In a pool: the candidates dealt round-robin into one job
        per actor (at most one per candidate), run in parallel; each job gets the share of the call's
        budget its networks (its candidates and its own reference) make of the networks a single job would
        time, so that every network is timed about as long as here and the call takes less wall time."""
        keys = list(new)
        parts = 1 if self.pool is None else max(1, min(len(self.pool), len(keys)))
        jobs = []
        for i in range(parts):
            mine = keys[i::parts]
            share = (len(mine) + 1) / (len(keys) + 1)
            settings = replace(self.settings, budget_s=self.settings.budget_s * share)
            modules = {k: new[k][0] for k in mine} | ({} if self.anchor is None else {ANCHOR: self.anchor.module})
            jobs.append(MeasureJob(self.arch.signature(), self.reference, self.example, modules, settings,
                                   seconds_each))
        if self.pool is not None:
            return self.pool.measure(jobs)
        if self._runner is None:
            self._runner = JobRunner(self.backend)
        return [self._runner.run(job) for job in jobs]

    def ratio(self, arch: Arch, build: Callable[[], nn.Module] | None = None) -> Estimate:
        """The candidate's latency ratio by this oracle's mode; ``build`` makes its module when measuring."""
        if self.mode == "predict" or build is None:
            return self.predict(arch)
        if self.mode == "auto" and not self.uncertain(arch):
            return self.predict(arch)
        cached = self._measured.get(arch.signature())
        if cached is not None:
            self.counts.cache_hits += 1
            return cached
        return self.measure(build(), arch)

    def smallest(self) -> Arch:
        """The smallest candidate: every prunable group at one channel, every removable block removed."""
        small = self.arch.with_widths({g.id: 1 for g in self.arch.prunable_groups})
        return small.without_blocks(b.name for b in self.arch.blocks if b.removable)

    def check_target(self, target: float, build_smallest: Callable[[], nn.Module] | None = None) -> float:
        """Refuse a target ratio outside (floor, 1] with one line that says what the floor is; returns the floor.

        The floor is predicted; where the prediction says the target is out of reach and the oracle
        may measure, the smallest network is measured before refusing (predictors are least sure there).
        """
        if not 0 < target <= 1:
            raise PruningError(f"latency target must be a ratio of the original in (0, 1], got {target}")
        small = self.smallest()
        floor = self.predict(small)
        if target < floor.ratio and build_smallest is not None and self.mode != "predict":
            floor = self.measure(build_smallest(), small)
        if target < floor.ratio:
            raise PruningError(f"latency target {target:g} is below the floor {floor.ratio:.3f} of {self.arch.name} "
                               f"({floor.source}: every prunable group at one channel and every removable block "
                               f"removed, on {self.profile.name})")
        return floor.ratio

    def describe(self) -> dict[str, Any]:
        return {"profile": self.profile.name, "backend": self.backend_name, "predictor": self.predictor,
                "mode": self.mode, "threshold": self.threshold, "notes": list(self.notes),
                "anchor": None if self.anchor is None else self.anchor.describe(),
                "reference_predicted_us": self.reference_predicted_us,
                "reference_measured_us": self.reference_measured_us, "counts": self.counts.to_dict(),
                **({"pool": self.pool.describe()} if self.pool is not None else {})}
