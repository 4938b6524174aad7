"""FLOPs-era baselines: uniform widths by largest remainder, Torch-Pruning's global magnitude, knob fitting."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch_pruning as tp
from fakes import FakePredictor, FakeProfile, ParamClockBackend
from nets import cifar_resnet_reference, randomized, with_groups
from torch import nn

from latbench.arch import trace
from latbench.measure import MeasureSettings
from pruners.baselines import global_decision, search_knob, uniform_decision, uniform_widths
from pruners.errors import PruningError
from pruners.groups import ChannelGroup
from pruners.importance import score
from pruners.oracle import Anchor, LatencyOracle
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
def _resnet20_flops(widths: dict[str, int]) -> int:
    """FLOPs (2 per multiply-accumulate of the convs and the linear head) of a CIFAR ResNet-20 whose channel groups,
    named by their first writer, have ``widths``: 3x3 convs on 32x32, 16x16 and 8x8 maps, a 1x1 projection where
    a stage starts, a 10-class head."""
    stages = [widths["conv1"], widths["layer2.0.conv2"], widths["layer3.0.conv2"]]
    total = 2 * 32 * 32 * 9 * 3 * stages[0]
    c_in = stages[0]
    for s, hw in enumerate((32, 16, 8)):
        for b in range(3):
            mid = widths[f"layer{s + 1}.{b}.conv1"]
            total += 2 * hw * hw * 9 * (c_in * mid + mid * stages[s])
            if s > 0 and b == 0:
                total += 2 * hw * hw * c_in * stages[s]
            c_in = stages[s]
    return total + 2 * c_in * 10


def _widths(decision: Decision, groups: list[ChannelGroup]) -> dict[str, int]:
    return {g.name: len(decision.keep[g.id]) if g.id in decision.keep else g.channels for g in groups}


def test_fit_knob_flops_is_the_largest_knob_meeting_the_target(resnet20):
    model, arch, groups = resnet20
    scores = score(model, groups, "l1")

    def make(r: float) -> Decision:
        return uniform_decision(groups, scores, r)

    full = _resnet20_flops({g.name: g.channels for g in groups})
    assert full == arch.flops() == 81_626_368
    target = 0.5
    fit = search_knob(make, arch, None, target, metric="flops", grid=50)  # knobs 0.02, 0.04, ..., 1.0
    ratio = {k: _resnet20_flops(_widths(make(k / 50), groups)) / full for k in range(1, 51)}
    best = max(k for k, r in ratio.items() if r <= target)
    assert 0.3 < ratio[best] <= target < ratio[best + 1]
    assert fit.knob == pytest.approx(best / 50)
    assert fit.arch.flops() == _resnet20_flops(_widths(fit.decision, groups)) == round(ratio[best] * full)
    assert fit.arch == fit.decision.arch(arch)
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
    names = {g.id: g.name for g in groups}
    keep = {names[g.id]: list(decision.keep.get(g.id, range(g.channels))) for g in groups}
    assert {g.id: target.width_tuple[g.id] for g in groups} == {g.id: len(keep[g.name]) for g in groups}
    with torch.no_grad():  # the network a hand-built forward pass over the kept channels' weights computes
        torch.testing.assert_close(pruned(EXAMPLE), cifar_resnet_reference(model, keep, set(), EXAMPLE),
                                   rtol=1e-4, atol=1e-5)

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

    target = 0.6
    fit = search_knob(make, arch, oracle, target, metric="latency", build=build, grid=50)  # knobs 0.02, ..., 1.0

    def latency_us(d: Decision) -> float:  # the fake predictor's 500 us + 10 us per MFLOP
        return 500.0 + 10.0 * _resnet20_flops(_widths(d, groups)) / 1e6

    ref = latency_us(Decision())
    assert ref == pytest.approx(500.0 + 816.26368)
    ratio = {k: latency_us(make(k / 50)) / ref for k in range(1, 51)}
    best = max(k for k, r in ratio.items() if r <= target)
    assert ratio[best] <= target < ratio[best + 1]
    assert fit.knob == pytest.approx(best / 50)
    assert oracle.predict(fit.arch).ratio == pytest.approx(ratio[best])
    assert oracle.counts.measurements == 0
    assert oracle.counts.predictions >= len({make(k / 50).arch(arch).signature() for k in range(1, 51)})
    # the latency knob differs from the FLOPs knob: the constant part of the latency does not shrink
    flops_fit = search_knob(make, arch, None, target, metric="flops", grid=50)
    assert fit.knob < flops_fit.knob


# --- latency target, measured -----------------------------------------------------------------------------------
class Fan(nn.Module):
    """1 -> ``width`` -> 1 channels by two bias-free 1x1 convs: ``2 * width`` parameters, ``4 * width`` FLOPs."""

    def __init__(self, width: int = 100) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, width, 1, bias=False)
        self.b = nn.Conv2d(width, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.relu(self.a(x)))


FAN_EXAMPLE = torch.ones(1, 1, 1, 1)


def fan_oracle(anchor: Anchor | None = None) -> LatencyOracle:
    """The full Fan's oracle: predictions FLOPs-linear with no constant (``w / 100`` for ``w`` channels), measured
    on a clock of ``20 us + 400 us per k-parameter`` (``20 + 0.8 w`` us)."""
    model = Fan().eval()
    profile = FakeProfile({"lut": FakePredictor(const_us=0.0, us_per_mflop=1.0)},
                          backend=ParamClockBackend(const_us=20.0, us_per_kparam=400.0))
    quick = MeasureSettings(target_rel_ci=0.01, budget_s=2.0, warmup_min_s=0.01, min_time_s=0.01)
    return LatencyOracle(profile, model, trace(model, FAN_EXAMPLE, "fan"), FAN_EXAMPLE, mode="measure",
                         settings=quick, anchor=anchor)


def fan_keep(r: float) -> Decision:
    """The Fan at knob ``r``: its first ``round(100 r)`` channels."""
    return Decision({"a": tuple(range(round(100 * r)))})


def test_fit_knob_latency_corrects_predictions_by_measurements():
    """Predicted: FLOPs-linear, no constant, so a candidate of ``w`` channels predicts ``w / 100``. Measured: a
    backend whose networks take ``20 us + 400 us per k-parameter`` = ``20 + 0.8 w`` us, ``0.2 + 0.008 w`` of the
    original's 100 us: a fixed cost the prediction misses. Target 0.5, met when measured within 2.5% of it.

    By hand: knob 0.50 predicts 0.5 and measures 0.6 (log error log 1.2 everywhere); 1.2 w / 100 <= 0.5 gives knob
    0.41, measured 0.528 (error log(0.528 / 0.41) from 0.41 down); 1.2878 w / 100 <= 0.5 gives 0.38, which measures
    0.504, within 2.5%: the answer. (The exact 0.375 is off the grid.)"""
    oracle = fan_oracle()
    built = []

    def build(d: Decision) -> nn.Module:
        built.append(len(d.keep["a"]))
        return Fan(len(d.keep["a"])).eval()

    fit = search_knob(fan_keep, oracle.arch, oracle, 0.5, metric="latency", build=build,
                      grid=99)  # knobs 0.02, 0.03, ..., 1.0
    measured = [h for h in fit.history if "measured" in h]
    assert [h["knob"] for h in measured] == pytest.approx([0.50, 0.41, 0.38])
    assert [h["predicted"] for h in measured] == pytest.approx([0.50, 0.41, 0.38])
    assert [h["measured"] for h in measured] == pytest.approx([0.6, 0.528, 0.504])
    assert built == [50, 41, 38] and oracle.counts.measurements == 3
    assert fit.knob == pytest.approx(0.38) and fit.arch.widths[fit.arch.base.group_by_key["a"]] == 38


def test_an_anchored_latency_target_lands_at_the_anchors_latency():
    """The anchor: 60 channels, said to measure 0.4 of the original (its made-up clock says 68 / 100 us = 0.68, a
    machine state in which the original ran slow). On its scale a candidate of ``w`` channels measures
    ``0.4 * (20 + 0.8 w) / 68``; target 0.4. By hand: knob 0.40 measures 0.306; the log error log(0.306 / 0.40)
    corrects the FLOPs prediction to knob 0.52 (0.362), then 0.57 (0.386), then 0.59 (0.395, within 2.5%): 59
    channels, next to the anchor's 60. Unanchored the same target lands at 25 channels."""
    def build(d: Decision) -> nn.Module:
        return Fan(len(d.keep["a"])).eval()

    landed = {}
    for anchor in (Anchor(Fan(60).eval(), 0.4, "sixty"), None):
        oracle = fan_oracle(anchor)
        fit = search_knob(fan_keep, oracle.arch, oracle, 0.4, metric="latency", build=build, grid=99)
        landed[anchor is not None] = fit.arch.widths[fit.arch.base.group_by_key["a"]]
        measured = [h["measured"] for h in fit.history if "measured" in h]
        if anchor is not None:
            assert measured == pytest.approx([0.4 * (20 + 0.8 * w) / 68 for w in (40, 52, 57, 59)])
            assert oracle.describe()["anchor"] == {"name": "sixty", "ratio": 0.4}
            assert oracle.counts.measurements == 4  # the anchor is timed in every job but never counted
    assert landed == {True: 59, False: 25}
