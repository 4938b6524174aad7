"""SP-LAMP: chunked menus, the iterated knapsack selection, the measured-budget loop and both schedules."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from fakes import FakePredictor, FakeProfile
from nets import seeded, with_groups
from torch import nn

from latbench.arch import Arch
from pruners.errors import PruningError
from pruners.groups import ChannelGroup
from pruners.oracle import LatencyOracle
from pruners.splamp import (
    Menu,
    chunk_widths,
    decision_of,
    menus,
    profile_group_size,
    search_budget,
    select,
    splamp,
)
from pruners.surgery import Decision, apply

EXAMPLE = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def resnet20():
    return with_groups(seeded("resnet20"), EXAMPLE, "resnet20")


class TableOracle:
    """Predicted ratio ``sum_g table[g][width_g]`` (plus ``pair * w_a * w_b`` for coupled pairs)."""

    def __init__(self, table: dict[int, dict[int, float]], pairs: dict[tuple[int, int], float] | None = None):
        self.table, self.pairs, self.calls = table, pairs or {}, 0

    def ratio(self, arch: Arch) -> float:
        w = arch.width_tuple
        own = sum(t[w[g]] for g, t in self.table.items())
        return own + sum(c * w[a] * w[b] for (a, b), c in self.pairs.items())

    def predict_ratios(self, archs: list[Arch]) -> np.ndarray:
        self.calls += len(archs)
        return np.array([self.ratio(a) for a in archs])


# --- menus ------------------------------------------------------------------------------------------------------
def test_chunk_widths():
    assert chunk_widths(64, 16) == (16, 32, 48, 64)
    assert chunk_widths(16, 16) == (4, 8, 12, 16)  # narrower than 4 chunks: cut into 4
    assert chunk_widths(16, 16, min_choices=1) == (16,)
    assert chunk_widths(20, 8, min_choices=1) == (8, 16, 20)  # the last chunk is what is left
    assert chunk_widths(3, 8) == (1, 2, 3)
    with pytest.raises(PruningError, match="at least 1"):
        chunk_widths(16, 0)


def test_menu_ranks_channels_and_sums_scores_by_hand():
    coupled = ChannelGroup(7, "stage", 4, ("a", "b", "c"), (), ())
    single = ChannelGroup(8, "conv", 4, ("d",), (), ())
    scores = {7: torch.tensor([0.2, 1.0, 0.5, 0.2]), 8: torch.tensor([0.1, 0.3, 1.0, 0.6])}
    m7, m8 = menus([coupled, single], scores, size=2, min_choices=1)
    assert m7.order == (1, 2, 0, 3)  # tie between channels 0 and 3: the lower index ranks first
    assert m7.widths == (2, 4)
    assert m7.values == pytest.approx((3 * 1.5, 3 * 1.9))  # three writers: counted once per layer
    assert m8.values == pytest.approx((1.6, 2.0))
    assert m7.keep(2) == (1, 2) and m8.keep(2) == (2, 3)
    plain = menus([coupled], scores, size=2, min_choices=1, per_writer=False)[0]
    assert plain.values == pytest.approx((1.5, 1.9))
    d = decision_of([m7, m8], {7: 2, 8: 4})
    assert d.keep == {7: (1, 2)}  # a group kept whole is not named


def test_profile_group_size_reads_the_latency_step():
    assert profile_group_size(SimpleNamespace(meta={"plan": {"step": 16}})) == 16
    assert profile_group_size(SimpleNamespace(meta={"settings": {}})) == 8


# --- selection ----------------------------------------------------------------------------------------------------
def _menus_for(arch: Arch, gids: list[int], values: dict[int, list[float]], widths: dict[int, tuple[int, ...]]):
    out = []
    for gid in gids:
        g = arch.groups[gid]
        group = ChannelGroup(gid, g.name, arch.width_tuple[gid], ("w",), (), ())
        out.append(Menu(group, tuple(range(group.channels)), widths[gid], tuple(values[gid])))
    return out


def _brute(menu: list[Menu], arch: Arch, oracle: TableOracle, budget: float) -> tuple[float, dict[int, int]]:
    best = (-np.inf, {})
    for combo in itertools.product(*(range(len(m.widths)) for m in menu)):
        widths = {m.group.id: m.widths[j] for m, j in zip(menu, combo, strict=True)}
        if oracle.ratio(arch.with_widths(widths)) <= budget + 1e-12:
            value = sum(m.values[j] for m, j in zip(menu, combo, strict=True))
            best = max(best, (value, widths), key=lambda t: t[0])
    return best


@pytest.mark.parametrize("seed", range(6))
def test_select_is_optimal_when_latency_is_separable(resnet20, seed):
    _, arch, groups = resnet20
    rng = np.random.default_rng(seed)
    gids = [g.id for g in groups[:5]]
    widths = {gid: chunk_widths(arch.width_tuple[gid], 4 if arch.width_tuple[gid] == 16 else 8) for gid in gids}
    # staircase-like costs, not monotone: a narrower choice may cost more (negative deltas in the knapsack)
    table = {gid: {w: float(rng.uniform(0.01, 0.2)) for w in widths[gid]} for gid in gids}
    for gid in gids:
        table[gid][arch.width_tuple[gid]] = 0.2
    values = {gid: sorted(rng.uniform(0, 1, len(widths[gid])).cumsum()) for gid in gids}
    menu = _menus_for(arch, gids, values, widths)
    oracle = TableOracle(table)
    full = oracle.ratio(arch)
    budget = full * 0.6
    sel = select(menu, arch, oracle, budget)
    want_value, _ = _brute(menu, arch, oracle, budget)
    assert sel.predicted <= budget
    assert sel.value == pytest.approx(want_value)
    assert sel.predicted == pytest.approx(oracle.ratio(arch.with_widths(sel.widths)))


def test_select_resolves_in_out_coupling_to_a_feasible_stable_selection(resnet20):
    _, arch, groups = resnet20
    gids = [g.id for g in groups[:4]]
    widths = {gid: chunk_widths(arch.width_tuple[gid], 4) for gid in gids}
    table = {gid: dict.fromkeys(widths[gid], 0.0) for gid in gids}
    pairs = {(gids[0], gids[1]): 1 / 256, (gids[1], gids[2]): 1 / 256, (gids[2], gids[3]): 1 / 256}
    oracle = TableOracle(table, pairs)  # bilinear: each layer costs c_in * c_out
    values = {gid: list(np.log1p(np.array(widths[gid], dtype=float))) for gid in gids}
    menu = _menus_for(arch, gids, values, widths)
    budget = 0.4 * oracle.ratio(arch)
    sel = select(menu, arch, oracle, budget)
    assert sel.predicted <= budget
    assert sel.rounds[0]["linearised_at"] == pytest.approx(oracle.ratio(arch))
    assert len(sel.rounds) >= 2  # the first linearisation (at full width) overestimates what cutting both sides saves
    assert sel.rounds[-1]["changed"] == 0 or len(sel.rounds) == 12
    best, _ = _brute(menu, arch, oracle, budget)
    assert sel.value >= 0.9 * best  # a local optimum of the coupled problem, close to the global one here


def test_select_lowers_the_knapsack_budget_when_its_rounds_run_out_above_the_budget(resnet20):
    """Out of rounds with every selection over the budget, the knapsack is asked for less until one fits,
    instead of answering with the smallest selection."""
    _, arch, groups = resnet20
    gids = [g.id for g in groups[:4]]
    widths = {gid: chunk_widths(arch.width_tuple[gid], 4) for gid in gids}
    table = {gid: dict.fromkeys(widths[gid], 0.0) for gid in gids}
    pairs = {(gids[0], gids[1]): 1 / 256, (gids[1], gids[2]): 1 / 256, (gids[2], gids[3]): 1 / 256}
    oracle = TableOracle(table, pairs)
    values = {gid: list(np.log1p(np.array(widths[gid], dtype=float))) for gid in gids}
    menu = _menus_for(arch, gids, values, widths)
    budget = 0.3 * oracle.ratio(arch)
    sel = select(menu, arch, oracle, budget, max_rounds=1)
    assert sel.rounds[0]["predicted"] > budget  # the one allowed round overshoots (linearised at full width)
    assert sel.rounds[1]["knapsack_budget"] == pytest.approx(budget - (sel.rounds[0]["predicted"] - budget))
    assert sel.predicted <= budget
    smallest = sum(m.values[0] for m in menu)
    best, _ = _brute(menu, arch, oracle, budget)
    assert sel.value > smallest and sel.value >= 0.9 * best


def test_select_refuses_a_budget_below_its_reach(resnet20):
    _, arch, groups = resnet20
    gid = groups[0].id
    widths = {gid: (8, 16)}
    menu = _menus_for(arch, [gid], {gid: [1.0, 2.0]}, widths)
    oracle = TableOracle({gid: {8: 0.5, 16: 1.0}})
    with pytest.raises(PruningError, match=r"below what SP-LAMP reaches here.*0\.500"):
        select(menu, arch, oracle, 0.3)


# --- the measured budget ------------------------------------------------------------------------------------------
def test_fit_budget_corrects_a_biased_prediction_by_measurements(resnet20):
    _, arch, groups = resnet20
    gid = groups[-1].id
    measured_budgets = []

    def choose(b: float):  # a continuum of candidates: the width follows the budget
        w = max(1, round(b * arch.width_tuple[gid]))
        cand = arch.with_widths({gid: w})
        return Decision({gid: tuple(range(w))}), cand, w / arch.width_tuple[gid]

    def measure(module, cand):
        measured_budgets.append(cand.width_tuple[gid])
        return SimpleNamespace(ratio=0.7 * cand.width_tuple[gid] / arch.width_tuple[gid])  # 30% faster than predicted

    oracle = SimpleNamespace(mode="auto", measure=measure)
    b, _, _, history = search_budget(choose, oracle, 0.5, build=lambda d: None, floor=0.05)
    measured = [h["measured"] for h in history]
    assert abs(measured[-1] / 0.5 - 1) <= 0.025
    assert len(measured) <= 3 and b == pytest.approx(0.5 / 0.7, abs=0.02)
    predict_only = SimpleNamespace(mode="predict", measure=None)
    b, _, _, history = search_budget(choose, predict_only, 0.5, build=lambda d: None, floor=0.05)
    assert b == 0.5 and "measured" not in history[0]


def test_fit_budget_refuses_a_target_it_cannot_reach(resnet20):
    _, arch, groups = resnet20
    gid = groups[-1].id

    def choose(b: float):
        cand = arch.with_widths({gid: 16})
        return Decision({gid: tuple(range(16))}), cand, 0.5

    oracle = SimpleNamespace(mode="auto", measure=lambda m, a: SimpleNamespace(ratio=0.9))
    with pytest.raises(PruningError, match=r"out of SP-LAMP's reach.*measures 0\.900"):
        search_budget(choose, oracle, 0.3, build=lambda d: None, floor=0.5)
    with pytest.raises(PruningError, match=r"out of SP-LAMP's reach.*predicted at 0\.500"):
        search_budget(choose, SimpleNamespace(mode="predict"), 0.3, build=None, floor=0.5)
    assert search_budget(choose, SimpleNamespace(mode="predict"), 0.49, build=None, floor=0.5)[0] == 0.5  # within 5%


# --- the method ---------------------------------------------------------------------------------------------------
def _oracle(model: nn.Module, arch: Arch) -> LatencyOracle:
    profile = FakeProfile({"lut": FakePredictor(const_us=50.0, us_per_mflop=10.0)},
                          backend=SimpleNamespace(name="onnxruntime"))
    profile.meta["plan"] = {"step": 8}
    return LatencyOracle(profile, model, arch, EXAMPLE, mode="predict")


def test_splamp_one_shot_meets_the_predicted_target_and_keeps_top_lamp_channels(resnet20):
    model, arch, groups = resnet20
    oracle = _oracle(model, arch)
    fit = splamp(model, arch, groups, EXAMPLE, oracle, 0.5)
    assert oracle.predict(fit.arch).ratio <= 0.5
    assert fit.model is None and fit.knob == 0.5
    from pruners.importance import score

    lamp = score(model, groups, "lamp")
    for gid, kept in fit.decision.resolved(arch).items():
        top = torch.argsort(lamp[gid], descending=True, stable=True)[: len(kept)]
        assert sorted(top.tolist()) == list(kept)
        assert len(kept) % 8 == 0 or len(kept) % (arch.width_tuple[gid] // 4) == 0  # whole chunks
    _, pruned_arch = apply(model, arch, fit.decision, EXAMPLE)
    assert pruned_arch.effective() == fit.arch.effective()


def test_splamp_iterative_composes_decisions_onto_the_original_channels(resnet20):
    model, arch, groups = resnet20
    oracle = _oracle(model, arch)
    steps_seen = []
    fit = splamp(model, arch, groups, EXAMPLE, oracle, 0.45, steps=3,
                 fine_tune=lambda module, step: steps_seen.append(step))
    assert steps_seen == [1, 2]
    assert [h["step"] for h in fit.history if "rounds" in h][:2] == [1, 2]
    assert oracle.predict(fit.arch).ratio <= 0.45
    # without training between steps, the composed decision applied to the original is the same network
    rebuilt, _ = apply(model, arch, fit.decision, EXAMPLE)
    assert fit.model is not None
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(EXAMPLE), fit.model(EXAMPLE))
    assert set(fit.decision.keep) <= {g.name for g in groups}


def test_splamp_refuses_bad_settings(resnet20):
    model, arch, groups = resnet20
    oracle = _oracle(model, arch)
    with pytest.raises(PruningError, match="latency target"):
        splamp(model, arch, groups, EXAMPLE, oracle, 0.5, metric="flops")
    with pytest.raises(PruningError, match="fine-tuning function"):
        splamp(model, arch, groups, EXAMPLE, oracle, 0.5, steps=2)
    with pytest.raises(PruningError, match="needs a latency oracle"):
        splamp(model, arch, groups, EXAMPLE, None, 0.5)
