"""Layer samples measured in groups with the reference layer: paired estimates, rows, grouping."""

from __future__ import annotations

import pytest
from fakes import FakeClock, FakeTimer

from latbench.arch.spec import LayerSpec
from latbench.backends.base import Runnable
from latbench.profiler.layer_group import GROUP_SIZE, layer_groups, measure_group
from latbench.profiler.run import LAYER_SETTINGS

REFERENCE = LayerSpec("conv", 16, 16, (3, 3), (1, 1), (1, 1), in_hw=(8, 8))
TRUE_US = {16: 100.0, 24: 50.0, 32: 120.0, 48: 300.0}  # by output channels: the reference and three layers
SLOW = 1.6  # the machine's slow mode: every layer alike
PHASE_S = 0.2  # fast and slow phases alternate every 0.2 s


class PhasedBackend:
    """Deployed layers take ``TRUE_US[out_channels]``, times ``SLOW`` while the (fake) machine is in a slow phase."""

    def __init__(self) -> None:
        self.clock = FakeClock()

    def deploy(self, module, example):
        us = TRUE_US[next(m for m in module.modules() if hasattr(m, "out_channels")).out_channels]
        slow = lambda: SLOW if int(self.clock.t / PHASE_S) % 2 else 1.0  # noqa: E731
        return Runnable(lambda: None, timer=FakeTimer(self.clock, lambda _: us * slow()))


def test_a_group_pairs_each_layer_with_the_reference_so_the_machines_phases_cancel():
    backend = PhasedBackend()
    specs = [LayerSpec("conv", 16, c, (3, 3), (1, 1), (1, 1), in_hw=(8, 8)) for c in (24, 32, 48)]
    ref, rows = measure_group(backend, REFERENCE, specs, LAYER_SETTINGS, clock=backend.clock)
    assert backend.clock.t > 2 * PHASE_S  # the group ran through fast and slow phases
    assert TRUE_US[16] <= ref["median_us"] <= TRUE_US[16] * SLOW  # some mix of the two modes
    for spec, row in zip(specs, rows, strict=True):
        truth = TRUE_US[spec.out_channels] / TRUE_US[16]
        assert row["median_us"] / ref["median_us"] == pytest.approx(truth, rel=1e-6)
        assert row["ci_low_us"] <= row["median_us"] <= row["ci_high_us"]
        assert row["p90_us"] >= row["median_us"] * 0.99 and row["runs"] > 0 and row["wall_s"] == ref["wall_s"]


def test_groups_keep_order_never_span_passes_and_hold_at_most_the_group_size():
    items = [(i, 1) for i in range(45)] + [(i, 2) for i in range(45, 50)] + [(i, 1000) for i in range(50, 53)]
    groups = layer_groups(items)
    assert [item for g in groups for item in g] == items
    assert all(len(g) <= GROUP_SIZE and len({p for _, p in g}) == 1 for g in groups)
    assert [len(g) for g in groups] == [20, 20, 5, 5, 3]
