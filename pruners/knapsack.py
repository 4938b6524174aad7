"""Multiple-choice (group) knapsack for latency-constrained pruning (SP-LAMP, à la NVIDIA HALP).

Problem: ``n`` layers; layer ``i`` offers ``k_i`` choices (e.g. how many channel groups it keeps); choice ``j``
has a value ``v[i][j]`` and a latency cost ``c[i][j]`` (any real numbers: latency staircases make a smaller
choice cost more, and costs may be deltas, so negative values are fine). Pick exactly one choice per layer,
maximising the total value subject to ``total cost <= budget``.

Method: exact dynamic programming over a discretised cost axis.

1. Each layer's costs are shifted by their minimum, ``c'[i][j] = c[i][j] - min_j c[i][j] >= 0``, and the budget
   by the sum of the minima, ``B' = budget - sum_i min_j c[i][j]``. If ``B' < 0`` no choice is feasible and the
   minimum-cost choice is returned with ``feasible=False``.
2. The axis ``[0, B']`` is cut into bins of ``resolution`` cost units (default ``B' / bins``); the DP keeps, per
   bin, the best value reachable with exactly that binned cost (``-inf`` where unreachable) and, per layer, the
   argmax choice of every bin for backtracking. Each layer is one vectorised pass: for each choice a shifted
   copy of the previous array plus the choice's value, merged with ``np.maximum``-style updates.
3. The DP runs twice. (a) Costs rounded UP to whole bins: every solution it finds has true cost
   ``<= capacity * resolution <= budget``, so the returned choice is always feasible (conservative).
   (b) Costs rounded DOWN: it relaxes the problem, so its optimum is an upper bound on the true optimum.

Guarantees: the returned choice is feasible whenever any choice is (the all-minimum choice has binned cost 0);
``value <= true optimum <= upper_bound``; ``gap = upper_bound - value`` bounds what discretisation may have
cost, and it is 0 when every shifted cost is a whole multiple of ``resolution`` (e.g. integer costs with
``resolution=1``), in which case the result is exactly optimal. Time and memory are ``O(sum_i k_i * bins)``
and ``O(n * bins)``. Ties are broken deterministically: per layer, the choice with the lower cost, then the
lower index, wins a bin; across bins, the lowest total binned cost wins.

Float noise: binned costs within ``1e-9`` (relative) of a whole bin are snapped to it, and ``feasible`` allows a
relative slack of ``1e-9`` of the cost magnitudes, so exact ties at the budget are not lost to rounding.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pruners.errors import PruningError

MAX_BINS = 10_000_000  # largest DP axis accepted (memory is n * MAX_BINS ints)
MAX_BRUTE_FORCE = 5_000_000  # most combinations brute_force enumerates
_SNAP = 1e-9


@dataclass(frozen=True)
class Solution:
    """One choice per layer and what it achieves.

    ``upper_bound`` is the optimum of the floor-rounded DP (an upper bound on the true optimum; ``-inf`` when
    nothing is feasible); ``gap = upper_bound - value >= 0`` (0 when nothing is feasible or the solution is
    exact); ``resolution`` is the cost per DP bin (0 for :func:`brute_force`).
    """

    choice: tuple[int, ...]
    value: float
    cost: float
    feasible: bool
    upper_bound: float
    gap: float
    resolution: float


def _validate(values: Sequence[Sequence[float]], costs: Sequence[Sequence[float]],
              budget: float) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Arrays per layer (float64, 1-D, finite, same shapes) or a one-line :class:`PruningError`."""
    try:
        n_v, n_c = len(values), len(costs)
    except TypeError as exc:
        raise PruningError(f"knapsack values and costs must be sequences of sequences ({exc})") from None
    if n_v != n_c:
        raise PruningError(f"knapsack values have {n_v} layers but costs have {n_c}")
    if n_v == 0:
        raise PruningError("knapsack needs at least one layer")
    try:
        budget = float(budget)
    except (TypeError, ValueError):
        raise PruningError(f"knapsack budget must be a number, got {budget!r}") from None
    if not math.isfinite(budget):
        raise PruningError(f"knapsack budget must be finite, got {budget}")
    vs, cs = [], []
    for i, (v, c) in enumerate(zip(values, costs, strict=True)):
        try:
            va, ca = np.asarray(v, dtype=np.float64), np.asarray(c, dtype=np.float64)
        except (TypeError, ValueError):
            raise PruningError(f"knapsack layer {i}: values and costs must be flat lists of numbers") from None
        if va.ndim != 1 or ca.ndim != 1:
            raise PruningError(f"knapsack layer {i}: values and costs must be flat lists of numbers")
        if va.size == 0 or ca.size == 0:
            raise PruningError(f"knapsack layer {i} has no choices")
        if va.size != ca.size:
            raise PruningError(f"knapsack layer {i} has {va.size} values but {ca.size} costs")
        if not (np.isfinite(va).all() and np.isfinite(ca).all()):
            raise PruningError(f"knapsack layer {i} has a NaN or infinite value or cost")
        vs.append(va)
        cs.append(ca)
    return vs, cs, budget


def _tolerance(costs: list[np.ndarray], budget: float) -> float:
    """Absolute slack for ``cost <= budget`` comparisons: float noise of summing these costs."""
    scale = max(1.0, abs(budget), sum(float(np.abs(c).max()) for c in costs))
    return 1e-9 * scale


def _evaluate(vs: list[np.ndarray], cs: list[np.ndarray], choice: Sequence[int]) -> tuple[float, float]:
    """Exact total value and cost of ``choice`` (summed in layer order)."""
    value = math.fsum(float(v[j]) for v, j in zip(vs, choice, strict=True))
    cost = math.fsum(float(c[j]) for c, j in zip(cs, choice, strict=True))
    return value, cost


def _min_cost_choice(vs: list[np.ndarray], cs: list[np.ndarray]) -> tuple[int, ...]:
    """Per layer the cheapest choice; among equally cheap ones the highest value, then the lowest index."""
    return tuple(int(np.lexsort((np.arange(c.size), -v, c))[0]) for v, c in zip(vs, cs, strict=True))


def _snap(x: np.ndarray) -> np.ndarray:
    """``x`` with entries within float noise of an integer set to that integer."""
    r = np.round(x)
    return np.where(np.abs(x - r) <= _SNAP * np.maximum(1.0, np.abs(x)), r, x)


def _dp(vs: list[np.ndarray], weights: list[np.ndarray], orders: list[np.ndarray],
        capacity: int) -> tuple[np.ndarray, np.ndarray]:
    """Best value per exact binned cost ``0..capacity`` after all layers, and the per-layer argmax table."""
    dp = np.full(capacity + 1, -np.inf)
    dp[0] = 0.0
    arg = np.full((len(vs), capacity + 1), -1, dtype=np.int32)
    for i, (v, w, order) in enumerate(zip(vs, weights, orders, strict=True)):
        new = np.full(capacity + 1, -np.inf)
        row = arg[i]
        for j in order:  # cheapest first, so a strictly-greater test keeps the cheaper / lower index on ties
            wj = int(w[j])
            if wj > capacity:
                continue
            cand = dp[: capacity + 1 - wj] + v[j]
            seg = new[wj:]
            better = cand > seg
            np.copyto(seg, cand, where=better)
            row[wj:][better] = j
        dp = new
    return dp, arg


def solve(values: Sequence[Sequence[float]], costs: Sequence[Sequence[float]], budget: float,
          resolution: float | None = None, bins: int = 2000) -> Solution:
    """Best choice per layer with total cost ``<= budget`` (see the module docstring for method and guarantees).

    ``resolution`` is the cost per DP bin; by default the shifted budget split into ``bins`` bins. Raises
    :class:`PruningError` for malformed input, a non-positive resolution or bin count, or a DP axis longer
    than ``MAX_BINS``.
    """
    vs, cs, budget = _validate(values, costs, budget)
    tol = _tolerance(cs, budget)
    mins = [float(c.min()) for c in cs]
    shifted_budget = budget - math.fsum(mins)
    if shifted_budget < -tol:
        choice = _min_cost_choice(vs, cs)
        value, cost = _evaluate(vs, cs, choice)
        res = float(resolution) if resolution is not None else 0.0
        return Solution(choice, value, cost, False, -math.inf, 0.0, res)
    shifted_budget = max(shifted_budget, 0.0)
    if resolution is None:
        if not isinstance(bins, (int, np.integer)) or bins < 1:
            raise PruningError(f"knapsack bins must be a positive integer, got {bins!r}")
        resolution = shifted_budget / bins if shifted_budget > 0 else 1.0
    resolution = float(resolution)
    if not (math.isfinite(resolution) and resolution > 0):
        raise PruningError(f"knapsack resolution must be a positive finite number, got {resolution}")
    capacity_f = float(_snap(np.array([shifted_budget / resolution]))[0])
    if capacity_f > MAX_BINS:
        raise PruningError(f"knapsack resolution {resolution:g} gives {capacity_f:.0f} bins (> {MAX_BINS}); "
                           "use a coarser one")
    capacity = math.floor(capacity_f)

    scaled = [_snap((c - m) / resolution) for c, m in zip(cs, mins, strict=True)]
    up = [np.ceil(s).astype(np.int64) for s in scaled]
    down = [np.floor(s).astype(np.int64) for s in scaled]
    orders = [np.lexsort((np.arange(c.size), c)) for c in cs]

    dp_up, arg = _dp(vs, up, orders, capacity)
    b = int(np.argmax(dp_up))  # first maximum: lowest total binned cost
    choice = [0] * len(vs)
    for i in range(len(vs) - 1, -1, -1):
        j = int(arg[i, b])
        choice[i] = j
        b -= int(up[i][j])
    dp_down, _ = _dp(vs, down, orders, capacity)
    value, cost = _evaluate(vs, cs, choice)
    ub = max(float(dp_down.max()), value)  # the floor DP relaxes the ceil DP; max() only absorbs float noise
    return Solution(tuple(choice), value, cost, cost <= budget + tol, ub, ub - value, resolution)


def brute_force(values: Sequence[Sequence[float]], costs: Sequence[Sequence[float]], budget: float) -> Solution:
    """Exact optimum by enumerating every combination (for tests and tiny instances).

    Ties: the lower total cost, then the lexicographically lowest choice. With nothing feasible, the
    minimum-cost choice with ``feasible=False``. Raises :class:`PruningError` beyond ``MAX_BRUTE_FORCE``
    combinations.
    """
    vs, cs, budget = _validate(values, costs, budget)
    combos = math.prod(v.size for v in vs)
    if combos > MAX_BRUTE_FORCE:
        raise PruningError(f"brute force would enumerate {combos} combinations (> {MAX_BRUTE_FORCE})")
    tol = _tolerance(cs, budget)
    best: tuple[tuple[int, ...], float, float] | None = None
    for choice in itertools.product(*(range(v.size) for v in vs)):
        value, cost = _evaluate(vs, cs, choice)
        if cost > budget + tol:
            continue
        if best is None or value > best[1] or (value == best[1] and cost < best[2]):
            best = (choice, value, cost)
    if best is None:
        choice = _min_cost_choice(vs, cs)
        value, cost = _evaluate(vs, cs, choice)
        return Solution(choice, value, cost, False, -math.inf, 0.0, 0.0)
    return Solution(best[0], best[1], best[2], True, best[1], 0.0, 0.0)
