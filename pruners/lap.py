"""LAP: latency-aware automated pruning, a DDPG agent choosing each group's keep ratio (``../shared/METHODS.md``).

AMC's resource-constrained search with latency in place of FLOPs and the latency-sensitivity analysis
(``latbench.sensitivity``) as the agent's prior. Searched against the profile's predictor (fast); only
the chosen network is measured.

- **Episode.** The prunable channel groups are visited in network order; for each the agent
  (``pruners.ddpg``) picks an action in [0, 1], mapped to a keep ratio in [``low``, ``high``].
- **State** of group ``t`` (AMC's, latency for FLOPs): its index, channels, layers, writers, largest
  kernel and stride, whether a writer is depthwise, writer weights (log), its predicted latency
  sensitivity at keep ratios 0.75, 0.5 and 0.25 (share of the network's latency saved per share of
  the group removed, the group pruned alone), the latency already removed (``1 - L(a_<t, full_>=t)``),
  the latency the remaining groups can still remove (``L(a_<t, full_>=t) - L(a_<t, low_>=t)``), both
  shares of the original's predicted latency, and the previous action. Static features are min-max
  normalised over the groups.
- **Widths.** A group of ``C`` channels keeps one of SP-LAMP's chunk widths
  (``pruners.splamp.chunk_widths``: multiples of the profile's channel step, or of ``C // 4`` for
  narrow groups, then ``C``) from ``ceil(low * C)`` up: a width between two steps costs the next
  step's latency on a blocked engine, so the search never pays for channels it cannot use, and the
  knob that fits the target later keeps every group on its menu.
- **Wall.** The keep width is the widest menu width at most the one nearest ``keep * C`` (``keep``
  the action's keep ratio) for which the network with every later group at its smallest width is
  predicted within the target: every episode ends within the budget. A target that even all groups
  at their smallest miss (after the aim below) is refused with that floor.
- **Aim.** Before the search, ``aim_networks`` networks predicted near the target (a uniform one on the
  menus and random episodes through the wall) are measured in one interleaved run; the median of their
  predicted / measured ratios (bounded to [1/2, 2]) is the correction at their median prediction
  (rounds whose medians lie within 10% pool their networks). The profile's error changes with the
  networks' size, so rounds go on at the predicted ratio whose corrected prediction meets the target
  (corrections interpolated between the points) until it lies within 10% of an aim already measured,
  at most three rounds; the wall's target is that ratio.
- **Reward** ``R = -E + latency_weight * S`` with ``E = 1 - accuracy`` on the quick check (batch norms
  recalibrated on ``check_images`` training images, then ``reward_steps`` SGD steps at the fine-tuning
  learning rate, 0 by default (AMC: no fine-tuning), then two validation batches) and
  ``S = sum_g s_g(r_g) * (1 - r_g)``, the share of latency the sensitivity analysis credits to the
  episode's cuts (``r_g`` the group's keep ratio, ``s_g`` its sensitivity at that ratio,
  interpolated): a cut where latency is insensitive earns nothing. ``latency_weight`` 0 is AMC's
  accuracy-only reward under the wall. Every transition of an episode carries its reward minus a
  moving-average baseline (AMC).
- **Filters**: kept by dynamic scores (``pruners.dynamic_selection``; ``selection="dynamic"``) or by a
  static criterion (``l1``, ...); after the search the chosen widths' selection is refined by
  regrowth. The report compares the quick-check accuracy of L1, dynamic and dynamic+regrowth
  selection at the final widths.
- **Targeting**: the best episode's keep ratios are scaled together (group ``g`` wants
  ``min(1, r_g * k) * C_g`` channels; the groups' menu positions are rounded by largest remainder, so
  a small step of ``k`` moves one group by one menu width) and the knob ``k`` is fitted to the
  measured target by the shared measure-and-correct loop.
- **Resumable**: agent, buffer, baseline and best policy go to ``lap.pt`` after every episode (loaded
  weights-only), the episode log to ``lap.json``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from latbench.arch import Arch
from latbench.jsonio import dump_json
from latbench.sensitivity import sensitivity
from pruners.baselines import largest_remainder, search_knob
from pruners.ddpg import DDPG, DDPGSettings
from pruners.dynamic_selection import dynamic_scores, gate_gradients, regrow
from pruners.errors import PruningError
from pruners.importance import keep_top, score
from pruners.method import Method, Problem, Search, option
from pruners.splamp import chunk_widths, profile_group_size
from pruners.surgery import Decision, keep_first
from pruners.train import progress_bar, save_atomic

CHECKPOINT = "lap.pt"
LOG = "lap.json"
STATE_RATIOS = (0.75, 0.5, 0.25)


class _RatioPredictor:
    """The oracle's batched predicted ratios in the shape ``latbench.sensitivity`` asks of a predictor."""

    def __init__(self, oracle) -> None:
        self.oracle = oracle

    def predict_many(self, archs: list[Arch]) -> tuple[np.ndarray, None]:
        return self.oracle.predict_ratios(archs), None


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(0), x.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.where(hi > lo, (x - lo) / span, 0.0)


@dataclass
class Environment:
    """The groups, their static state, the wall and the reward's latency term for one network and target."""

    arch: Arch
    group_ids: list[int]
    oracle: Any
    target: float
    low: float = 0.2
    high: float = 1.0
    step: int = 8
    static: np.ndarray = field(init=False)
    sens: dict[int, tuple[np.ndarray, np.ndarray]] = field(init=False)  # gid -> (ratios ascending, sensitivity)
    menus: dict[int, tuple[int, ...]] = field(init=False)  # gid -> the widths it may keep, ascending

    def __post_init__(self) -> None:
        self.menus = {}
        for gid in self.group_ids:
            channels = self.arch.width_tuple[gid]
            least = math.ceil(self.low * channels)
            self.menus[gid] = tuple(w for w in chunk_widths(channels, self.step) if w >= least)
        table = sensitivity(self.arch, _RatioPredictor(self.oracle), groups=self.group_ids)
        self.sens = {}
        for gid, rows in table.groupby("group"):
            rows = rows.sort_values("ratio")
            self.sens[int(gid)] = (rows["ratio"].to_numpy(float), rows["sensitivity"].to_numpy(float))
        layers = {layer.name: layer for layer in self.arch.base.layers}
        feats = []
        for t, gid in enumerate(self.group_ids):
            g = self.arch.groups[gid]
            writers = [layers[n] for n in g.layers if gid in layers[n].out_groups]
            specs = [w.spec for w in writers] or [layers[n].spec for n in g.layers]
            weights = sum(s.in_channels // max(s.groups, 1) * s.out_channels * s.kernel[0] * s.kernel[1]
                          for s in specs)
            feats.append([t, math.log(g.channels), len(g.layers), len(writers),
                          max(s.kernel[0] * s.kernel[1] for s in specs), max(s.stride[0] for s in specs),
                          float(any(s.groups > 1 for s in specs)), math.log(max(weights, 1)),
                          *[self.sensitivity(gid, r) for r in STATE_RATIOS]])
        self.static = _minmax(np.array(feats, dtype=float))

    @property
    def states(self) -> int:
        return self.static.shape[1] + 3

    def sensitivity(self, gid: int, ratio: float) -> float:
        if gid not in self.sens:  # a group too narrow to have a table row
            return 0.0
        r, s = self.sens[gid]
        return float(np.interp(ratio, r, s))

    def min_width(self, gid: int) -> int:
        return self.menus[gid][0]

    def snap(self, gid: int, width: float) -> int:
        """The menu width nearest ``width`` (the wider of two as near)."""
        return min(self.menus[gid], key=lambda w: (abs(w - width), -w))

    def floor(self) -> float:
        """The predicted ratio with every group at its smallest width: the least this search can reach."""
        return float(self.oracle.predict_ratios([self.arch.with_widths({g: self.min_width(g)
                                                                         for g in self.group_ids})])[0])

    def state(self, t: int, widths: dict[int, int], prev: float) -> tuple[np.ndarray, float]:
        rest = self.group_ids[t:]
        full = self.arch.with_widths(widths)
        lowest = self.arch.with_widths({**widths, **{g: self.min_width(g) for g in rest}})
        now, least = self.oracle.predict_ratios([full, lowest])
        return np.concatenate([self.static[t], [1.0 - now, max(now - least, 0.0), prev]]).astype(np.float32), now

    def wall(self, t: int, widths: dict[int, int], keep: float) -> int:
        """The widest menu width at most the one nearest ``keep * C`` whose network, later groups at their
        smallest, meets the target."""
        gid = self.group_ids[t]
        wanted = self.snap(gid, keep * self.arch.width_tuple[gid])
        options = [w for w in reversed(self.menus[gid]) if w <= wanted]
        later = {g: self.min_width(g) for g in self.group_ids[t + 1:]}
        ratios = self.oracle.predict_ratios([self.arch.with_widths({**widths, gid: w, **later}) for w in options])
        for w, r in zip(options, ratios, strict=True):
            if r <= self.target:
                return w
        return options[-1]

    def latency_credit(self, widths: dict[int, int]) -> float:
        """``S`` of the reward: the sensitivity-weighted share of latency the cuts remove (module doc)."""
        total = 0.0
        for gid in self.group_ids:
            r = widths[gid] / self.arch.width_tuple[gid]
            total += self.sensitivity(gid, r) * (1.0 - r)
        return total


@dataclass
class Episode:
    widths: dict[int, int]
    actions: list[float]
    states: list[np.ndarray]
    predicted: float


def run_episode(env: Environment, act) -> Episode:
    """One pass over the groups with ``act(state) -> action in [0, 1]``, the wall applied at every group."""
    widths: dict[int, int] = {}
    actions, states = [], []
    prev = 1.0
    for t, gid in enumerate(env.group_ids):
        s, _ = env.state(t, widths, prev)
        a = float(act(s))
        keep = env.low + a * (env.high - env.low)
        widths[gid] = env.wall(t, widths, keep)
        actions.append(a)
        states.append(s)
        prev = a
    predicted = float(env.oracle.predict_ratios([env.arch.with_widths(widths)])[0])
    return Episode(widths, actions, states, predicted)


#: the aim's correction, predicted / measured, is kept within these bounds
AIM_BOUNDS = (0.5, 2.0)


def calibration_widths(env: Environment, aim: float) -> dict[int, int]:
    """The uniform network on the groups' menus (channel-step multiples: every profile samples them, so
    its predictions are trustworthy there, unlike at a few misaligned channels) predicted nearest ``aim``
    from below: each group at the menu width nearest ``r * C``, ``r`` from 0.05 to 1 in steps of 0.05;
    the smallest if none is within ``aim``."""
    def widths(r: float) -> dict[int, int]:
        return {g: env.snap(g, r * env.arch.width_tuple[g]) for g in env.group_ids}

    options = [widths(k / 20) for k in range(1, 21)]
    ratios = env.oracle.predict_ratios([env.arch.with_widths(w) for w in options])
    within = [i for i, r in enumerate(ratios) if r <= aim]
    return options[max(within, key=lambda i: ratios[i]) if within else int(np.argmin(ratios))]


def calibration_networks(env: Environment, aim: float, count: int, seed: int) -> list[dict[int, int]]:
    """The networks the aim is measured on: the uniform one of :func:`calibration_widths` and ``count - 1``
    random episodes through the wall at ``aim`` (the warm-up's kind of network, unevenly cut), so that the
    correction is not one network's."""
    rng = np.random.default_rng(seed)
    kept, env.target = env.target, aim
    try:
        episodes = [run_episode(env, lambda _s: rng.uniform(0.0, 1.0)).widths for _ in range(count - 1)]
    finally:
        env.target = kept
    return [calibration_widths(env, aim), *episodes]


def correction(predicted: list[float], measured: list[float]) -> float:
    """The median of the networks' predicted / measured ratios, within ``AIM_BOUNDS``."""
    ratio = float(np.median([p / m for p, m in zip(predicted, measured, strict=True)]))
    return min(max(ratio, AIM_BOUNDS[0]), AIM_BOUNDS[1])


def _measure_aim(problem: Problem, env: Environment, aim: float, count: int, seed: int) -> dict[str, Any]:
    """One round of the aim: ``count`` networks predicted near ``aim`` (:func:`calibration_networks`) measured
    in one interleaved run, and the median of their predicted / measured ratios (within ``AIM_BOUNDS``)."""
    networks = calibration_networks(env, aim, count, seed)
    archs = [problem.arch.with_widths(w) for w in networks]
    decisions = [Decision(keep_first({g: v for g, v in w.items() if v < problem.arch.width_tuple[g]}))
                 for w in networks]
    predicted = [problem.oracle.predict(a).ratio for a in archs]
    measured = [e.ratio for e in problem.oracle.measure_many([(problem.build(d), a)
                                                               for d, a in zip(decisions, archs, strict=True)])]
    return {"aim": aim, "correction": correction(predicted, measured), "predicted": predicted,
            "measured": measured, "keep": [{str(g): v for g, v in w.items()} for w in networks]}


#: rounds of the aim stop when the next aim is within this factor of one already asked; rounds whose networks'
#: median predictions are within it of each other are one point of the correction
AIM_MOVE = 1.1
#: at most this many rounds of the aim
AIM_ROUNDS = 3


def correction_points(rounds: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """The profile's correction as (predicted ratio, correction) points, ascending: rounds are taken by their
    networks' median prediction, and a run of rounds within ``AIM_MOVE`` of the run's first pools its
    networks, so that two noisy rounds at one size do not make a steep slope; a point is the median
    prediction and the median predicted / measured ratio (within ``AIM_BOUNDS``) of its networks."""
    pools: list[tuple[float, list[dict[str, Any]]]] = []  # (the first round's median, the rounds)
    for median, r in sorted(((float(np.median(r["predicted"])), r) for r in rounds), key=lambda mr: mr[0]):
        if pools and median <= AIM_MOVE * pools[-1][0]:
            pools[-1][1].append(r)
        else:
            pools.append((median, [r]))
    points = []
    for _, pool in pools:
        predicted = [p for r in pool for p in r["predicted"]]
        points.append((float(np.median(predicted)), correction(predicted, [m for r in pool for m in r["measured"]])))
    return points


def aim_for(target: float, rounds: list[dict[str, Any]]) -> float:
    """The largest predicted ratio whose corrected prediction meets ``target``: the correction is interpolated
    linearly in the predicted ratio between :func:`correction_points` (constant beyond them) and
    ``p / correction(p) <= target`` is solved on a grid of 2001 ratios over [0, 1]."""
    points = correction_points(rounds)
    grid = np.linspace(0.0, 1.0, 2001)
    corrected = grid / np.interp(grid, [x for x, _ in points], [c for _, c in points])
    return float(grid[np.flatnonzero(corrected <= target)[-1]])


def _calibrate(problem: Problem, env: Environment, count: int, seed: int) -> dict[str, Any]:
    """Move the wall's target so that the search aims at the *measured* target in predicted terms. A profile
    off for pruned networks would otherwise send every episode to the wrong latency, and how far off it is
    changes with the networks' size. So the aim is measured in rounds (:func:`_measure_aim`): the first near
    the target (or the floor, if that is higher), each next one at :func:`aim_for` of the rounds so far,
    until that lies within ``AIM_MOVE`` of an aim already measured or ``AIM_ROUNDS`` are spent; the wall's
    target is :func:`aim_for` of all rounds."""
    target = problem.target
    if problem.oracle.mode == "predict":
        return {"search_target": target}
    floor = env.floor()
    rounds = [_measure_aim(problem, env, max(target, floor), count, seed)]
    while len(rounds) < AIM_ROUNDS:
        aim = max(floor, aim_for(target, rounds))
        if any(max(aim / r["aim"], r["aim"] / aim) <= AIM_MOVE for r in rounds):
            break
        rounds.append(_measure_aim(problem, env, aim, count, seed + len(rounds)))
    env.target = aim_for(target, rounds)
    return {"search_target": env.target, "calibration_rounds": rounds, "floor": floor}


def _selection_scores(problem: Problem, selection: str, batches: int) -> dict[int, torch.Tensor]:
    if selection == "dynamic":
        return dynamic_scores(problem.model, problem.groups, problem.train_loader, batches, lr=problem.finetune.lr)
    return score(problem.model, problem.groups, selection, problem.train_loader)


def keep_decision(widths: dict[int, int], scores: dict[int, torch.Tensor], arch: Arch) -> Decision:
    """The decision keeping, in every group cut below its width, the ``widths[g]`` best-scored channels."""
    return Decision({gid: tuple(keep_top(scores[gid], w)) for gid, w in widths.items()
                     if w < arch.width_tuple[gid]})


def _save(problem: Problem, payload: dict[str, Any], log: list[dict[str, Any]]) -> None:
    if problem.out is None:
        return
    save_atomic(payload, problem.out / CHECKPOINT)
    dump_json(log, problem.out / LOG, indent=None)


def lap(problem: Problem, episodes: int = 300, warmup: int = 100, low: float = 0.2, high: float = 1.0,
        latency_weight: float = 0.1, selection: str = "dynamic", dynamics_batches: int = 20,
        regrow_fraction: float = 0.1, regrow_batches: int = 8, accuracy_batches: int = 2, check_images: int = 128,
        reward_steps: int = 0, aim_networks: int = 4, seed: int = 0,
        agent_settings: DDPGSettings | None = None) -> Search:
    """Search keep ratios with the agent against the predictor, then select filters and fit the target
    by measurement (module doc)."""
    oracle, target = problem.oracle, problem.target
    if problem.metric != "latency":
        raise PruningError("lap searches for a latency target; use uniform or global for a FLOPs target")
    if oracle is None:
        raise PruningError("lap needs a latency oracle (a device profile)")
    if not 0.0 < low < high <= 1.0:
        raise PruningError(f"keep-ratio bounds must satisfy 0 < low < high <= 1, got low {low}, high {high}")
    if episodes < 1 or warmup < 0:
        raise PruningError(f"episodes must be 1 or more and warmup 0 or more, got {episodes} and {warmup}")
    if problem.val_loader is None:
        raise PruningError("lap's reward is a quick accuracy check: give a val_loader")
    if reward_steps < 0 or aim_networks < 1:
        raise PruningError(f"reward_steps must be 0 or more and aim_networks 1 or more, got {reward_steps} and "
                           f"{aim_networks}")
    start = time.perf_counter()
    env = Environment(problem.arch, [g.id for g in problem.groups], oracle, target, low, high,
                      profile_group_size(oracle.profile))
    floor = env.floor()
    settings = agent_settings or DDPGSettings(warmup=warmup)
    agent = DDPG(env.states, settings, seed)
    scores = _selection_scores(problem, selection, dynamics_batches)
    best: dict[str, Any] | None = None
    searched = 0.0  # seconds of earlier, interrupted runs

    def elapsed() -> float:
        return searched + time.perf_counter() - start

    log: list[dict[str, Any]] = []
    path = problem.out / CHECKPOINT if problem.out else None
    if path is not None and path.exists():
        saved = torch.load(path, weights_only=True)
        agent.load_state_dict(saved["agent"])
        best, searched, calibration = saved["best"], float(saved["search_s"]), saved["calibration"]
        env.target = calibration["search_target"]  # the aim of the interrupted run, not a new measurement
        log = json.loads((problem.out / LOG).read_text()) if (problem.out / LOG).exists() else []
    else:
        calibration = _calibrate(problem, env, aim_networks, seed)
        if floor > env.target:
            aim = "" if env.target == target else f" (the measured target is {env.target:.3f} in predicted terms)"
            raise PruningError(f"latency target {target:g} is below what lap can reach: every group at the lowest keep "
                               f"ratio {low:g} is predicted at {floor:.3f} of the original{aim}; lower --min-keep")
    bar = progress_bar(problem.progress, "lap episodes", episodes, agent.episode)
    try:
        while agent.episode < episodes:
            ep = run_episode(env, agent.act)
            decision = keep_decision(ep.widths, scores, problem.arch)
            module = problem.build(decision)
            acc = problem.quick_accuracy(module, f"lap:{decision.arch(problem.arch).signature()}", accuracy_batches,
                                         check_images, reward_steps)
            credit = env.latency_credit(ep.widths)
            reward = -(1.0 - acc / 100.0) + latency_weight * credit
            record = {"episode": agent.episode, "reward": reward, "accuracy": acc, "predicted": ep.predicted,
                      "latency_credit": credit, "sigma": agent.sigma,
                      "keep": {str(g): ep.widths[g] for g in env.group_ids}}
            if best is None or reward > best["reward"]:
                best = record
            log.append(record)
            agent.learn_episode(ep.states, ep.actions, reward)
            _save(problem, {"agent": agent.state_dict(), "best": best, "search_s": elapsed(),
                            "calibration": calibration}, log)
            if bar is not None:
                bar[0].update(bar[1], completed=agent.episode,
                              info=f"reward {reward:.3f}  best: predicted {best['predicted']:.3f}, "
                                   f"accuracy {best['accuracy']:.1f}%")
    finally:
        if bar is not None:
            bar[0].stop()
    return _finish(problem, env, best, scores, selection, regrow_fraction, regrow_batches, accuracy_batches,
                   check_images, log, elapsed(), calibration)


#: knob values the targeting loop scans (a knob step moves about one group by one menu width)
KNOB_GRID = 241


def scaled_widths(env: Environment, ratios: dict[int, float], knob: float) -> dict[int, int]:
    """The targeting knob's network: group ``g`` wants ``min(1, ratios[g] * knob) * C_g`` channels, a position
    on its menu interpolated between menu widths; the positions are rounded by largest remainder (ties: the
    earlier group), so that their total is the rounded total and a small knob step moves one group by one
    menu width, not every group cut alike at once (a jump too coarse to land a target)."""
    position = {g: float(np.interp(min(1.0, ratios[g] * knob) * env.arch.width_tuple[g], env.menus[g],
                                   np.arange(len(env.menus[g])))) for g in sorted(ratios)}
    index = largest_remainder(position, math.floor(sum(position.values()) + 0.5), dict.fromkeys(position, 0),
                              {g: len(env.menus[g]) - 1 for g in position})
    return {g: env.menus[g][i] for g, i in index.items()}


def _finish(problem: Problem, env: Environment, best: dict[str, Any], scores, selection: str,
            regrow_fraction: float, regrow_batches: int, accuracy_batches: int, check_images: int,
            log: list[dict[str, Any]], search_s: float, calibration: dict[str, float]) -> Search:
    """Fit the best policy to the measured target, refine its filters by regrowth, compare selections."""
    arch = problem.arch
    ratios = {int(g): w / arch.width_tuple[int(g)] for g, w in best["keep"].items()}

    found = search_knob(lambda k: keep_decision(scaled_widths(env, ratios, k), scores, arch), arch, problem.oracle,
                        problem.target, "latency", problem.build,
                        knob_range=(0.25, max(2.0, 1.0 / min(ratios.values()))), grid=KNOB_GRID)
    widths = scaled_widths(env, ratios, found.knob)
    keep = {g: tuple(keep_top(scores[g], w)) for g, w in widths.items()}
    gradients = gate_gradients(problem.model, problem.groups, keep, problem.train_loader, regrow_batches)
    regrown, swaps = regrow(keep, gradients, regrow_fraction)
    final = Decision({g: idx for g, idx in regrown.items() if len(idx) < arch.width_tuple[g]})
    compared = {}
    l1 = score(problem.model, problem.groups, "l1")
    for name, d in (("l1", keep_decision(widths, l1, arch)), (selection, found.decision),
                    (f"{selection}+regrowth", final)):
        compared[name] = problem.quick_accuracy(problem.build(d), f"lap-final:{name}", accuracy_batches,
                                                check_images)
    summary = {"episodes": len(log), "search_s": round(search_s, 1), "best_episode": best["episode"],
               "best_reward": best["reward"], "best_predicted": best["predicted"], "best_accuracy": best["accuracy"],
               "knob": found.knob, "knob_widths": "largest remainder on the menus", "selection": selection,
               "regrown": sum(len(s) for s in swaps.values()),
               "selection_accuracy": compared, **calibration}
    return Search(found.knob, final, final.arch(arch), [*found.history, {"lap": summary}])


@dataclass(frozen=True)
class Options:
    episodes: int = option(300, "search episodes (warm-up included)", low=1)
    warmup: int = option(100, "episodes of random actions before the agent learns (= episodes: random search)", low=0)
    min_keep: float = option(0.2, "smallest keep ratio the agent may give a group", low=0.0, high=1.0, low_open=True)
    latency_weight: float = option(0.1, "weight of the sensitivity-weighted latency term of the reward", low=0.0)
    selection: str = option("dynamic", "which filters to keep: dynamic (change over a short fine-tuning), or a "
                                       "criterion (l1, l2, bn_scale, taylor, fpgm)")
    regrow_fraction: float = option(0.1, "at most this share of a group's kept filters swapped by regrowth",
                                    low=0.0, high=1.0)
    check_images: int = option(128, "training images the quick check recalibrates batch norms on (per episode)", low=1)
    reward_steps: int = option(0, "SGD steps each episode's network trains for before its quick check (0: none; a "
                                  "few steps rank aggressively cut networks by how they recover)", low=0)
    aim_networks: int = option(4, "networks measured before the search to aim the wall at the measured target",
                               low=1)
    agent_seed: int = option(0, "seed of the agent's initial weights and exploration noise", low=0)


def search(problem: Problem, options: Options) -> Search:
    return lap(problem, options.episodes, options.warmup, options.min_keep, latency_weight=options.latency_weight,
               selection=options.selection, regrow_fraction=options.regrow_fraction, check_images=options.check_images,
               reward_steps=options.reward_steps, aim_networks=options.aim_networks, seed=options.agent_seed)


METHOD = Method("lap", "LAP: a DDPG agent picks each group's keep ratio against the predicted latency; dynamic "
                       "filter selection with regrowth", Options, search)
