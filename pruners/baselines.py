"""FLOPs-era baselines every latency-aware method is compared against, at equal measured latency.

- ``uniform``: the same keep ratio in every prunable group, filters chosen by L1 norm (or another
  criterion of the core, so that a comparison uses the same criterion as the method it is set against).
- ``global``: Torch-Pruning's global magnitude pruning (group L1 importance, normalised per
  group, ranked across the whole network) at one pruning ratio.

Each has one knob. :func:`search_knob` sets it for a target: a FLOPs ratio (exact, from the ``Arch``)
or a latency ratio, where the knob is scanned on a grid of the oracle's *predictions* (latency is not
monotone in width) and the choice corrected by *measurements*: after measuring candidate ``x``, the
remaining bias ``measured / predicted`` is assumed to hold nearby, the predictions are rescaled by it and
the grid is scanned again, until the
measured ratio is within ``tolerance / 2`` of the target (at most ``max_measurements``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from latbench.arch import Arch
from pruners.errors import PruningError
from pruners.groups import ChannelGroup
from pruners.importance import keep_top, score
from pruners.method import Method, NoOptions, Problem, Search, option
from pruners.oracle import LatencyOracle
from pruners.surgery import Decision
from pruners.targeting import largest_meeting, measure_toward


def largest_remainder(exact: dict[int, float], total: int, low: dict[int, int], high: dict[int, int]) -> dict[int, int]:
    """Whole units near ``exact`` summing to about ``total``: each key gets ``floor(exact)`` (within ``low`` and
    ``high``), and the units left of ``total`` go one each to the keys with the largest fractional parts that
    are under ``high`` (ties: the earlier key)."""
    units = {k: max(low[k], min(high[k], math.floor(x))) for k, x in exact.items()}
    left = total - sum(units.values())
    for k in sorted(exact, key=lambda k: -(exact[k] - math.floor(exact[k]))):
        if left <= 0:
            break
        if units[k] < high[k]:
            units[k] += 1
            left -= 1
    return units


def uniform_widths(groups: list[ChannelGroup], keep_ratio: float) -> dict[int, int]:
    """The same keep ratio in every group, rounded by largest remainder: ``floor(r * C)`` channels each
    (at least one), and the channels left of ``round(r * sum C)`` go to the groups with the largest
    fractional parts (ties: earlier group). Rounding each group alone would move every group of one
    width across a channel count at once (e.g. all 64-channel groups from 32 to 33), a latency
    step too coarse for a target."""
    return largest_remainder({g.id: keep_ratio * g.channels for g in groups},
                             round(keep_ratio * sum(g.channels for g in groups)),
                             {g.id: 1 for g in groups}, {g.id: g.channels for g in groups})


def uniform_decision(groups: list[ChannelGroup], scores: dict[int, torch.Tensor], keep_ratio: float) -> Decision:
    """Keep the same share of every group (:func:`uniform_widths`), the highest-scoring channels."""
    widths = uniform_widths(groups, keep_ratio)
    return Decision({g.id: tuple(keep_top(scores[g.id], widths[g.id])) for g in groups})


def global_decision(model: nn.Module, groups: list[ChannelGroup], example: torch.Tensor, pruning_ratio: float,
                    max_pruning_ratio: float = 0.95) -> Decision:
    """Torch-Pruning's global magnitude pruning at ``pruning_ratio``, read back as a decision (the
    module is not changed: the pruner's groups are recorded, not pruned)."""
    if pruning_ratio <= 0:
        return Decision()
    work = copy.deepcopy(model).eval()
    modules = dict(work.named_modules())
    prunable = {id(modules[n]) for g in groups for n in g.writers}
    ignored = [m for m in work.modules() if isinstance(m, (nn.Conv2d, nn.Linear)) and id(m) not in prunable]
    pruner = tp.pruner.MagnitudePruner(work, example, importance=tp.importance.MagnitudeImportance(p=1),
                                       global_pruning=True, pruning_ratio=pruning_ratio,
                                       max_pruning_ratio=max_pruning_ratio, ignored_layers=ignored)
    names = {id(m): n for n, m in modules.items()}
    keep: dict[int, tuple[int, ...]] = {}
    for dep_group in pruner.step(interactive=True):
        dropped = set()
        group = None
        for dep, idxs in dep_group:
            name = names.get(id(dep.target.module))
            for g in groups:
                if name in g.writers and dep.handler.__name__ == "prune_out_channels":
                    group, dropped = g, set(map(int, idxs))
                    break
            if group is not None:
                break
        if group is None:
            root = names.get(id(dep_group[0].dep.target.module))
            raise PruningError(f"Torch-Pruning proposed a group rooted at {root} that the trace does not know")
        keep[group.id] = tuple(i for i in range(group.channels) if i not in dropped)
    return Decision(keep)


def search_knob(make: Callable[[float], Decision], arch: Arch, oracle: LatencyOracle | None, target: float,
                metric: str = "latency", build: Callable[[Decision], nn.Module] | None = None,
                knob_range: tuple[float, float] = (0.02, 1.0), grid: int = 121, tolerance: float = 0.05,
                max_measurements: int = 6) -> Search:
    """The largest knob (larger = bigger network) whose candidate's ``metric`` ratio meets ``target``.

    Latency is not monotone in a width knob (a channel count just past a vector width can be slower
    than a wider one), so the knob is scanned on a ``grid`` rather than bisected. ``metric`` is
    ``"flops"`` or ``"latency"``; for latency with ``build`` and an oracle that may measure, the
    scan's predictions are corrected by measurements: the log error ``measured / predicted`` found at
    measured knobs is interpolated between them, the largest knob whose corrected prediction meets
    the target is measured next, until one lands within ``tolerance / 2`` of the target (at most
    ``max_measurements``). The candidate measured closest to the target is returned.
    """
    if metric not in ("flops", "latency"):
        raise PruningError(f"unknown target metric {metric!r}; use 'flops' or 'latency'")
    if metric == "latency" and oracle is None:
        raise PruningError("a latency target needs a latency oracle (a device profile)")
    base_flops = arch.flops()
    knobs = np.linspace(knob_range[0], knob_range[1], grid)
    points: list[tuple[float, Decision, Arch, float]] = []
    history: list[dict[str, Any]] = []
    seen: set[str] = set()
    for x in knobs:
        d = make(float(x))
        cand = d.arch(arch)
        v = cand.flops() / base_flops if metric == "flops" else oracle.predict(cand).ratio
        points.append((float(x), d, cand, v))
        if cand.signature() not in seen:
            seen.add(cand.signature())
            history.append({"knob": float(x), metric if metric == "flops" else "predicted": v, "flops": cand.flops()})

    values = np.array([p[3] for p in points])
    ok = largest_meeting(values, target)
    i = ok if ok is not None else int(np.argmin(values))
    if metric == "flops" or build is None or oracle.mode == "predict":
        x, d, cand, v = points[i]
        if v > target * (1 + tolerance):
            _out_of_reach(target, metric, "predicted" if metric == "latency" else "counted", x, v)
        return Search(x, d, cand, history)
    index = {p[0]: j for j, p in enumerate(points)}

    def measure_at(x: float) -> tuple[float, dict[str, Any], str]:
        _, d, cand, v = points[index[x]]
        m = oracle.measure(build(d), cand).ratio
        return m, {"knob": x, "predicted": v, "measured": m, "flops": cand.flops()}, cand.signature()

    reached = measure_toward(target, knobs, values, points[i][0], measure_at, lambda x: points[index[x]][3],
                             fallback=lambda corrected: int(np.argmin(corrected)), tolerance=tolerance,
                             max_measurements=max_measurements)
    history.extend(reached.history)
    i = index[reached.knob]
    x, d, cand, _ = points[i]
    if reached.measured > target * (1 + tolerance) and i == int(np.argmin(values)):
        _out_of_reach(target, metric, "measured", x, reached.measured)
    return Search(x, d, cand, history)


def _out_of_reach(target: float, metric: str, how: str, knob: float, value: float) -> None:
    raise PruningError(f"{metric} target {target:g} is out of this method's reach: its fastest candidate "
                       f"(knob {knob:.3g}) is {how} at {value:.3f} of the original")


def uniform(model: nn.Module, arch: Arch, groups: list[ChannelGroup], example: torch.Tensor,
            oracle: LatencyOracle | None, target: float, metric: str = "latency",
            build: Callable[[Decision], nn.Module] | None = None, criterion: str = "l1", batches: Any = None,
            **kw: Any) -> Search:
    """The uniform baseline at a latency or FLOPs ratio, filters by ``criterion`` (L1 by default; ``batches``
    feed a data-driven one such as taylor)."""
    scores = score(model, groups, criterion, batches)
    return search_knob(lambda r: uniform_decision(groups, scores, r), arch, oracle, target, metric, build, **kw)


def global_magnitude(model: nn.Module, arch: Arch, groups: list[ChannelGroup], example: torch.Tensor,
                     oracle: LatencyOracle | None, target: float, metric: str = "latency",
                     build: Callable[[Decision], nn.Module] | None = None, **kw: Any) -> Search:
    """Torch-Pruning's global magnitude baseline at a latency or FLOPs ratio (knob: 1 - pruning ratio)."""
    cache: dict[float, Decision] = {}

    def make(keep: float) -> Decision:
        key = round(keep, 6)
        if key not in cache:
            cache[key] = global_decision(model, groups, example, 1.0 - keep)
        return cache[key]

    kw.setdefault("knob_range", (0.05, 1.0))
    kw.setdefault("grid", 96)
    return search_knob(make, arch, oracle, target, metric, build, **kw)


@dataclass(frozen=True)
class UniformOptions:
    criterion: str = option("l1", "per-filter criterion: l1, l2, bn_scale, taylor, fpgm")


def _search_uniform(problem: Problem, options: UniformOptions) -> Search:
    return uniform(problem.model, problem.arch, problem.groups, problem.example, problem.oracle, problem.target,
                   problem.metric, problem.build, criterion=options.criterion, batches=problem.train_loader)


def _search_global(problem: Problem, options: NoOptions) -> Search:
    return global_magnitude(problem.model, problem.arch, problem.groups, problem.example, problem.oracle,
                            problem.target, problem.metric, problem.build)


UNIFORM = Method("uniform", "the same keep ratio in every group, filters by L1 norm (FLOPs-era baseline)",
                 UniformOptions, _search_uniform)
GLOBAL = Method("global", "Torch-Pruning's global magnitude pruning at one ratio (FLOPs-era baseline)",
                NoOptions, _search_global)
