"""LayerPrune: remove whole blocks, or single-path layers, under a latency budget (``../shared/METHODS.md``).

Depth pruning removes whole kernel launches, so it reaches latencies that width pruning cannot.

- **Units.** A residual network's units are its removable blocks (a block becomes identity; the first
  block of a stage, which changes stride or width, is not removable). A network without removable
  blocks (VGG) is pruned by single-path layers: every conv that ``pruners.path_layers`` can take out,
  its neighbours' channels reconciled.
- **Importance in one shot.** A per-filter criterion of the core (``l1`` by default; ``l2``,
  ``bn_scale``, ``taylor`` on a few training batches, ``fpgm``) gives each writer its mean filter
  score in per-weight units (``Criterion.size_divisor``), divided by the network's mean writer, so
  1 is an average writer. A block's importance aggregates its writers: ``mean`` (default, the
  paper's averaging), ``max`` (a block is as important as its strongest layer) or ``min``.
- **Selection.** Units are removed least important first, or with ``per_latency`` by importance per
  predicted latency saved (each unit removed alone from the full network). The number removed is
  the knob: every count is predicted, then measured and corrected by the shared targeting loop
  (``pruners.targeting``) until a candidate lands within the tolerance of the target.
- **Floor.** Every unit removed; a target below it is refused in one line that gives the floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from latbench.arch import Arch
from pruners.errors import PruningError
from pruners.importance import AGGREGATES, block_scores, writer_importance
from pruners.method import Method, Problem, Search, option
from pruners.path_layers import path_layers
from pruners.surgery import Decision, apply
from pruners.targeting import largest_meeting, measure_toward


def removable_units(arch: Arch) -> tuple[str, list[str]]:
    """("blocks", removable block names) for a residual network, else ("layers", path layers)."""
    blocks = [b.name for b in arch.blocks if b.removable and b.name not in arch.removed]
    if blocks:
        return "blocks", blocks
    layers = path_layers(arch)
    if layers:
        return "layers", layers
    raise PruningError(f"{arch.name} has no removable block and no single-path layer: depth pruning has nothing "
                       "to remove; use a width method (uniform, global, splamp, hilp)")


def unit_importance(problem: Problem, kind: str, names: list[str], criterion: str = "l1",
                    aggregate: str = "mean") -> dict[str, float]:
    """Each unit's importance (module doc): 1 is an average writer of the network."""
    if aggregate not in AGGREGATES:
        raise PruningError(f"unknown aggregate {aggregate!r}; choose from {', '.join(AGGREGATES)}")
    if kind == "blocks":
        scores = block_scores(problem.model, problem.arch, problem.groups, criterion, problem.train_loader,
                              aggregate=aggregate)
    else:
        scores = writer_importance(problem.model, problem.groups, criterion, problem.train_loader)
    missing = [name for name in names if name not in scores]
    if missing:
        raise PruningError(f"{missing[0]!r} contains no writer of a prunable channel group")
    return {name: scores[name] for name in names}


def decision_of(kind: str, removed: list[str]) -> Decision:
    return Decision(remove_blocks=tuple(removed)) if kind == "blocks" else Decision(remove_layers=tuple(removed))


def layerprune(problem: Problem, criterion: str = "l1", aggregate: str = "mean", per_latency: bool = False,
               tolerance: float = 0.05, max_measurements: int = 6) -> Search:
    """Remove the least important units until the measured latency (or counted FLOPs) meets the target."""
    arch, oracle, target = problem.arch, problem.oracle, problem.target
    if problem.metric == "latency" and oracle is None:
        raise PruningError("a latency target needs a latency oracle (a device profile)")
    kind, names = removable_units(arch)
    importance = unit_importance(problem, kind, names, criterion, aggregate)
    candidates: dict[int, tuple[Decision, Arch]] = {}

    def candidate(removed: list[str]) -> tuple[Decision, Arch]:
        d = decision_of(kind, removed)
        if kind == "blocks":
            return d, d.arch(arch)
        return d, apply(problem.model, arch, d, problem.example, check_arch=False)[1]  # a shorter path: re-traced

    def value(archs: list[Arch]) -> np.ndarray:
        if problem.metric == "flops":
            return np.array([a.flops() / arch.flops() for a in archs])
        return oracle.predict_ratios(archs)

    key = {n: importance[n] for n in names}
    if per_latency:
        alone = value([candidate([n])[1] for n in names])
        key = {n: importance[n] / s if s > 0 else np.inf for n, s in zip(names, value([arch])[0] - alone, strict=True)}
    order = sorted(names, key=key.__getitem__)  # stable: ties keep the network's order
    for k in range(len(order) + 1):
        candidates[k] = candidate(order[:k])
    # knob = units kept (larger = bigger network), as the targeting loop wants
    knobs = np.arange(len(order) + 1, dtype=float)
    estimate = value([candidates[len(order) - int(x)][1] for x in knobs])
    history: list[dict[str, Any]] = [{"removed": len(order) - int(x), "estimate": float(v)}
                                     for x, v in zip(knobs, estimate, strict=True)]
    finite = np.isfinite(estimate)
    if not finite.any():
        raise PruningError(f"the profile's predictor answers none of {arch.name}'s depth-pruned candidates")
    floor = float(estimate[0]) if finite[0] else float(estimate[finite].min())  # all removed may be degenerate
    measuring = problem.metric == "latency" and oracle.mode != "predict"
    if target < floor * (1 - tolerance) and measuring:
        d, a = candidates[len(order)]
        floor = oracle.measure(problem.build(d), a).ratio
    if target < floor * (1 - tolerance):
        raise PruningError(f"{problem.metric} target {target:g} is below the depth-pruning floor {floor:.3f} of "
                           f"{arch.name} (all {len(order)} removable {kind} removed)")
    first = largest_meeting(estimate, target)
    first = int(np.argmin(estimate)) if first is None else first
    if not measuring:
        k = len(order) - int(knobs[first])
        return Search(float(knobs[first]), *candidates[k], [*history, {"chosen_removed": k}])

    def measure_at(x: float) -> tuple[float, dict[str, Any], str]:
        d, a = candidates[len(order) - int(x)]
        m = oracle.measure(problem.build(d), a).ratio
        return m, {"removed": len(order) - int(x), "estimate": float(estimate[int(x)]), "measured": m}, a.signature()

    reached = measure_toward(target, knobs, estimate, float(knobs[first]), measure_at,
                             lambda x: float(estimate[int(x)]), fallback=lambda corrected: int(np.argmin(corrected)),
                             tolerance=tolerance, max_measurements=max_measurements)
    k = len(order) - int(reached.knob)
    history += reached.history
    history.append({"chosen_removed": k, "order": order, "importance": {n: importance[n] for n in order}})
    return Search(reached.knob, *candidates[k], history)


@dataclass(frozen=True)
class Options:
    criterion: str = option("l1", "per-filter criterion: l1, l2, bn_scale, taylor, fpgm")
    aggregate: str = option("mean", "a block's importance from its layers': mean, max or min")
    per_latency: bool = option(False, "remove by importance per predicted latency saved (FLOPs saved, for a FLOPs "
                                      "target), not importance alone")


def search(problem: Problem, options: Options) -> Search:
    return layerprune(problem, options.criterion, options.aggregate, options.per_latency)


METHOD = Method("layerprune", "LayerPrune: remove the least important blocks (or single-path layers) to the target",
                Options, search)
