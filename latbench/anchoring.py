"""Re-anchoring: bring a device profile's absolute level to this machine's state *now*.

A shared machine's speed moves between days (the same CPU model has run a profile's networks
about 2x slower than on the day they were profiled), and not uniformly: on such a day the
networks that stream many weights slowed by 2.5x while compute-bound ones slowed by 1.7x.
The profile records the state it was measured in: every network sample (normalised to its
family's full-width anchor), and the reference layer's median over the layer grids.
Re-anchoring measures again, interleaved in one short run, the reference layer, the
full-width network of every family, and per family the two calibration networks with the
smallest and the largest share of weight traffic in their predicted latency, and rescales:

- **the layer-sum predictors** (LUT, learned) by two speed ratios, one for compute (every layer
  term of the calibration) and one for weight traffic (its per-weight term), fitted on the
  measured networks (each network's prediction in the profile's state times its measured
  ratio now over then) and held toward one common ratio (``fit_toward``, as when adapting a
  profile), so that a uniform change moves both alike. A user's network follows through its
  own mix of compute and weights.
- **other predictors** (FLOPs) by the median ratio of measured over predicted per family, and
  by the overall factor elsewhere.

Per-kind ratios (3x3, 1x1, depthwise convs ...) were tried first: with ten networks they fit
worse on held-out networks than the two ratios (``benchmarks/reanchor_accuracy.py``).

The measurements are kept in ``anchors.json`` beside the profile (a short history, newest last;
local to the machine, so not part of a shipped profile), so ``latbench devices`` can show each
profile's last known factor.
"""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latbench.errors import InvalidValueError, ProfileError
from latbench.jsonio import dump_json
from latbench.measure import MeasureSettings, compare
from latbench.predictors.batch import CandidateBatch, group_by_base
from latbench.predictors.calibration import fit_toward
from latbench.predictors.layer_sum import FEATURES, LayerSumPredictor
from latbench.predictors.rescaled import Rescaled
from latbench.profile import anchor_latencies, reference_us
from latbench.profiler.channel_step import reference_layer
from latbench.profiler.microbench import build_layer

ANCHORS_FILE = "anchors.json"
ANCHORS_SCHEMA = "latbench.anchors/2"
HISTORY = 50  # anchorings kept per profile
DEFAULT_SECONDS = 8.0
#: a change of the machine's speed beyond this share is reported prominently
NOTABLE_CHANGE = 0.15
REFERENCE = "reference layer"
#: calibration networks measured per family besides its full-width anchor
PER_FAMILY = 2
#: calibration terms rescaled together: weight traffic apart from everything else
WEIGHT_TERMS = ("us_per_kweight",)
TERM_GROUPS = ("compute", "weights")


@dataclass(frozen=True)
class AnchorPoint:
    """One network of the profile (or its reference layer): its latency in the profile's state and now.

    ``name`` is the family for a full-width anchor, the ``models.csv`` key for a calibration
    network, ``REFERENCE`` for the reference layer (``family`` None)."""

    name: str
    family: str | None
    profile_us: float
    now_us: float
    ci_low_us: float
    ci_high_us: float

    @property
    def ratio(self) -> float:
        return self.now_us / self.profile_us

    @property
    def is_anchor(self) -> bool:
        return self.family is not None and self.name == self.family


@dataclass(frozen=True)
class Reanchoring:
    """What was measured now against the profile's state; ``factor`` is the headline."""

    profile: str
    measured_at: str
    seconds: float
    points: tuple[AnchorPoint, ...]
    engine: dict[str, Any] = field(default_factory=dict)
    #: median latency (us) of other runnables measured in the same interleaved run (not recorded)
    extra_us: dict[str, float] = field(default_factory=dict, compare=False)

    @property
    def networks(self) -> list[AnchorPoint]:
        return [p for p in self.points if p.family is not None]

    @property
    def anchors(self) -> dict[str, AnchorPoint]:
        return {p.family: p for p in self.points if p.is_anchor}

    @property
    def reference(self) -> AnchorPoint | None:
        return next((p for p in self.points if p.family is None), None)

    @property
    def factor(self) -> float:
        """Now over then: the geometric mean of the full-width anchors' ratios (of every point without them)."""
        points = list(self.anchors.values()) or list(self.points)
        return float(math.exp(np.mean([math.log(p.ratio) for p in points])))

    @property
    def notable(self) -> bool:
        return abs(self.factor - 1.0) > NOTABLE_CHANGE

    def describe(self, created: str = "") -> str:
        """One line: how much slower or faster this machine runs than when the profile was made."""
        f = self.factor
        speed = f"{f:.2f}x slower" if f >= 1 else f"{1 / f:.2f}x faster"
        when = f" ({created[:10]})" if created else ""
        ratios = [p.ratio for p in self.networks]
        parts = [f"{len(ratios)} networks {min(ratios):.2f}-{max(ratios):.2f}x"] if ratios else []
        if self.reference is not None:
            parts.append(f"reference layer {self.reference.ratio:.2f}x")
        return (f"this machine runs {speed} than when {self.profile} was profiled{when}; predictions rescaled "
                f"({', '.join(parts)}; measured in {self.seconds:.1f} s)")

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "measured_at": self.measured_at, "seconds": self.seconds,
                "factor": self.factor, "engine": self.engine, "points": [asdict(p) for p in self.points]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Reanchoring:
        points = tuple(AnchorPoint(str(p["name"]), None if p["family"] is None else str(p["family"]),
                                   *(float(p[k]) for k in ("profile_us", "now_us", "ci_low_us", "ci_high_us")))
                       for p in d["points"])
        if not points or any(not (p.profile_us > 0 and p.now_us > 0) for p in points):
            raise InvalidValueError("an anchoring needs positive latencies")
        return cls(str(d["profile"]), str(d["measured_at"]), float(d["seconds"]), points, dict(d.get("engine", {})))


# --- what is measured -------------------------------------------------------------------------------
def term_groups() -> np.ndarray:
    """Index into ``TERM_GROUPS`` of every calibration feature."""
    return np.array([1 if f in WEIGHT_TERMS else 0 for f in FEATURES])


def contributions(predictor: LayerSumPredictor, archs) -> np.ndarray:
    """(N, len(TERM_GROUPS)): each network's prediction split into compute and weight traffic."""
    coef = np.array([predictor.calibration["coefficients"][f] for f in FEATURES])
    groups, order = group_by_base(archs)
    terms = np.empty((len(archs), len(FEATURES)))
    terms[order] = np.concatenate([predictor.features(CandidateBatch.of(group))[0] for group in groups]) * coef
    column = term_groups()
    return np.stack([terms[:, column == g].sum(axis=1) for g in range(len(TERM_GROUPS))], axis=1)


def anchor_networks(profile, per_family: int = PER_FAMILY) -> list[tuple[str, str, Any, float]]:
    """(name, family, arch, latency in the profile's state) of every network re-anchoring measures:
    each family's full-width anchor, and its calibration networks with the smallest and largest
    share of weight traffic in their predicted latency (they spread the two ratios apart)."""
    models = profile.models
    anchors = anchor_latencies(models, profile.meta.get("family_state"))
    out = [(f, f, profile.family_archs[f], v) for f, v in anchors.items() if f in profile.family_archs]
    archs, latency = profile.network_samples("calib")
    keys = models.loc[(models["split"] == "calib").to_numpy(), "key"].tolist()
    if per_family < 1 or not archs:
        return out
    share = contributions(profile.predictor("lut", reanchored=False), archs)
    share = share[:, 1] / np.maximum(share.sum(axis=1), 1e-9)
    for family in [f for f, *_ in out]:
        ranked = sorted((i for i, a in enumerate(archs) if a.name == family), key=lambda i: share[i])
        if not ranked:
            continue
        picks = [ranked[round(j * (len(ranked) - 1) / max(per_family - 1, 1))] for j in range(per_family)]
        for i in dict.fromkeys(picks):
            out.append((keys[i], family, archs[i], float(latency[i])))
    return out


def measure_anchors(profile, seconds: float = DEFAULT_SECONDS, backend=None,
                    progress: Callable[[dict[str, Any]], None] | None = None, per_family: int = PER_FAMILY,
                    extra: dict[str, Any] | None = None, clock: Callable[[], float] = time.perf_counter) -> Reanchoring:
    """Measure ``profile``'s reference layer and anchor networks now, interleaved, for about
    ``seconds``. ``backend`` defaults to the profile's own (same device, threads, precision).
    ``extra`` runnables are measured in the same run, into ``Reanchoring.extra_us``, so that a
    network can be compared with predictions in the very machine state they were anchored to."""
    if not seconds > 0:
        raise ProfileError(f"re-anchoring needs a positive number of seconds, got {seconds}")
    started = time.perf_counter()
    networks = anchor_networks(profile, per_family)
    reference = reference_us(profile.layers)
    if not networks and reference is None:
        raise ProfileError(f"profile {profile.name} records no anchor network or reference layer to re-anchor on")
    backend = backend or profile.backend()
    runnables, state = {}, {}
    if reference is not None:
        module, x = build_layer(reference_layer(profile.meta))
        runnables[REFERENCE], state[REFERENCE] = backend.deploy(module, x), (None, reference)
    for name, family, arch, then in networks:
        x = torch.randn(*arch.base.input_shape, generator=torch.Generator().manual_seed(0))
        runnables[name], state[name] = backend.deploy(profile.families[family].build(arch), x), (family, then)
    extra = {f"extra:{name}": fn for name, fn in (extra or {}).items()}
    runnables |= extra
    if len(runnables) == 1:  # compare needs two: time the one point against itself
        runnables["again"] = next(iter(runnables.values()))
    settings = MeasureSettings(target_rel_ci=0.01, budget_s=seconds, warmup_min_s=0.05)
    result = compare(runnables, settings, min_rounds=6, progress=progress, clock=clock)
    points = []
    for name, (family, then) in state.items():
        s = result.measurements[name].summary
        points.append(AnchorPoint(name, family, then, float(s.median), float(s.ci_low), float(s.ci_high)))
    fp = profile.meta.get("fingerprint", {})
    engine = {k: fp.get(k) for k in ("backend", "onnxruntime", "torch", "tensorrt") if fp.get(k) is not None}
    return Reanchoring(profile.name, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                       round(time.perf_counter() - started, 2), tuple(points), engine,
                       {name[len("extra:"):]: result.measurements[name].median_us for name in extra})


# --- how predictions follow ------------------------------------------------------------------------------
def point_archs(profile, anchoring: Reanchoring) -> list[tuple[AnchorPoint, Any]]:
    """Each measured network of ``anchoring`` with its architecture (points the profile cannot name are skipped)."""
    archs, _ = profile.network_samples()
    by_key = dict(zip(profile.models["key"].astype(str), archs, strict=True))
    out = []
    for p in anchoring.networks:
        arch = profile.family_archs.get(p.family) if p.is_anchor else by_key.get(p.name)
        if arch is not None:
            out.append((p, arch))
    return out


def group_ratios(contrib: np.ndarray, ratios: np.ndarray) -> np.ndarray:
    """Speed ratio per term group that brings each network's prediction (split by group in
    ``contrib``) to its measured ratio now over then, held toward one common ratio."""
    target = np.asarray(ratios, dtype=float) * contrib.sum(axis=1)
    return fit_toward(contrib, target, np.ones(contrib.shape[1]))


def rescale(predictor, profile, anchoring: Reanchoring):
    """``predictor`` (calibrated on ``profile``) rescaled to the machine state of ``anchoring``."""
    measured = point_archs(profile, anchoring)
    if not isinstance(predictor, LayerSumPredictor) or not measured:
        references = [(arch, p.ratio * float(predictor.predict_many([arch])[0][0])) for p, arch in measured]
        return Rescaled(predictor, references, default=anchoring.factor, label="reanchored")
    contrib = contributions(predictor, [arch for _, arch in measured])
    ratios = group_ratios(contrib, np.array([p.ratio for p, _ in measured]))
    coef = np.array([predictor.calibration["coefficients"][f] for f in FEATURES])
    scaled = copy.copy(predictor)
    scaled.name = f"{predictor.name}+reanchored"
    scaled.calibration = {**predictor.calibration,
                          "coefficients": dict(zip(FEATURES, map(float, coef * ratios[term_groups()]), strict=True)),
                          "reanchored": {"factor": anchoring.factor, "measured_at": anchoring.measured_at,
                                         **dict(zip(TERM_GROUPS, map(float, ratios), strict=True))}}
    return scaled


# --- the history beside the profile ---------------------------------------------------------------
def history(folder: str | Path) -> list[Reanchoring]:
    """Anchorings recorded for the profile in ``folder``, oldest first; an unreadable file is ignored."""
    path = Path(folder) / ANCHORS_FILE
    try:
        data = json.loads(path.read_text())
        return [Reanchoring.from_dict(d) for d in data["history"]] if data.get("schema") == ANCHORS_SCHEMA else []
    except (OSError, ValueError, KeyError, TypeError):
        return []


def record(folder: str | Path, anchoring: Reanchoring) -> bool:
    """Append ``anchoring`` to the folder's history, atomically; False where it cannot be written."""
    path = Path(folder) / ANCHORS_FILE
    entries = [*(a.to_dict() for a in history(folder)[-(HISTORY - 1):]), anchoring.to_dict()]
    try:
        dump_json({"schema": ANCHORS_SCHEMA, "history": entries}, path)
    except OSError:
        return False
    return True
