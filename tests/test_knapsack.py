"""Multiple-choice knapsack: DP vs brute force, bounds, negative costs/values, infeasibility, input errors."""

from __future__ import annotations

import math
import random

import pytest

from pruners.errors import PruningError
from pruners.knapsack import brute_force, solve


def _instance(rng: random.Random, integer: bool) -> tuple[list[list[float]], list[list[float]], float]:
    n = rng.randint(1, 5)
    ks = [rng.randint(1, 5) for _ in range(n)]
    if integer:
        costs = [[float(rng.randint(-5, 20)) for _ in range(k)] for k in ks]
    else:
        costs = [[rng.uniform(-5, 20) for _ in range(k)] for k in ks]
    values = [[float(rng.randint(-3, 10)) for _ in range(k)] for k in ks]
    lo = sum(min(c) for c in costs)
    hi = sum(max(c) for c in costs)
    budget = rng.uniform(lo - 5, hi + 2)
    if integer:
        budget = float(round(budget))
    return values, costs, budget


@pytest.mark.parametrize("resolution", [1.0, 0.5])
def test_matches_brute_force_on_integer_costs(resolution: float) -> None:
    rng = random.Random(1234)
    n_infeasible = 0
    for _ in range(200):
        values, costs, budget = _instance(rng, integer=True)
        exact = brute_force(values, costs, budget)
        sol = solve(values, costs, budget, resolution=resolution)
        assert sol.feasible == exact.feasible
        if not exact.feasible:
            n_infeasible += 1
            continue
        assert sol.cost <= budget
        assert sol.value == exact.value
        assert sol.gap == 0.0
        assert sol.upper_bound == exact.value
        assert sol.value == sum(values[i][j] for i, j in enumerate(sol.choice))
        assert sol.cost == sum(costs[i][j] for i, j in enumerate(sol.choice))
    assert 0 < n_infeasible < 100  # the generator covers both cases


def test_float_costs_bounds_and_gap_shrinks() -> None:
    rng = random.Random(99)
    gaps = {50: [], 4000: []}
    for _ in range(150):
        values, costs, budget = _instance(rng, integer=False)
        exact = brute_force(values, costs, budget)
        for bins in gaps:
            sol = solve(values, costs, budget, bins=bins)
            assert sol.feasible == exact.feasible
            if not exact.feasible:
                continue
            assert sol.cost <= budget + 1e-9
            assert sol.value <= exact.value + 1e-9
            assert exact.value <= sol.upper_bound + 1e-9
            assert sol.gap == pytest.approx(sol.upper_bound - sol.value) and sol.gap >= 0
            gaps[bins].append(sol.gap)
    assert len(gaps[50]) > 50
    assert sum(gaps[4000]) / len(gaps[4000]) <= sum(gaps[50]) / len(gaps[50])
    assert sum(gaps[4000]) < sum(gaps[50])  # coarse bins do lose something on these instances


def test_negative_cost_staircase_choice_needed() -> None:
    # layer 0: keeping more (index 2) is *cheaper* than index 1 and even than index 0 (a latency plateau)
    values = [[0.0, 1.0, 3.0], [0.0, 2.0]]
    costs = [[0.0, 4.0, -1.0], [0.0, 2.0]]
    sol = solve(values, costs, budget=1.0, resolution=0.5)
    assert sol.choice == (2, 1)
    assert (sol.value, sol.cost, sol.feasible, sol.gap) == (5.0, 1.0, True, 0.0)
    assert sol == solve(values, costs, budget=1.0, resolution=0.5)  # deterministic
    assert brute_force(values, costs, 1.0).choice == (2, 1)


def test_zero_and_negative_values() -> None:
    costs = [[1.0, 2.0, 3.0], [0.5, 0.25]]
    zeros = solve([[0.0, 0.0, 0.0], [0.0, 0.0]], costs, budget=10.0)
    assert zeros.choice == (0, 1)  # all ties: the cheapest choices
    assert zeros.value == 0.0
    negative = solve([[-5.0, -1.0, -2.0], [-3.0, -4.0]], costs, budget=10.0)
    assert negative.choice == (1, 0)
    assert negative.value == -4.0
    # budget exactly at the cheapest total: only the zero-shifted-cost choices remain (budget' == 0)
    tight = solve([[1.0, 9.0, 9.0], [1.0, 9.0]], costs, budget=1.25)
    assert tight.choice == (0, 1) and tight.feasible and tight.gap == 0.0


def test_tie_prefers_lower_cost_then_lower_index() -> None:
    sol = solve([[2.0, 2.0, 2.0]], [[3.0, 1.0, 1.0]], budget=5.0, resolution=1.0)
    assert sol.choice == (1,)


def test_infeasible_budget_returns_min_cost_choice() -> None:
    values = [[5.0, 1.0, 2.0], [0.0, 7.0]]
    costs = [[4.0, 2.0, 3.0], [-1.0, 1.0]]
    sol = solve(values, costs, budget=0.5)
    assert not sol.feasible
    assert sol.choice == (1, 0)
    assert sol.cost == 1.0 and sol.value == 1.0
    assert sol.upper_bound == -math.inf
    assert brute_force(values, costs, 0.5).choice == (1, 0)


@pytest.mark.parametrize(
    ("values", "costs", "kwargs"),
    [
        ([[1.0, 2.0]], [[1.0]], {}),  # mismatched choice counts
        ([[1.0], [2.0]], [[1.0]], {}),  # mismatched layer counts
        ([[]], [[]], {}),  # a layer with no choices
        ([], [], {}),  # no layers
        ([[1.0, [2.0]]], [[1.0, 2.0]], {}),  # ragged
        ([[float("nan")]], [[1.0]], {}),
        ([[1.0]], [[float("nan")]], {}),
        ([[1.0]], [[1.0]], {"resolution": 0.0}),
        ([[1.0]], [[1.0]], {"resolution": -1.0}),
        ([[1.0]], [[1.0]], {"bins": 0}),
        ([[1.0]], [[1.0]], {"budget": float("nan")}),
    ],
)
def test_input_errors(values: list, costs: list, kwargs: dict) -> None:
    kwargs = {"budget": 5.0, **kwargs}
    with pytest.raises(PruningError) as info:
        solve(values, costs, **kwargs)
    assert "\n" not in str(info.value)
