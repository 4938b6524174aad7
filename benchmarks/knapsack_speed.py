"""How fast is the multiple-choice knapsack DP (pruners.knapsack.solve), and how close to optimal?

ResNet-50-sized instances: 50 layers x 64 choices, values increasing with the kept count (sorted cumulative
LAMP-like scores), costs roughly increasing along a latency staircase with noise (some negative deltas),
budget = 50% of the max-cost total, 2000 bins: median wall time of ``solve`` over ``--reps`` runs and its gap.
Brute force is impossible there, so a 6 x 6 instance (budget halfway between its cheapest and dearest
totals) is also timed with both, side by side.

    python benchmarks/knapsack_speed.py [--reps 5] [--bins 2000] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from latbench.jsonio import dump_json
from pruners.knapsack import Solution, brute_force, solve


def instance(rng: np.random.Generator, layers: int, choices: int) -> tuple[list[list[float]], list[list[float]]]:
    """Values: cumulative sums of descending scores; costs: a staircase in the kept count plus noise."""
    values, costs = [], []
    for _ in range(layers):
        scores = np.sort(rng.exponential(1.0, choices))[::-1]
        values.append(np.cumsum(scores).tolist())
        base = rng.uniform(20.0, 400.0)  # µs of the full layer
        tile = min(int(rng.choice([4, 8, 16])), max(1, choices // 3))
        kept = np.arange(1, choices + 1)
        stair = np.ceil(kept / tile) * tile / choices * base
        costs.append((stair + rng.normal(0.0, 0.04 * base, choices)).tolist())
    return values, costs


def timed(fn: Callable[[], Solution], reps: int) -> tuple[float, Solution]:
    times, sol = [], None
    for _ in range(reps):
        t0 = time.perf_counter()
        sol = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), sol


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--bins", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "knapsack_speed.json"))
    args = p.parse_args()
    rng = np.random.default_rng(args.seed)

    values, costs = instance(rng, 50, 64)
    neg = sum(int((np.diff(c) < 0).sum()) for c in costs)
    budget = 0.5 * sum(max(c) for c in costs)
    t_big, big = timed(lambda: solve(values, costs, budget, bins=args.bins), args.reps)
    large = {"layers": 50, "choices": 64, "bins": args.bins, "negative_deltas": neg, "budget_us": budget,
             "median_s": t_big, "value": big.value, "cost_us": big.cost, "feasible": big.feasible,
             "upper_bound": big.upper_bound, "gap": big.gap, "rel_gap": big.gap / abs(big.upper_bound)}

    sv, sc = instance(rng, 6, 6)
    lo, hi = sum(min(c) for c in sc), sum(max(c) for c in sc)
    sb = lo + 0.5 * (hi - lo)  # halfway between the cheapest and dearest totals
    t_dp, dp = timed(lambda: solve(sv, sc, sb, bins=args.bins), args.reps)
    t_bf, bf = timed(lambda: brute_force(sv, sc, sb), args.reps)
    small = {"layers": 6, "choices": 6, "bins": args.bins, "dp_median_s": t_dp, "brute_force_median_s": t_bf,
             "budget_us": sb, "feasible": dp.feasible,
             "dp_value": dp.value, "dp_upper_bound": dp.upper_bound, "dp_gap": dp.gap, "optimum": bf.value,
             "dp_is_optimal": dp.value == bf.value}

    report = {"benchmark": "knapsack_speed", "cpu_count": os.cpu_count(), "reps": args.reps, "seed": args.seed,
              "large": large, "small": small}
    dump_json(report, args.out)
    print(f"50x64, {args.bins} bins: solve median {t_big * 1e3:.1f} ms, value {big.value:.3f}, "
          f"ub {big.upper_bound:.3f}, gap {big.gap:.4g} ({large['rel_gap'] * 100:.3f}%), "
          f"cost {big.cost:.1f} <= {budget:.1f} us, {neg} negative cost deltas")
    print(f"6x6: DP {t_dp * 1e3:.2f} ms vs brute force {t_bf * 1e3:.1f} ms; DP value {dp.value:.4f}, "
          f"optimum {bf.value:.4f}, ub {dp.upper_bound:.4f}")
    print(f"cpu_count {os.cpu_count()}; wrote {args.out}")


if __name__ == "__main__":
    main()
