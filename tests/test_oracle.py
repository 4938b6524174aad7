"""The latency oracle: ratios to the reference, caching by signature, counted measurements, modes and targets."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fakes import FakePredictor, FakeProfile

from latbench.arch import trace
from latbench.backends import get_backend
from latbench.measure import MeasureSettings
from latbench.models import build_model
from latbench.predictors import OutOfProfileError
from pruners.errors import PruningError
from pruners.oracle import ANCHOR, Anchor, Estimate, LatencyOracle, anchored
from pruners.surgery import Decision, apply, keep_first

EXAMPLE = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
FAST = MeasureSettings(target_rel_ci=0.05, budget_s=1.0)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    model = build_model("smallconv")
    return model, trace(model, EXAMPLE, "smallconv")


@pytest.fixture(scope="module")
def backend():
    return get_backend("onnxruntime", threads=1)


def oracle(net, profile=None, **kw) -> LatencyOracle:
    model, arch = net
    kw.setdefault("settings", FAST)
    return LatencyOracle(profile or FakeProfile(), model, arch, EXAMPLE, **kw)


def halved(arch):
    return Decision(keep_first({g.id: g.channels // 2 for g in arch.prunable_groups}))


class Builds:
    """A ``build`` callable that records how often it was asked for the module."""

    def __init__(self, make):
        self.make, self.calls = make, 0

    def __call__(self):
        self.calls += 1
        return self.make()


def test_predict_is_the_ratio_of_predictions(net):
    _, arch = net
    predictor = FakePredictor(rel_halfwidth=0.1)
    o = oracle(net, FakeProfile({"lut": predictor}), mode="predict")
    ref_us = predictor.latency_us(arch)
    assert o.reference_predicted_us == pytest.approx(ref_us)
    assert o.predict(arch).ratio == pytest.approx(1.0)
    cand = arch.with_widths({1: 4, 2: 8})
    est = o.predict(cand)
    want = predictor.latency_us(cand)
    assert est.source == "predicted"
    assert est.latency_us == pytest.approx(want)
    assert est.ratio == pytest.approx(want / ref_us)
    assert est.ratio < 1
    assert est.low == pytest.approx(want * 0.9 / ref_us)
    assert est.high == pytest.approx(want * 1.1 / ref_us)
    assert est.rel_halfwidth == pytest.approx(0.1)


class Refusing(FakePredictor):
    """Refuses, for the whole batch, any batch holding a candidate of fewer FLOPs than ``below``."""

    def __init__(self, below: float) -> None:
        super().__init__()
        self.below = below

    def predict_many(self, archs):
        if any(a.flops() < self.below for a in archs):
            raise OutOfProfileError("a degenerate candidate")
        return super().predict_many(archs)


def test_a_candidate_the_predictor_refuses_is_inf_and_the_rest_are_answered(net):
    _, arch = net
    tiny = arch.with_widths({g.id: 1 for g in arch.prunable_groups})
    half = arch.with_widths({g.id: g.channels // 2 for g in arch.prunable_groups})
    predictor = Refusing(below=(tiny.flops() + half.flops()) / 2)
    o = oracle(net, FakeProfile({"lut": predictor}), mode="predict")
    ref = predictor.latency_us(arch)
    ratios = o.predict_ratios([half, tiny, arch])
    assert ratios[0] == pytest.approx(predictor.latency_us(half) / ref)
    assert ratios[1] == np.inf
    assert ratios[2] == pytest.approx(1.0)
    assert o.counts.predictions == 3  # the retry one by one is not counted again


def test_predictions_are_cached_by_signature(net):
    _, arch = net
    predictor = FakePredictor()
    o = oracle(net, FakeProfile({"lut": predictor}), mode="predict")
    calls = predictor.calls
    first = o.predict(arch.with_widths({2: 8}))
    assert (o.counts.predictions, o.counts.cache_hits, predictor.calls) == (1, 0, calls + 1)
    again = o.predict(arch.with_widths({"features.1.0": 8}))  # another object, the same candidate
    assert again == first
    assert (o.counts.predictions, o.counts.cache_hits, predictor.calls) == (1, 1, calls + 1)
    o.predict(arch.with_widths({2: 9}))
    assert (o.counts.predictions, o.counts.cache_hits) == (2, 1)
    assert o.describe()["counts"]["predictions"] == 2


def test_measure_half_width_network_is_faster_and_cached(net, backend):
    model, arch = net
    profile = FakeProfile(backend=backend)
    o = oracle(net, profile, mode="measure")
    pruned, cand = apply(model, arch, halved(arch), EXAMPLE)
    est = o.measure(pruned, cand)
    assert est.source == "measured"
    assert est.ratio < 0.95
    assert est.low <= est.ratio <= est.high
    assert o.reference_measured_us is not None and o.reference_measured_us > 0
    assert est.latency_us == pytest.approx(est.ratio * o.reference_measured_us)
    assert o.counts.measurements == 1
    assert o.counts.measure_seconds > 0
    # the same candidate again, also as another Arch object: served from the cache, not measured again
    assert o.measure(pruned, cand) is est
    assert (o.counts.measurements, o.counts.cache_hits) == (1, 1)
    same = arch.with_widths({g.id: g.channels // 2 for g in arch.prunable_groups})
    assert o.ratio(same, lambda: pruned) is est
    assert (o.counts.measurements, o.counts.cache_hits) == (1, 2)


def test_cached_measurement_does_not_build_the_module_again(net):
    model, arch = net
    o = oracle(net, FakeProfile(backend=SimpleNamespace(name="onnxruntime")), mode="measure")
    cand = halved(arch).arch(arch)
    cached = Estimate(0.5, 10.0, 0.45, 0.55, "measured")
    o._measured[cand.signature()] = cached  # as if measured before (no device needed)
    build = Builds(lambda: apply(model, arch, halved(arch), EXAMPLE)[0])
    assert o.ratio(cand, build) is cached
    assert o.counts.cache_hits == 1
    assert build.calls == 0


def test_auto_measures_only_uncertain_candidates(net, backend):
    model, arch = net
    profile = FakeProfile({"tight": FakePredictor(rel_halfwidth=0.01), "loose": FakePredictor(rel_halfwidth=0.3)},
                          backend=backend)
    decision = halved(arch)
    cand = decision.arch(arch)

    sure = oracle(net, profile, predictor="tight", mode="auto", threshold=0.05)
    assert not sure.uncertain(cand)
    build = Builds(lambda: pytest.fail("a certain prediction must not be measured"))
    est = sure.ratio(cand, build)
    assert est.source == "predicted"
    assert (build.calls, sure.counts.measurements) == (0, 0)

    unsure = oracle(net, profile, predictor="loose", mode="auto", threshold=0.05)
    assert unsure.uncertain(cand)
    build = Builds(lambda: apply(model, arch, decision, EXAMPLE)[0])
    est = unsure.ratio(cand, build)
    assert est.source == "measured"
    assert (build.calls, unsure.counts.measurements) == (1, 1)
    # without a way to build the module, auto falls back to the prediction
    other = arch.with_widths({3: 16})
    assert unsure.ratio(other).source == "predicted"
    assert unsure.counts.measurements == 1


def test_predict_mode_never_measures(net):
    _, arch = net
    profile = FakeProfile({"lut": FakePredictor(rel_halfwidth=0.5)}, backend=SimpleNamespace(name="onnxruntime"))
    o = oracle(net, profile, mode="predict")
    build = Builds(lambda: pytest.fail("predict mode must not build"))
    assert o.uncertain(arch.with_widths({1: 2}))
    for width in (2, 4, 8):
        assert o.ratio(arch.with_widths({1: width}), build).source == "predicted"
    small = o.smallest()
    o.check_target(0.99, build_smallest=build)
    assert build.calls == 0
    assert o.counts.measurements == 0
    assert all(w == 1 for g, w in small.widths.items() if not arch.groups[g].fixed)


def test_backend_of_another_engine_is_refused(net):
    with pytest.raises(PruningError, match="prices backend 'onnxruntime', not 'torch'"):
        oracle(net, backend=SimpleNamespace(name="torch"))
    with pytest.raises(PruningError, match="prices backend 'tensorrt'"):
        oracle(net, FakeProfile(backend_name="tensorrt"), backend=get_backend("onnxruntime", threads=1))
    # the profile's own backend is used when none is given
    profile = FakeProfile(backend=SimpleNamespace(name="onnxruntime"))
    assert oracle(net, profile).backend_name == "onnxruntime"
    assert profile.backend_calls == 1


def test_unknown_mode_is_refused(net):
    with pytest.raises(PruningError, match="unknown oracle mode 'fastest'"):
        oracle(net, FakeProfile(backend=SimpleNamespace(name="onnxruntime")), mode="fastest")


def test_check_target(net):
    _, arch = net
    predictor = FakePredictor(const_us=20.0, us_per_mflop=2.0)
    o = oracle(net, FakeProfile({"lut": predictor}, backend=SimpleNamespace(name="onnxruntime")), mode="predict")
    floor = predictor.latency_us(o.smallest()) / predictor.latency_us(arch)
    assert 0.05 < floor < 0.9
    for bad in (0.0, -0.5, 1.01, 2.0):
        with pytest.raises(PruningError, match=r"in \(0, 1\]"):
            o.check_target(bad)
    assert o.check_target(1.0) == pytest.approx(floor)
    assert o.check_target(floor * 1.01) == pytest.approx(floor)
    with pytest.raises(PruningError) as info:
        o.check_target(floor * 0.9)
    message = str(info.value)
    assert f"floor {floor:.3f}" in message
    assert "predicted" in message and "fake-profile" in message
    assert "\n" not in message


def test_anchored_ratios_are_put_on_the_anchors_scale():
    ratios = {"a": (0.3, 0.27, 0.33), "b": (0.6, 0.57, 0.66), ANCHOR: (0.4, 0.39, 0.41)}
    on_scale = anchored(ratios, Anchor(torch.nn.Identity(), 0.5))
    # by hand: scale 0.5 / 0.4 = 1.25
    assert on_scale == {"a": pytest.approx((0.375, 0.3375, 0.4125)), "b": pytest.approx((0.75, 0.7125, 0.825))}
    assert anchored(ratios, None) is ratios
    with pytest.raises(PruningError, match="anchor's latency ratio must be positive"):
        Anchor(torch.nn.Identity(), 0.0)


def test_a_network_measured_against_itself_as_anchor_measures_the_anchors_ratio(net, backend):
    """On ONNX Runtime: the half-width network, anchored to a copy of itself said to measure 0.9, measures 0.9
    within the noise of two identical networks (its own ratio to the original is well under 0.9). The anchored
    run gets 3 s and a 2% interval: with 1 s, two identical networks read 7% apart while other work loaded the
    machine."""
    model, arch = net
    pruned, cand = apply(model, arch, halved(arch), EXAMPLE)
    plain = oracle(net, FakeProfile(backend=backend), mode="measure").measure(pruned, cand)
    on_anchor = oracle(net, FakeProfile(backend=backend), mode="measure", anchor=Anchor(copy.deepcopy(pruned), 0.9),
                       settings=MeasureSettings(target_rel_ci=0.02, budget_s=3.0)).measure(pruned, cand)
    assert plain.ratio < 0.8
    assert on_anchor.ratio == pytest.approx(0.9, rel=0.05)
