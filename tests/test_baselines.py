"""FLOPs-era baselines: uniform widths by largest remainder, Torch-Pruning's global magnitude, knob fitting."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch_pruning as tp
from fakes import FakePredictor, FakeProfile
from nets import randomized, with_groups

from pruners.baselines import global_decision, search_knob, uniform_decision, uniform_widths
from pruners.errors import PruningError
from pruners.groups import ChannelGroup
from pruners.importance import score
from pruners.oracle import LatencyOracle
from pruners.surgery import Decision, apply

EXAMPLE = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(11))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def resnet20():
    return with_groups(randomized("resnet20"), EXAMPLE, "resnet20")


def group(gid: int, channels: int) -> ChannelGroup:
    return ChannelGroup(gid, f"g{gid}", channels, (f"conv{gid}",), (f"bn{gid}",), ())


# --- uniform widths -------------------------------------------------------------------------------------------
def test_uniform_widths_by_largest_remainder_by_hand():
    groups = [group(1, 16), group(2, 32), group(3, 64)]
    # 0.3: exact 4.8, 9.6, 19.2 -> floors 4, 9, 19 (32); round(33.6) = 34: the two largest fractions get one more
    assert uniform_widths(groups, 0.3) == {1: 5, 2: 10, 3: 19}
    # 0.7: exact 11.2, 22.4, 44.8 -> floors 77; round(78.4) = 78: only the 64-channel group (.8) gets one more
    assert uniform_widths(groups, 0.7) == {1: 11, 2: 22, 3: 45}
    assert uniform_widths(groups, 1.0) == {1: 16, 2: 32, 3: 64}
    assert uniform_widths(groups, 0.5) == {1: 8, 2: 16, 3: 32}
    # equal fractions: the earlier group first
    assert uniform_widths([group(1, 3), group(2, 5), group(3, 7)], 0.5) == {1: 2, 2: 3, 3: 3}
    # every group keeps at least one channel, even when that exceeds the rounded total
    assert uniform_widths(groups, 0.01) == {1: 1, 2: 1, 3: 1}


@pytest.mark.parametrize("ratio", [round(r, 3) for r in np.linspace(0.07, 1.0, 29)])
def test_uniform_widths_totals(ratio):
    groups = [group(1, 16), group(2, 32), group(3, 64), group(4, 24), group(5, 144)]
    widths = uniform_widths(groups, ratio)
    assert set(widths) == {g.id for g in groups}
    assert sum(widths.values()) == round(ratio * sum(g.channels for g in groups))
    for g in groups:
        assert 1 <= widths[g.id] <= g.channels
        assert math.floor(ratio * g.channels) <= widths[g.id] <= math.floor(ratio * g.channels) + 1


def test_uniform_decision_keeps_the_top_scored_channels():
    groups = [group(1, 4), group(2, 6)]
    scores = {1: torch.tensor([0.1, 0.9, 0.5, 0.3]), 2: torch.tensor([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])}
    d = uniform_decision(groups, scores, 0.5)
    assert dict(d.keep) == {1: (1, 2), 2: (0, 1, 2)}
    assert d.remove_blocks == ()


# --- FLOPs target ---------------------------------------------------------------------------------------------
def test_fit_knob_flops_is_the_largest_knob_meeting_the_target(resnet20):
    model, arch, groups = resnet20
    scores = score(model, groups, "l1")

    def make(r: float) -> Decision:
        return uniform_decision(groups, scores, r)

    target, grid = 0.5, 61
    fit = search_knob(make, arch, None, target, metric="flops", grid=grid)
    base = arch.flops()
    assert fit.arch.flops() / base <= target
    assert fit.arch == fit.decision.arch(arch) == make(fit.knob).arch(arch)
    knobs = np.linspace(0.02, 1.0, grid)
    ratios = [make(float(x)).arch(arch).flops() / base for x in knobs]
    meeting = [x for x, r in zip(knobs, ratios, strict=True) if r <= target]
    assert fit.knob == pytest.approx(max(meeting))
    above = knobs[knobs > fit.knob + 1e-9]
    assert make(float(above[0])).arch(arch).flops() / base > target
    assert fit.history and all("flops" in h for h in fit.history)


def test_fit_knob_refuses_bad_metric_and_missing_oracle(resnet20):
    model, arch, groups = resnet20
    scores = score(model, groups, "l1")
    with pytest.raises(PruningError, match="unknown target metric"):
        search_knob(lambda r: uniform_decision(groups, scores, r), arch, None, 0.5, metric="params")
    with pytest.raises(PruningError, match="needs a latency oracle"):
        search_knob(lambda r: uniform_decision(groups, scores, r), arch, None, 0.5, metric="latency")


# --- Torch-Pruning's global magnitude -------------------------------------------------------------------------
def test_global_decision_is_what_torch_pruning_prunes(resnet20):
    model, arch, groups = resnet20
    before = {k: v.clone() for k, v in model.state_dict().items()}
    decision = global_decision(model, groups, EXAMPLE, 0.5)
    assert decision.keep and decision.remove_blocks == ()
    cand = decision.arch(arch)
    assert cand.flops() < arch.flops()
    assert len({cand.width_tuple[g.id] / g.channels for g in groups}) > 1  # global ranking: uneven keep ratios
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the module is not changed

    pruned, target = apply(model, arch, decision, EXAMPLE)
    assert target == cand

    work = copy.deepcopy(model).eval()
    pruner = tp.pruner.MagnitudePruner(work, EXAMPLE, importance=tp.importance.MagnitudeImportance(p=1),
                                       global_pruning=True, pruning_ratio=0.5, max_pruning_ratio=0.95,
                                       ignored_layers=[work.fc])
    pruner.step()
    ours, theirs = pruned.state_dict(), work.state_dict()
    assert ours.keys() == theirs.keys()
    for k in ours:
        assert ours[k].shape == theirs[k].shape, k
        assert torch.equal(ours[k], theirs[k]), k
    with torch.no_grad():
        assert torch.equal(pruned(EXAMPLE), work(EXAMPLE))


def test_global_decision_at_zero_prunes_nothing(resnet20):
    model, _, groups = resnet20
    assert global_decision(model, groups, EXAMPLE, 0.0) == Decision()


# --- latency target, predicted ----------------------------------------------------------------------------------
def test_fit_knob_latency_predict_mode(resnet20):
    model, arch, groups = resnet20
    scores = score(model, groups, "l1")
    predictor = FakePredictor(const_us=500.0, us_per_mflop=10.0)
    profile = FakeProfile({"lut": predictor}, backend=SimpleNamespace(name="onnxruntime"))
    oracle = LatencyOracle(profile, model, arch, EXAMPLE, mode="predict")

    def make(r: float) -> Decision:
        return uniform_decision(groups, scores, r)

    def build(d: Decision):
        raise AssertionError("predict mode must not build or measure a candidate")

    target, grid = 0.6, 41
    fit = search_knob(make, arch, oracle, target, metric="latency", build=build, grid=grid)
    ref = predictor.latency_us(arch)
    predicted = predictor.latency_us(fit.arch) / ref
    assert predicted <= target
    assert oracle.predict(fit.arch).ratio == pytest.approx(predicted)
    knobs = np.linspace(0.02, 1.0, grid)
    ratios = [predictor.latency_us(make(float(x)).arch(arch)) / ref for x in knobs]
    assert fit.knob == pytest.approx(max(x for x, r in zip(knobs, ratios, strict=True) if r <= target))
    assert oracle.counts.measurements == 0
    assert oracle.counts.predictions >= len({make(float(x)).arch(arch).signature() for x in knobs})
    # the latency knob differs from the FLOPs knob: the constant part of the latency does not shrink
    flops_fit = search_knob(make, arch, None, target, metric="flops", grid=grid)
    assert fit.knob < flops_fit.knob
