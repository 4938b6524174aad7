"""SP-LAMP: layer-adaptive structured pruning under a latency budget (arXiv 2305.14403).

1. **Scores.** Every channel of a prunable group gets its SP-LAMP score (``importance.score(..., "lamp")``):
   the squared norms of its filters summed over all the group's writers (every conv that writes a residual
   stage, or the one conv of a plain layer), then the LAMP transform within the group, so the top channel of
   every group scores exactly 1.
2. **Menus.** A group's channels are ranked by score and cut into chunks of ``g`` (the last may be smaller).
   Choice ``j`` keeps the first ``j + 1`` chunks, most important first; its value is the summed score of the
   channels it keeps, times the number of the group's writers: LAMP scores the filters of one layer, and a
   channel of a coupled group (a residual stage) is a filter of every conv that writes it, so its worth is
   counted once per layer, as LAMP on those layers would (on ResNet-20 with digits at a predicted 0.5, this
   kept 96.1% accuracy after 5 fine-tuning epochs, 92.2% without it, which shrank stage 1's residual stream to
   4 channels). ``g`` defaults to the profile's latency step (the staircase the profiler found), else
   8; a group narrower than ``min_choices * g`` is cut into ``min_choices`` chunks instead
   (``g_l = max(1, C // min_choices)``), so narrow layers still have a choice.
3. **Costs and the in/out coupling.** A conv's latency depends on its input and its output width, i.e. on two
   groups, while a knapsack prices each group alone. The coupling is resolved by *iterated linearisation,
   neighbours fixed*: at the current widths ``W`` (the full network first), choice ``j`` of group ``g`` costs
   ``predicted(W with g at w_j) - predicted(W)``, every other group held at ``W`` (one batched prediction of
   all neighbours); the group knapsack (:mod:`pruners.knapsack`) maximises the summed value subject to the
   summed cost ``<= budget - predicted(W)``; its widths become ``W`` and the round repeats until the selection
   stops changing. A stable selection is feasible (its own costs are 0, so ``predicted(W) <= budget``). The
   best selection whose *whole-network* prediction meets the budget is returned; when rounds cycle without
   one, or ``max_rounds`` pass without one, the budget handed to the knapsack is lowered by the overshoot of
   the last selection, round by round (at most ``max_rounds`` more), before the smallest selection is the
   answer (on MobileNet-V2 the linearisation can oscillate above the budget without repeating itself).
4. **Measured target.** Budgets are predictions; a target is a *measured* ratio. With an oracle that may
   measure, the selection at predicted budget ``b`` is measured (interleaved with the original) and the error
   ``log(measured / b)``, interpolated between measured budgets, corrects the next budget: the largest ``b``
   whose corrected value meets the target is selected and measured next, until one lands within
   ``tolerance / 2`` (at most ``max_measurements``; the one closest to the target is kept).
5. **Schedule.** One-shot (``steps=1``), or iterative as in NVIDIA's HALP: the predicted budget decays
   linearly from 1 to the final one over ``steps`` steps; after each step but the last the pruned network is
   fine-tuned for ``step_epochs`` epochs and re-scored, and the next step prunes it further (kept indices are
   composed back onto the original network's channels, so the decision names the original's channels).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from latbench.arch import Arch
from pruners import knapsack
from pruners.errors import PruningError
from pruners.groups import ChannelGroup, channel_groups
from pruners.importance import score
from pruners.method import Method, Problem, Search, option
from pruners.oracle import LatencyOracle
from pruners.surgery import Decision, apply
from pruners.targeting import measure_toward

DEFAULT_GROUP_SIZE = 8


@dataclass(frozen=True)
class Menu:
    """A group's choices: ``order`` ranks its channels (most important first); choice ``j`` keeps
    ``order[:widths[j]]`` and is worth ``values[j]``."""

    group: ChannelGroup
    order: tuple[int, ...]
    widths: tuple[int, ...]
    values: tuple[float, ...]

    def keep(self, width: int) -> tuple[int, ...]:
        return tuple(sorted(self.order[:width]))


@dataclass
class Selection:
    """Widths per group id, their summed value and whole-network predicted ratio, and each round's record."""

    widths: dict[int, int]
    value: float
    predicted: float
    rounds: list[dict[str, Any]]


def profile_group_size(profile: Any, default: int = DEFAULT_GROUP_SIZE) -> int:
    """The profile's latency step (channels between staircase steps), or ``default`` if it has none."""
    step = (getattr(profile, "meta", None) or {}).get("plan", {}).get("step")
    return int(step) if step else default


def chunk_widths(channels: int, size: int, min_choices: int = 4) -> tuple[int, ...]:
    """Kept widths a group of ``channels`` may take: multiples of its chunk size, then the full width."""
    if size < 1 or min_choices < 1:
        raise PruningError(f"group size and min_choices must be at least 1, got {size} and {min_choices}")
    size = min(size, max(1, channels // min_choices))
    return (*range(size, channels, size), channels)


def menus(groups: Sequence[ChannelGroup], scores: Mapping[int, torch.Tensor], size: int,
          min_choices: int = 4, per_writer: bool = True) -> list[Menu]:
    """One menu per group: channels ranked by score (ties: lower index first), cut into chunks; a choice is
    worth the summed score of its channels, times the group's number of writers when ``per_writer``."""
    out = []
    for g in groups:
        s = scores[g.id].to(torch.float64)
        order = sorted(range(len(s)), key=lambda c: (-float(s[c]), c))
        widths = chunk_widths(len(s), size, min_choices)
        ranked = np.cumsum([float(s[c]) for c in order]) * (len(g.writers) if per_writer else 1)
        out.append(Menu(g, tuple(order), widths, tuple(float(ranked[w - 1]) for w in widths)))
    return out


def select(menu: Sequence[Menu], arch: Arch, oracle: LatencyOracle, budget: float, bins: int = 2000,
           max_rounds: int = 12) -> Selection:
    """The most valuable widths whose predicted latency ratio is ``<= budget`` (module docstring, step 3)."""
    widths = {m.group.id: m.widths[-1] for m in menu}
    values = [list(m.values) for m in menu]
    target = budget
    rounds: list[dict[str, Any]] = []
    best: Selection | None = None
    seen: set[tuple[int, ...]] = set()
    for r in range(2 * max_rounds):
        if r >= max_rounds and best is not None:
            break
        base = float(oracle.predict_ratios([arch.with_widths(widths)])[0])
        neighbours = [arch.with_widths({**widths, m.group.id: w}) for m in menu for w in m.widths]
        flat = oracle.predict_ratios(neighbours) - base
        costs, pos = [], 0
        for m in menu:
            costs.append(flat[pos:pos + len(m.widths)].tolist())
            pos += len(m.widths)
        sol = knapsack.solve(values, costs, target - base, bins=bins)
        picked = {m.group.id: m.widths[j] for m, j in zip(menu, sol.choice, strict=True)}
        predicted = float(oracle.predict_ratios([arch.with_widths(picked)])[0])
        rounds.append({"round": r, "knapsack_budget": target, "linearised_at": base, "value": sol.value,
                       "linear_estimate": base + sol.cost, "predicted": predicted, "gap": sol.gap,
                       "changed": sum(picked[g] != widths[g] for g in widths)})
        if predicted <= budget and (best is None or sol.value > best.value):
            best = Selection(picked, sol.value, predicted, rounds)
        key = tuple(picked[g] for g in sorted(picked))
        if picked == widths:
            break
        if best is None and (key in seen or r >= max_rounds - 1):
            target -= predicted - budget  # cycling, or out of rounds, above the budget: ask the knapsack for less
            seen.clear()
        elif key in seen:
            break
        seen.add(key)
        widths = picked
    if best is None:
        smallest = {m.group.id: m.widths[0] for m in menu}
        floor = float(oracle.predict_ratios([arch.with_widths(smallest)])[0])
        if floor <= budget:  # only the smallest selection fits and the rounds never reached it
            value = sum(m.values[0] for m in menu)
            return Selection(smallest, value, floor, rounds)
        raise PruningError(f"predicted latency budget {budget:.3f} is below what SP-LAMP reaches here: keeping "
                           f"one chunk per group is predicted at {floor:.3f} of the original")
    best.rounds = rounds
    return best


def decision_of(menu: Sequence[Menu], widths: Mapping[int, int]) -> Decision:
    """Keep the ``widths[g]`` best channels of every group that is cut."""
    return Decision({m.group.id: m.keep(widths[m.group.id]) for m in menu if widths[m.group.id] < m.widths[-1]})


def search_budget(choose: Callable[[float], tuple[Decision, Arch, float]], oracle: LatencyOracle, target: float,
                  build: Callable[[Decision], nn.Module] | None, floor: float, tolerance: float = 0.05,
                  max_measurements: int = 6, grid: int = 401) -> tuple[float, Decision, Arch, list[dict[str, Any]]]:
    """The predicted budget whose selection *measures* closest to ``target`` (module docstring, step 4).

    ``choose(b)`` returns the decision at predicted budget ``b``, its candidate and its predicted ratio;
    ``floor`` is the smallest budget it accepts (the first budget is ``max(target, floor)``: a target under
    the predicted floor may still be met, as predictions can be pessimistic).
    """
    budgets = np.linspace(floor, 1.0, grid)
    b = max(target, floor)
    if build is None or oracle.mode == "predict":
        d, cand, p = choose(b)
        if p > target * (1 + tolerance):
            raise PruningError(f"latency target {target:g} is out of SP-LAMP's reach here: its smallest selection "
                               f"is predicted at {p:.3f} of the original")
        return b, d, cand, [{"budget": b, "predicted": p, "flops": cand.flops()}]

    def measure_at(budget: float) -> tuple[float, dict[str, Any], str]:
        d, cand, p = choose(budget)
        m = oracle.measure(build(d), cand).ratio
        return m, {"budget": budget, "predicted": p, "measured": m, "flops": cand.flops()}, cand.signature()

    reached = measure_toward(target, budgets, budgets, b, measure_at, lambda budget: budget,
                             fallback=lambda corrected: 0, tolerance=tolerance, max_measurements=max_measurements,
                             stop_on_repeat=True)
    b = reached.knob
    d, cand, _ = choose(b)
    if reached.measured > target * (1 + tolerance) and b <= floor + 1e-9:
        raise PruningError(f"latency target {target:g} is out of SP-LAMP's reach here: its smallest selection "
                           f"measures {reached.measured:.3f} of the original")
    return b, d, cand, reached.history


def lamp_menus(model: nn.Module, groups: Sequence[ChannelGroup], size: int, min_choices: int = 4,
               per_writer: bool = True) -> list[Menu]:
    """The menus of ``model``'s groups by their SP-LAMP scores (scored once, reused for every budget)."""
    return menus(groups, score(model, groups, "lamp"), size, min_choices, per_writer)


def pick(menu: Sequence[Menu], arch: Arch, oracle: LatencyOracle, budget: float,
         bins: int = 2000) -> tuple[Decision, Arch, Selection]:
    """Select at predicted ``budget``: the decision, its candidate and the selection."""
    sel = select(menu, arch, oracle, budget, bins)
    d = decision_of(menu, sel.widths)
    return d, d.arch(arch), sel


def splamp(model: nn.Module, arch: Arch, groups: Sequence[ChannelGroup], example: torch.Tensor,
           oracle: LatencyOracle | None, target: float, metric: str = "latency",
           build: Callable[[Decision], nn.Module] | None = None, group_size: int | None = None,
           min_choices: int = 4, steps: int = 1, step_epochs: int = 1,
           fine_tune: Callable[[nn.Module, int], None] | None = None, tolerance: float = 0.05,
           max_measurements: int = 6, bins: int = 2000, per_writer: bool = True) -> Search:
    """SP-LAMP at a latency ``target`` (a measured ratio of the original), one-shot or over ``steps`` steps.

    ``fine_tune(module, step)`` trains a pruned module in place between steps (required when ``steps > 1``).
    The returned :class:`Search` has ``knob`` = the final predicted budget; with ``steps > 1`` it carries the
    pruned, fine-tuned ``model``.
    """
    if metric != "latency":
        raise PruningError("splamp prunes to a latency target; use uniform or global for a FLOPs target")
    if oracle is None:
        raise PruningError("splamp needs a latency oracle (a device profile)")
    if steps < 1:
        raise PruningError(f"steps must be at least 1, got {steps}")
    if steps > 1 and fine_tune is None:
        raise PruningError("an iterative schedule (steps > 1) needs a fine-tuning function between steps")
    size = group_size or profile_group_size(oracle.profile)
    history: list[dict[str, Any]] = []
    current, current_arch, current_groups = model, arch, list(groups)
    kept: dict[str, tuple[int, ...]] = {g.name: tuple(range(g.channels)) for g in groups}
    first = float(oracle.predict_ratios([arch])[0])
    for step in range(1, steps):
        floor = float(oracle.predict_ratios([_smallest(current_arch, current_groups, size, min_choices)])[0])
        budget = max(first - (first - target) * step / steps, floor)
        menu = lamp_menus(current, current_groups, size, min_choices, per_writer)
        d, _, sel = pick(menu, current_arch, oracle, budget, bins)
        history.append({"step": step, "budget": budget, "predicted": sel.predicted, "rounds": sel.rounds})
        kept = _compose(kept, d, current_arch)
        current, current_arch = apply(current, current_arch, d, example)
        fine_tune(current, step)
        current_groups = channel_groups(current, current_arch, example)
    menu = lamp_menus(current, current_groups, size, min_choices, per_writer)
    picked: dict[float, tuple[Decision, Arch, Selection]] = {}

    def choose(b: float) -> tuple[Decision, Arch, float]:
        key = round(b, 9)
        if key not in picked:
            picked[key] = pick(menu, current_arch, oracle, b, bins)
        d, cand, sel = picked[key]
        return d, cand, sel.predicted

    smallest = float(oracle.predict_ratios([_smallest(current_arch, current_groups, size, min_choices)])[0])
    build_current = None
    if build is not None:
        build_current = build if steps == 1 else (lambda d: apply(current, current_arch, d, example,
                                                                  check_arch=False)[0])
    b, d, cand, fits = search_budget(choose, oracle, target, build_current, smallest, tolerance, max_measurements)
    history.extend({"step": steps, **f, "rounds": picked[round(f["budget"], 9)][2].rounds} for f in fits)
    if steps == 1:
        return Search(b, d, cand, history)
    kept = _compose(kept, d, current_arch)
    final = Decision(dict(kept))
    pruned = apply(current, current_arch, d, example)[0]
    return Search(b, final, final.arch(arch), history, model=pruned)


def _smallest(arch: Arch, groups: Sequence[ChannelGroup], size: int, min_choices: int) -> Arch:
    return arch.with_widths({g.id: chunk_widths(g.channels, size, min_choices)[0] for g in groups})


def _compose(kept: dict[str, tuple[int, ...]], d: Decision, arch: Arch) -> dict[str, tuple[int, ...]]:
    """Kept original indices per group name after also applying ``d`` (indices of ``arch``'s channels)."""
    out = dict(kept)
    for gid, idx in d.resolved(arch).items():
        name = arch.groups[gid].name
        out[name] = tuple(kept[name][i] for i in idx)
    return out


@dataclass(frozen=True)
class Options:
    group_size: int | None = option(None, "channels per group (default: the profile's latency step, else 8)", low=1)
    min_choices: int = option(4, "cut narrower layers into this many groups", low=1)
    steps: int = option(1, "pruning steps, fine-tuning between them; 1 is one-shot", low=1)
    step_epochs: int = option(1, "fine-tuning epochs between steps", low=0)
    per_writer: bool = option(True, "weigh a coupled group's kept score by its number of writers")


def search(problem: Problem, options: Options) -> Search:
    return splamp(problem.model, problem.arch, problem.groups, problem.example, problem.oracle, problem.target,
                  problem.metric, problem.build, group_size=options.group_size, min_choices=options.min_choices,
                  steps=options.steps, step_epochs=options.step_epochs, per_writer=options.per_writer,
                  fine_tune=lambda module, step: problem.step_fine_tune(module, step, options.step_epochs))


METHOD = Method("splamp", "SP-LAMP: LAMP scores, group knapsack over predicted latency, measured budget",
                Options, search)
