"""How stable is a reported median? Naive fixed repeats vs latbench's adaptive, drift-aware method.

The same network is measured ``--reps`` times with each method. The two methods alternate
(naive, adaptive, naive, ...) so both meet the same machine state, and every repetition deploys a
fresh inference session, as a separate invocation would. For each method the script reports the
spread of the reported medians, (max - min) / median, and their coefficient of variation.

    python benchmarks/measurement_stability.py [--reps 10] [--backend onnxruntime] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from latbench.backends import require_backend
from latbench.measure import MeasureSettings, measure, measure_fixed
from latbench.models import build_model

NETWORKS = {  # name -> (registry name, constructor arguments)
    "smallconv-w16": ("smallconv", {"width": 16, "depth": 1}),
    "smallconv-w64-d3": ("smallconv", {"width": 64, "depth": 3}),
}


def spread(values: list[float]) -> dict[str, float]:
    med = statistics.median(values)
    return {
        "median_of_medians_us": med,
        "spread": (max(values) - min(values)) / med,
        "cv": statistics.stdev(values) / statistics.mean(values),
        "min_us": min(values),
        "max_us": max(values),
    }


def run(network: str, backend_name: str, reps: int, threads: int | None, naive_runs: int, naive_warmup: int,
        settings: MeasureSettings) -> dict:
    registry_name, kwargs = NETWORKS[network]
    torch.manual_seed(0)
    model = build_model(registry_name, **kwargs)
    x = torch.randn(1, 3, 32, 32)
    backend = require_backend(backend_name, threads=threads)
    naive, adaptive = [], []
    for rep in range(reps):
        n = measure_fixed(backend.deploy(model, x), runs=naive_runs, warmup=naive_warmup)
        a = measure(backend.deploy(model, x), settings)
        naive.append(n)
        adaptive.append(a)
        print(f"  {network} rep {rep + 1}/{reps}: naive {n.median_us:9.1f} us   adaptive {a.median_us:9.1f} us "
              f"(+-{a.rel_ci_halfwidth * 100:.2f}%, {a.runs} runs, {a.stop_reason}, "
              f"{a.discarded_runs} discarded, {a.wall_time_s:.1f} s)", flush=True)
    return {
        "network": network,
        "conditions": adaptive[0].conditions,
        "naive": {**spread([m.median_us for m in naive]), "medians_us": [m.median_us for m in naive],
                  "runs": naive_runs, "warmup": naive_warmup,
                  "mean_wall_time_s": statistics.mean(m.wall_time_s for m in naive)},
        "adaptive": {**spread([m.median_us for m in adaptive]), "medians_us": [m.median_us for m in adaptive],
                     "runs": [m.runs for m in adaptive], "stop_reasons": [m.stop_reason for m in adaptive],
                     "discarded_runs": [m.discarded_runs for m in adaptive],
                     "rel_ci_halfwidth": [m.rel_ci_halfwidth for m in adaptive],
                     "mean_wall_time_s": statistics.mean(m.wall_time_s for m in adaptive)},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--networks", default=",".join(NETWORKS))
    p.add_argument("--naive-runs", type=int, default=20, help="timed calls of the naive method")
    p.add_argument("--naive-warmup", type=int, default=1, help="untimed calls before the naive method")
    p.add_argument("--target-ci", type=float, default=0.01)
    p.add_argument("--budget", type=float, default=10.0)
    p.add_argument("--min-time", type=float, default=MeasureSettings.min_time_s,
                   help="least seconds the adaptive method measures after warm-up")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "measurement_stability.json"))
    args = p.parse_args()
    settings = MeasureSettings(target_rel_ci=args.target_ci, budget_s=args.budget, min_time_s=args.min_time)
    started = time.time()
    results = [run(net, args.backend, args.reps, args.threads, args.naive_runs, args.naive_warmup, settings)
               for net in args.networks.split(",")]
    report = {"benchmark": "measurement_stability", "backend": args.backend, "reps": args.reps,
              "settings": settings.__dict__, "wall_time_s": time.time() - started, "results": results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'network':<18} {'naive spread':>12} {'adaptive spread':>16} {'ratio':>7}")
    for r in results:
        ns, ad = r["naive"]["spread"], r["adaptive"]["spread"]
        print(f"{r['network']:<18} {ns * 100:11.2f}% {ad * 100:15.2f}% {ns / ad if ad else float('inf'):7.1f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
