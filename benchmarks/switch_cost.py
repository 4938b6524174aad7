"""What switching between ONNX Runtime sessions costs the first calls after the switch.

``--networks`` random-width ResNet-20s are deployed and called in rotating round-robin order, ``--calls``
timed calls each per visit and no untimed call between (what ``compare`` would see without its re-warm).
For every position after a switch it reports the median over all visits of the call's time over the
network's own steady state (the median of its last three positions): how much the first calls are
inflated, and after how many calls it settles.

    python benchmarks/switch_cost.py [--networks 16] [--calls 10] [--rounds 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from latbench.backends import require_backend
from latbench.jsonio import dump_json
from latbench.models.family import family

RESULTS = Path(__file__).resolve().parent / "results"


def variants(n: int, seed: int):
    fam = family("resnet20")
    base = fam.trace(1)
    rng = np.random.default_rng(seed)
    for _ in range(n):
        arch = base.with_widths({g.id: max(1, round(g.channels * rng.uniform(0.3, 1.0)))
                                 for g in base.prunable_groups})
        yield fam.build(arch), fam.example()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--networks", type=int, default=16)
    p.add_argument("--calls", type=int, default=10, help="timed calls per visit")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "switch_cost.json"))
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    backend = require_backend("onnxruntime", threads=args.threads)
    runnables = [backend.deploy(m, x) for m, x in variants(args.networks, args.seed)]
    for r in runnables:  # every session built and warm once
        for _ in range(20):
            r()
    times = np.empty((args.rounds, args.networks, args.calls))
    order = list(range(args.networks))
    start = time.perf_counter()
    for rnd in range(args.rounds):
        shift = rnd % args.networks
        for i in order[shift:] + order[:shift]:
            for c in range(args.calls):
                t = time.perf_counter()
                runnables[i]()
                times[rnd, i, c] = time.perf_counter() - t
    steady = np.median(times[:, :, -3:], axis=(0, 2))  # per network
    relative = times / steady[None, :, None]
    per_position = np.median(relative, axis=(0, 1))
    per_network_first = np.median(relative[:, :, 0], axis=0)
    settled = next((c + 1 for c in range(args.calls) if per_position[c] <= 1.05), None)
    report = {"benchmark": "switch_cost", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": backend.fingerprint(), "networks": args.networks, "calls": args.calls, "rounds": args.rounds,
              "wall_s": round(time.perf_counter() - start, 1),
              "steady_us": {"min": round(float(steady.min()) * 1e6, 1), "max": round(float(steady.max()) * 1e6, 1)},
              "per_position": [round(float(v), 3) for v in per_position],
              "first_call_per_network": {"min": round(float(per_network_first.min()), 3),
                                         "max": round(float(per_network_first.max()), 3)},
              "settled_at_call": settled}
    dump_json(report, args.out)
    print("call after a switch: " + ", ".join(f"{c + 1}: {v:.2f}x" for c, v in enumerate(per_position)))
    print(f"first call per network {report['first_call_per_network']['min']:.2f}–"
          f"{report['first_call_per_network']['max']:.2f}x its steady state; within 5% from call {settled}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
