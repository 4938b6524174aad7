"""How this machine's speed moves within seconds: one network timed call after call in fixed windows.

For each thread count, the network is deployed through ONNX Runtime and called back to back for
``--seconds``; every ``--window`` calls give one median. The spread of those window medians over
the run shows the phases of a shared VM that no single measurement can average away (and why
``compare`` interleaves whatever it compares). Thread counts alternate in ``--slices`` slices so
they meet the same phases.

    python benchmarks/clock_windows.py [--model resnet20] [--threads 1 2] [--seconds 30]
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


def windows(call, seconds: float, window: int) -> list[float]:
    """Medians (µs) of consecutive ``window``-call windows for about ``seconds``."""
    medians, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        times = np.empty(window)
        for i in range(window):
            t = time.perf_counter()
            call()
            times[i] = time.perf_counter() - t
        medians.append(float(np.median(times)) * 1e6)
    return medians


def summary(medians: list[float]) -> dict:
    m = np.asarray(medians)
    return {"windows": len(m), "min_us": round(float(m.min()), 1), "median_us": round(float(np.median(m)), 1),
            "max_us": round(float(m.max()), 1), "max_over_min": round(float(m.max() / m.min()), 3),
            "medians_us": [round(v, 1) for v in medians]}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seconds", type=float, default=30.0, help="timed seconds per thread count")
    p.add_argument("--window", type=int, default=200, help="calls per window")
    p.add_argument("--slices", type=int, default=6, help="the run is cut into this many alternating slices")
    p.add_argument("--out", default=str(RESULTS / "clock_windows.json"))
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    fam = family(args.model)
    calls = {}
    for threads in args.threads:
        runnable = require_backend("onnxruntime", threads=threads).deploy(fam.module(), fam.example())
        windows(runnable, 1.0, 20)  # warm up
        calls[threads] = runnable
    medians: dict[int, list[float]] = {t: [] for t in args.threads}
    for _ in range(args.slices):
        for threads, call in calls.items():
            medians[threads] += windows(call, args.seconds / args.slices, args.window)
    report = {"benchmark": "clock_windows", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": require_backend("onnxruntime").fingerprint(), "model": args.model, "window": args.window,
              "seconds": args.seconds, "slices": args.slices,
              "threads": {str(t): summary(m) for t, m in medians.items()}}
    dump_json(report, args.out)
    for t, s in report["threads"].items():
        print(f"{t} thread(s): {s['windows']} windows of {args.window} calls, medians {s['min_us']}–{s['max_us']} µs "
              f"(median {s['median_us']}, max/min {s['max_over_min']})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
