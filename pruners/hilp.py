"""HILP: hardware-in-the-loop progressive pruning with layer-wise hybrid moves (``../shared/METHODS.md``).

Every move the method takes was measured on the deployed engine; the profile's predictor only
proposes. One step:

1. **In-layer optimal rate.** For every prunable group, the keep widths worth trying are the widest
   width of each latency plateau below its current width: with the profile's channel step ``s``,
   an engine computes ``k*s + 1 .. (k+1)*s`` channels at the cost of ``(k+1)*s``, so only the
   multiples of ``s`` can buy latency (a group at or under one step has no such width). Each width
   is priced by the predictor (one batched call for all groups) and the width with the most
   predicted latency saved per unit of importance lost (the sum of the dropped channels' scores,
   L1 by default) is the group's move.
2. **Hybrid moves.** The candidates are every group cut to its optimal width, every removable
   residual block replaced by identity, and every conv that can leave a single path
   (``pruners.path_layers``: VGG's convs, a MobileNet's last 1x1 conv; one whose reader the surgery
   cannot reconcile, such as a depthwise conv, is no move). Each is a real module built by surgery
   from the current network.
3. **Hardware in the loop.** Candidates are ranked by the predictor: importance dropped per
   predicted latency saved (importance: the removed filters' scores in per-weight units, so that a
   width cut and a block removal compare). The first ``prefilter`` K (8 by default; 0: all) are
   measured in one run interleaved with the reference network (``LatencyOracle.measure_many``),
   cached by signature.
4. **Choice.** A measured candidate's score is its quick-accuracy drop (batch norms recalibrated, a
   fixed validation subset) per unit of measured latency saved, both against the current network;
   the lowest wins (a gain counts as no drop; equal scores go to the larger saving). Near the
   target, candidates that would land more than ``tolerance`` below it are passed over while one
   lands within it. Optionally ``step_epochs`` of fine-tuning follow.

The loop stops once the measured latency meets the target. Every step is logged (candidates with
predicted and measured ratios, accuracy, score; the chosen move; the rate search's time; how far
predictions were from measurements and whether ranking by prediction would have picked the same
move) and checkpointed in ``hilp.json`` (and ``hilp-weights.pt`` with step fine-tuning) under the
run folder: a rerun resumes after the last finished step.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from latbench.arch import Arch, trace
from latbench.jsonio import dump_json
from pruners.errors import PruningError, SurgeryError
from pruners.groups import ChannelGroup, channel_groups
from pruners.importance import keep_top, per_weight_scores, score
from pruners.method import Method, Problem, Search, option
from pruners.path_layers import path_layers
from pruners.splamp import profile_group_size
from pruners.surgery import Decision, apply
from pruners.train import load_weights, read_weights, save_atomic

CHECKPOINT = "hilp.json"
#: candidates measured per step: the predictor's top 8 (0 or None: all; README "HILP" has the numbers)
DEFAULT_PREFILTER = 8
CHECKPOINT_WEIGHTS = "hilp-weights.pt"


def plateau_widths(current: int, step: int) -> list[int]:
    """Keep widths worth trying below ``current``: the multiples of ``step`` under it (the widest width of
    each latency plateau), narrowest first."""
    return list(range(step, current, step)) if step > 0 else []


def best_width(widths: list[int], saved: np.ndarray, lost: np.ndarray) -> int | None:
    """The width with the most latency ``saved`` per importance ``lost`` (a free saving beats any other;
    ties: the wider); None when no width saves anything."""
    best, best_key = None, None
    for w, s, c in zip(widths, saved, lost, strict=True):
        if s <= 0:
            continue
        key = (float("inf") if c <= 0 else s / c, s if c <= 0 else 0.0, w)
        if best_key is None or key > best_key:
            best, best_key = w, key
    return best


def dropped_importance(scores: torch.Tensor, width: int) -> float:
    """The summed scores of the channels a cut to ``width`` drops (the lowest ones)."""
    kept = set(keep_top(scores, width))
    return float(sum(float(scores[i]) for i in range(len(scores)) if i not in kept))


@dataclass
class Move:
    """One candidate of a step: a group cut to ``width``, a block or a single-path layer removed, as a decision
    on the current network (``module``: the candidate already built, for a layer removal, which needs a trace)."""

    kind: str  # "width", "block" or "layer"
    target: str  # group, block or layer name
    decision: Decision
    arch: Arch
    width: int | None = None
    module: nn.Module | None = None

    def label(self) -> str:
        return f"{self.target} -> {self.width}" if self.kind == "width" else f"remove {self.target}"


def rate_search(arch: Arch, groups: list[ChannelGroup], scores: dict[int, torch.Tensor],
                writer_scores: dict[str, torch.Tensor], oracle, step: int) -> tuple[list[Move], list[float]]:
    """Every group's optimal-rate move (module doc, step 1), priced in one batched prediction, and the
    importance each move drops (its writers' dropped filter scores, ``per_weight_scores``)."""
    plans = [(g, w) for g in groups for w in plateau_widths(arch.width_tuple[g.id], step)]
    if not plans:
        return [], []
    ratios = oracle.predict_ratios([arch.with_widths({g.id: w}) for g, w in plans])
    now = float(oracle.predict_ratios([arch])[0])
    moves, lost = [], []
    for g in groups:
        idx = [i for i, (h, _) in enumerate(plans) if h.id == g.id]
        if not idx:
            continue
        widths = [plans[i][1] for i in idx]
        w = best_width(widths, now - ratios[idx], np.array([dropped_importance(scores[g.id], w) for w in widths]))
        if w is not None:
            kept = keep_top(scores[g.id], w)
            d = Decision({g.id: tuple(kept)})
            moves.append(Move("width", g.name, d, d.arch(arch), w))
            dropped = sorted(set(range(arch.width_tuple[g.id])) - set(kept))
            lost.append(sum(float(writer_scores[p][dropped].sum()) for p in g.writers))
    return moves, lost


def block_moves(arch: Arch, writer_scores: dict[str, torch.Tensor]) -> tuple[list[Move], list[float]]:
    """Every removable block as a move, and the importance it drops (all its writers' filter scores)."""
    moves, lost = [], []
    for b in arch.blocks:
        if b.removable and b.name not in arch.removed:
            d = Decision(remove_blocks=(b.name,))
            moves.append(Move("block", b.name, d, d.arch(arch)))
            lost.append(sum(float(s.sum()) for p, s in writer_scores.items() if p in b.layers))
    return moves, lost


def layer_moves(module: nn.Module, arch: Arch, example: torch.Tensor,
                writer_scores: dict[str, torch.Tensor]) -> tuple[list[Move], list[float]]:
    """Every single-path conv the surgery can take out of ``module`` as a move (built and traced here: a shorter
    path changes its neighbours' shapes), and the importance it drops (the conv's filter scores)."""
    moves, lost = [], []
    for name in path_layers(arch):
        d = Decision(remove_layers=(name,))
        try:
            built, traced = apply(module, arch, d, example, check_arch=False)
        except SurgeryError:  # e.g. a depthwise reader: the surgery cannot reconcile it
            continue
        moves.append(Move("layer", name, d, traced, module=built))
        lost.append(float(writer_scores[name].sum()) if name in writer_scores else 0.0)
    return moves, lost


@dataclass
class _State:
    """The current network as decisions on the original: kept original channels per group name, removed blocks
    and single-path layers."""

    kept: dict[str, tuple[int, ...]]
    removed: list[str]
    history: list[dict[str, Any]]
    ratio: float = 1.0
    accuracy: float | None = None
    removed_layers: list[str] = field(default_factory=list)

    def decision(self, original: Arch) -> Decision:
        names = {g.name: g for g in original.groups}
        inside = {layer.name for b in original.blocks if b.name in self.removed for layer in
                  original.base.layers if layer.block == b.name}
        keep = {n: idx for n, idx in self.kept.items()
                if n in names and not set(names[n].layers) <= inside and len(idx) < names[n].channels}
        return Decision(keep, tuple(sorted(self.removed)), tuple(self.removed_layers))

    def to_dict(self) -> dict[str, Any]:
        return {"kept": {k: list(v) for k, v in self.kept.items()}, "removed": self.removed,
                "removed_layers": self.removed_layers, "history": self.history, "ratio": self.ratio,
                "accuracy": self.accuracy}


def hilp(problem: Problem, prefilter: int | None = DEFAULT_PREFILTER, step_epochs: int = 0, criterion: str = "l1",
         accuracy_batches: int = 4, max_steps: int = 200, tolerance: float = 0.05,
         step: int | None = None) -> Search:
    """Prune ``problem.model`` move by move until its measured latency meets ``problem.target`` (module doc)."""
    oracle, target, example = problem.oracle, problem.target, problem.example
    if problem.metric != "latency":
        raise PruningError("hilp prunes to a latency target; use uniform or global for a FLOPs target")
    if oracle is None or oracle.mode == "predict":
        raise PruningError("hilp measures every move: it needs a device profile and an oracle that may measure "
                           "(--oracle auto or measure)")
    if problem.val_loader is None:
        raise PruningError("hilp ranks moves by a quick accuracy check: give a val_loader")
    if prefilter is not None and prefilter < 0:
        raise PruningError(f"prefilter must be 0 (measure every candidate) or more, got {prefilter}")
    step = step or profile_group_size(oracle.profile)
    path = problem.out / CHECKPOINT if problem.out else None
    state = _State({g.name: tuple(range(g.channels)) for g in problem.groups}, [], [])
    current = problem.model
    if path is not None and path.exists():
        saved = json.loads(path.read_text())
        state = _State({k: tuple(v) for k, v in saved["kept"].items()}, saved["removed"], saved["history"],
                       saved["ratio"], saved["accuracy"], saved.get("removed_layers", []))
        current = apply(problem.model, problem.arch, state.decision(problem.arch), example, check_arch=False)[0]
        if step_epochs > 0 and (problem.out / CHECKPOINT_WEIGHTS).exists():
            load_weights(current, read_weights(problem.out / CHECKPOINT_WEIGHTS), str(problem.out / CHECKPOINT_WEIGHTS))
    if state.accuracy is None:
        # on a copy: the check re-estimates batch norms, and the original's are the trained ones
        state.accuracy = problem.quick_accuracy(copy.deepcopy(current), "original", accuracy_batches)
    while state.ratio > target and len(state.history) < max_steps:
        n = len(state.history) + 1
        arch = trace(current, example, problem.arch.name)
        groups = channel_groups(current, arch, example)
        t0 = time.perf_counter()
        per_writer = per_weight_scores(current, groups, criterion, problem.train_loader)
        moves, lost = rate_search(arch, groups, score(current, groups, criterion, problem.train_loader), per_writer,
                                  oracle, step)
        rate_s = time.perf_counter() - t0
        blocks, block_lost = block_moves(arch, per_writer)
        layers, layer_lost = layer_moves(current, arch, example, per_writer)
        moves, lost = moves + blocks + layers, lost + block_lost + layer_lost
        if not moves:
            break
        entry = _step(problem, oracle, current, arch, moves, np.array(lost), state, n, prefilter, accuracy_batches,
                      target, tolerance)
        entry["rate_search_s"] = round(rate_s, 3)
        chosen = next(m for m in moves if m.label() == entry["chosen"])
        _compose(state, chosen, arch)
        if step_epochs > 0:  # the trained weights go on; a resumed run loads them from the checkpoint
            current = apply(current, arch, chosen.decision, example, check_arch=False)[0]
        else:  # rebuilt from the original as a resumed run rebuilds it (a removed layer's readers are
            # reconciled against the final widths, not the widths at the time of removal)
            current = apply(problem.model, problem.arch, state.decision(problem.arch), example, check_arch=False)[0]
        state.ratio, state.accuracy = entry["measured_ratio"], entry["accuracy"]
        if step_epochs > 0:
            problem.step_fine_tune(current, n, step_epochs)
            state.accuracy = problem.quick_accuracy(current, f"step{n}-tuned", accuracy_batches)
            entry["accuracy_after_fine_tuning"] = state.accuracy
        state.history.append(entry)
        if path is not None:
            if step_epochs > 0:
                save_atomic(current.state_dict(), problem.out / CHECKPOINT_WEIGHTS)
            dump_json(state.to_dict(), path, indent=1)
    decision = state.decision(problem.arch)
    final = apply(problem.model, problem.arch, decision, example, check_arch=False)[1] if decision.remove_layers \
        else decision.arch(problem.arch)  # a shorter path has no Arch but its trace
    return Search(state.ratio, decision, final, state.history,
                  model=current if step_epochs > 0 else None)


def _step(problem: Problem, oracle, current: nn.Module, arch: Arch, moves: list[Move], lost: np.ndarray,
          state: _State, n: int, prefilter: int | None, batches: int, target: float,
          tolerance: float) -> dict[str, Any]:
    """(Pre)rank, build, check and measure this step's candidates; choose one; return the step's log entry."""
    predicted = oracle.predict_ratios([m.arch for m in moves])
    saved_predicted = float(oracle.predict_ratios([arch])[0]) - predicted
    promise = _scores(lost, saved_predicted)  # importance lost per predicted latency saved: lower is better
    order = [int(i) for i in np.argsort(promise, kind="stable")]
    picked = order[:prefilter] if prefilter else order
    accuracy, modules = {}, {}
    for i in picked:
        modules[i] = moves[i].module or apply(current, arch, moves[i].decision, problem.example, check_arch=False)[0]
        accuracy[i] = problem.quick_accuracy(modules[i], f"step{n}:{moves[i].arch.signature()}", batches)
    measured = oracle.measure_many([(modules[i], moves[i].arch) for i in picked])
    ratio = {i: e.ratio for i, e in zip(picked, measured, strict=True)}
    drop = {i: state.accuracy - accuracy[i] for i in picked}
    score = {i: float(_scores(np.array([drop[i]]), np.array([state.ratio - ratio[i]]))[0]) for i in picked}
    floor = target * (1 - tolerance)
    best = _choose(picked, ratio, score, floor)
    by_prediction = _choose(picked, dict(enumerate(predicted.tolist())),
                            {i: float(_scores(np.array([drop[i]]), saved_predicted[[i]])[0]) for i in picked}, floor)
    errors = np.array([abs(predicted[i] - ratio[i]) / ratio[i] for i in picked])
    return {
        "step": n, "chosen": moves[best].label(), "kind": moves[best].kind,
        "measured_ratio": ratio[best], "predicted_ratio": float(predicted[best]), "accuracy": accuracy[best],
        "candidates": [{"move": m.label(), "predicted": float(predicted[i]), "importance_lost": float(lost[i]),
                        **({"accuracy": accuracy[i], "measured": ratio[i], "score": _finite(score[i])}
                           if i in ratio else {})}
                       for i, m in enumerate(moves)],
        "measured": len(picked),
        "chosen_prefilter_rank": order.index(best) + 1,
        "prediction_error": {"median": float(np.median(errors)), "worst": float(errors.max())},
        "prediction_picks_same": bool(by_prediction == best),
    }


def _choose(indices, ratio: dict[int, float], scores: dict[int, float], floor: float) -> int:
    """The lowest score among candidates that stay at or above ``floor`` (equal scores, e.g. no accuracy
    lost: the larger saving); if every one falls below it, the one that falls least."""
    landing = [i for i in indices if ratio[i] >= floor]
    return min(landing, key=lambda i: (scores[i], ratio[i])) if landing else max(indices, key=lambda i: ratio[i])


def _finite(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _scores(drops: np.ndarray, saved: np.ndarray) -> np.ndarray:
    """Accuracy drop per latency saved (lower is better; a gain on the quick check counts as no drop, so it
    cannot make a small saving look better than a large one); a move that saves nothing scores +inf."""
    out = np.full(len(drops), np.inf)
    ok = saved > 0
    out[ok] = np.maximum(drops[ok], 0.0) / saved[ok]
    return out


def _compose(state: _State, move: Move, arch: Arch) -> None:
    """Record ``move`` (a decision on ``arch``, the current network) on the original's channels and blocks."""
    if move.kind == "block":
        state.removed.append(move.target)
        return
    if move.kind == "layer":
        state.removed_layers.append(move.target)
        return
    for gid, idx in move.decision.resolved(arch).items():
        name = arch.groups[gid].name
        state.kept[name] = tuple(state.kept[name][i] for i in idx)


@dataclass(frozen=True)
class Options:
    prefilter: int = option(DEFAULT_PREFILTER, "measure the K candidates the predictor ranks best; 0: all of them",
                            low=0)
    step_epochs: int = option(0, "fine-tuning epochs after every move (0: none)", low=0)
    criterion: str = option("l1", "channel importance of the rate search")
    accuracy_batches: int = option(4, "validation batches of the quick accuracy check", low=1)
    max_steps: int = option(200, "stop after this many moves", low=1)


def search(problem: Problem, options: Options) -> Search:
    return hilp(problem, options.prefilter, options.step_epochs, options.criterion, options.accuracy_batches,
                options.max_steps)


METHOD = Method("hilp", "HILP: per-layer optimal rates and block removals, each step's candidates measured",
                Options, search)

