"""HILP: the in-layer rate search on staircases, and the measured loop on a real engine (stopping, counts, resume)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from nets import seeded, with_groups

from latbench.measure import MeasureSettings
from pruners.errors import PruningError
from pruners.hilp import CHECKPOINT, best_width, dropped_importance, hilp, plateau_widths
from pruners.importance import keep_top, score
from pruners.method import Problem
from pruners.oracle import LatencyOracle
from pruners.train import TrainConfig

EXAMPLE = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))

pytestmark = pytest.mark.usefixtures("one_thread")


# --- the rate search --------------------------------------------------------------------------------------------
def test_plateau_widths_are_the_step_multiples_below_the_width():
    assert plateau_widths(40, 8) == [8, 16, 24, 32]
    assert plateau_widths(32, 8) == [8, 16, 24]
    assert plateau_widths(8, 8) == [] and plateau_widths(5, 8) == []


@settings(max_examples=200, deadline=None)
@given(channels=st.integers(9, 96), step=st.sampled_from([4, 8, 16]), seed=st.integers(0, 10_000),
       per_block=st.floats(1.0, 20.0))
def test_on_a_staircase_the_best_width_of_all_is_a_plateau_edge(channels, step, seed, per_block):
    """Latency ``per_block * ceil(w / step)``; importance of positive random scores. Over *every* width,
    the most latency saved per importance lost is at the widest width of a plateau: the rate search
    loses nothing by trying only those."""
    scores = torch.rand(channels, generator=torch.Generator().manual_seed(seed)) + 0.01
    latency = lambda w: per_block * math.ceil(w / step)  # noqa: E731
    every = list(range(1, channels))
    saved = np.array([latency(channels) - latency(w) for w in every])
    lost = np.array([dropped_importance(scores, w) for w in every])
    best_any = best_width(every, saved, lost)
    edges = plateau_widths(channels, step)
    if best_any is None:
        assert not edges or all(latency(w) == latency(channels) for w in edges)
        return
    assert best_any % step == 0
    idx = [every.index(w) for w in edges]
    assert best_width(edges, saved[idx], lost[idx]) == best_any


def test_dropped_importance_sums_the_lowest_scores():
    scores = torch.tensor([5.0, 1.0, 3.0, 2.0])
    assert dropped_importance(scores, 2) == pytest.approx(3.0)  # drops 1 and 2
    assert dropped_importance(scores, 4) == 0.0


def test_choice_prefers_less_accuracy_lost_per_latency_saved_and_stays_near_the_target():
    from pruners.hilp import _choose, _scores

    drops = np.array([1.0, 0.0, 0.0, -2.0, 0.5])
    saved = np.array([0.10, 0.01, 0.04, 0.02, 0.0])
    scores = _scores(drops, saved)
    assert scores.tolist() == [10.0, 0.0, 0.0, 0.0, np.inf]  # a gain is no drop; saving nothing never wins
    ratio = {i: 0.9 - saved[i] for i in range(5)}
    assert _choose(range(5), ratio, dict(enumerate(scores)), floor=0.0) == 2  # equal scores: the larger saving
    # near the target: a move that lands more than the tolerance below it is passed over ...
    assert _choose(range(5), ratio, dict(enumerate(scores)), floor=0.87) == 3
    # ... unless every move does, then the one that overshoots least
    assert _choose([0, 2], ratio, dict(enumerate(scores)), floor=0.89) == 2


# --- the measured loop ------------------------------------------------------------------------------------------
def _problem(profile_and_data, target, out):
    profile, data = profile_and_data
    model, arch, groups = with_groups(seeded("resnet20"), EXAMPLE, "resnet20")
    oracle = LatencyOracle(profile, model, arch, EXAMPLE, mode="auto",
                           settings=MeasureSettings(target_rel_ci=0.02, budget_s=2.0))
    return Problem(model, arch, groups, EXAMPLE, oracle, target, "latency", data, data, TrainConfig(epochs=0),
                   out=out, bn_images=64)


def test_the_loop_measures_every_move_and_stops_once_the_target_is_met(profile_and_data, tmp_path):
    problem = _problem(profile_and_data, 0.9, tmp_path)
    found = hilp(problem, prefilter=3, accuracy_batches=1)
    steps = found.history
    assert steps and found.knob <= 0.9 and all(s["measured_ratio"] > 0.9 for s in steps[:-1])
    assert found.knob == steps[-1]["measured_ratio"]
    # every logged measurement came from the oracle, none from a prediction
    assert problem.oracle.counts.measurements == sum(s["measured"] for s in steps) == 3 * len(steps)
    for s in steps:
        measured = [c for c in s["candidates"] if "measured" in c]
        assert len(measured) == 3 and s["measured_ratio"] in [c["measured"] for c in measured]
        chosen = next(c for c in s["candidates"] if c["move"] == s["chosen"])
        assert chosen["measured"] == s["measured_ratio"]
    # the decision on the original network is the network the loop ended with
    assert found.arch.signature() == found.decision.arch(problem.arch).signature()
    assert found.arch.flops() < problem.arch.flops()


def test_resuming_keeps_the_moves_already_made(profile_and_data, tmp_path):
    first = hilp(_problem(profile_and_data, 0.5, tmp_path), prefilter=2, accuracy_batches=1, max_steps=1)
    saved = json.loads((tmp_path / CHECKPOINT).read_text())
    assert len(first.history) == len(saved["history"]) == 1
    problem = _problem(profile_and_data, 0.5, tmp_path)
    resumed = hilp(problem, prefilter=2, accuracy_batches=1, max_steps=2)
    assert resumed.history[0] == first.history[0] and len(resumed.history) == 2
    assert problem.oracle.counts.measurements == 2  # only the new step's candidates were measured
    # the second step cut the first step's network further (measured ratios from two runs minutes apart are
    # not comparable on a shared machine; the network's size is)
    assert resumed.arch.flops() < first.arch.flops()


def test_hilp_refuses_what_it_cannot_do(profile_and_data, tmp_path):
    problem = _problem(profile_and_data, 0.8, tmp_path)
    problem.oracle.mode = "predict"
    with pytest.raises(PruningError, match="measures every move"):
        hilp(problem)
    problem = _problem(profile_and_data, 0.8, tmp_path)
    with pytest.raises(PruningError, match="prefilter must be 0"):
        hilp(problem, prefilter=-1)
    problem.metric = "flops"
    with pytest.raises(PruningError, match="latency target"):
        hilp(problem)


def test_latbench_prune_hilp_end_to_end(capsys, shipped_profile, tmp_path):
    from test_cli import run

    weights = tmp_path / "resnet20.pt"
    torch.save(seeded("resnet20").state_dict(), weights)
    code, out, err = run(capsys, "prune", "hilp", "--model", "resnet20", "--weights", str(weights), "--profile",
                         str(shipped_profile()), "--latency-target", "0.9", "--prefilter", "2", "--finetune-epochs",
                         "0", "--bn-images", "64", "--measure-budget", "2", "--quiet", "--out", str(tmp_path / "run"))
    assert code == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    steps = [e for e in report["search"] if "chosen" in e]
    assert steps and report["oracle"]["counts"]["measurements"] >= 2 * len(steps)
    assert (tmp_path / "run" / "steps.png").stat().st_size > 0 and (tmp_path / "run" / CHECKPOINT).exists()
    table = [line for line in out.splitlines() if line.startswith("| ") and (" | remove " in line or " -> " in line)]
    assert len(table) == len(steps) and steps[-1]["chosen"] in table[-1]


def test_fine_tuning_between_moves_returns_the_trained_network_of_the_decision(profile_and_data, tmp_path):
    from pruners.surgery import apply

    tuned: list[int] = []
    problem = _problem(profile_and_data, 0.5, tmp_path)
    problem.fine_tune_fn = lambda module, epochs: tuned.append(epochs)
    found = hilp(problem, prefilter=2, step_epochs=1, accuracy_batches=1, max_steps=2)
    assert tuned == [1, 1] and found.model is not None
    rebuilt = apply(problem.model, problem.arch, found.decision, EXAMPLE)[0]
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in
                                                                       found.model.state_dict().items()}
    assert (tmp_path / "hilp-weights.pt").exists()
    assert all("accuracy_after_fine_tuning" in s for s in found.history)


# --- single-path layer removal as a move --------------------------------------------------------------------------
def test_every_single_path_conv_the_surgery_can_take_is_a_move_priced_by_its_filters():
    from latbench.arch import trace
    from pruners.groups import channel_groups
    from pruners.hilp import layer_moves
    from pruners.importance import per_weight_scores
    from pruners.path_layers import path_layers

    model = seeded("vgg16")
    arch = trace(model, EXAMPLE, "vgg16")
    moves, lost = layer_moves(model, arch, EXAMPLE, per_weight_scores(model, channel_groups(model, arch, EXAMPLE)))
    modules = dict(model.named_modules())
    assert [m.target for m in moves] == path_layers(arch) and len(moves) >= 8
    for move, value in zip(moves, lost, strict=True):
        w = modules[move.target].weight
        assert value == pytest.approx(float(w.detach().abs().sum()) / w[0].numel(), rel=1e-6)  # its filters, per weight
        assert move.kind == "layer" and move.target not in {layer.name for layer in move.arch.base.layers}
        assert move.module(EXAMPLE).shape == (1, 10)

    net = seeded("mobilenetv2_cifar")
    arch = trace(net, EXAMPLE, "mobilenetv2_cifar")
    moves, _ = layer_moves(net, arch, EXAMPLE, per_weight_scores(net, channel_groups(net, arch, EXAMPLE)))
    last = [layer.name for layer in arch.base.layers if layer.spec.op == "conv"][-1]
    assert last in [m.target for m in moves]  # MobileNet-V2's last 1x1 conv: its reader is the classifier
    assert all(layer.block is None for m in moves for layer in arch.base.layers if layer.name == m.target)


def test_a_layer_move_is_taken_recorded_and_resumed(profile_and_data, tmp_path, monkeypatch):
    import pruners.hilp as hilp_module
    from pruners.surgery import apply

    profile, data = profile_and_data
    monkeypatch.setattr(hilp_module, "rate_search", lambda *a, **k: ([], []))  # only depth moves are left

    def problem():
        model, arch, groups = with_groups(seeded("vgg16"), EXAMPLE, "vgg16")
        oracle = LatencyOracle(profile, model, arch, EXAMPLE, mode="auto",
                               settings=MeasureSettings(target_rel_ci=0.02, budget_s=2.0))
        return Problem(model, arch, groups, EXAMPLE, oracle, 0.5, "latency", data, data, TrainConfig(epochs=0),
                       out=tmp_path, bn_images=32)

    first = hilp(problem(), prefilter=2, accuracy_batches=1, max_steps=1)
    (step,) = first.history
    assert step["kind"] == "layer" and first.decision.remove_layers == (step["chosen"].removeprefix("remove "),)
    p = problem()
    rebuilt = apply(p.model, p.arch, first.decision, EXAMPLE)[1]
    assert first.arch.signature() == rebuilt.signature()
    assert json.loads((tmp_path / CHECKPOINT).read_text())["removed_layers"] == list(first.decision.remove_layers)
    resumed = hilp(p, prefilter=2, accuracy_batches=1, max_steps=2)
    assert resumed.history[0] == step and len(resumed.history) == 2
    assert step["chosen"] not in [c["move"] for c in resumed.history[1]["candidates"]]
    assert len(resumed.decision.remove_layers) == 2 and p.oracle.counts.measurements == 2


def test_a_missed_target_names_the_ratios_the_steps_measured_not_their_candidate_counts():
    from pruners.prune import _missed

    steps = [{"step": 1, "measured": 8, "measured_ratio": 0.62}, {"step": 2, "measured": 8, "measured_ratio": 0.48}]
    why = _missed("latency", 0.5, 0.45, steps)
    assert "measured 0.48, 0.62:" in why and "8.0" not in why
    assert _missed("latency", 0.5, 0.49, steps) is None


def test_a_data_criterion_scores_the_moves_on_training_batches(profile_and_data, tmp_path):
    """``--criterion taylor`` needs batches: HILP passes its training data, and a width move keeps the
    channels taylor ranks highest on it (scored here, on the same batches, independently of the search)."""
    problem = _problem(profile_and_data, 0.9, tmp_path)
    problem.train_loader = list(problem.train_loader)  # the same batches for the search and for this check
    expected = score(problem.model, problem.groups, "taylor", problem.train_loader)
    before = {k: v.clone() for k, v in problem.model.state_dict().items()}
    found = hilp(problem, prefilter=3, accuracy_batches=1, criterion="taylor", max_steps=1)
    # the search never touches the trained network (its quick check of the original runs on a copy)
    assert all(torch.equal(v, before[k]) for k, v in problem.model.state_dict().items())
    step = found.history[0]
    assert step["chosen"] and any(c["move"].startswith("width") or "->" in c["move"] for c in step["candidates"])
    ids = {g.name: g.id for g in problem.groups}
    assert found.decision.keep  # the step cut a width
    for name, kept in found.decision.keep.items():
        assert tuple(kept) == tuple(keep_top(expected[ids.get(name, name)], len(kept)))
