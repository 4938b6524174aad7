"""HILP's wall time measuring here, through a Ray pool of 1 actor, and through a pool of 2 (one thread each).

HILP measures each step's prefiltered candidates in one call (``LatencyOracle.measure_many``); here that
is one interleaved job, in a pool of N actors it is N jobs run in parallel, each interleaved with its own
copy of the reference and given the share of the call's time budget its networks make. The pool's
devices are this machine's two cores, advertised to a local Ray cluster as two units of the profile's
resource: **they share one host** (memory bandwidth, caches, the other core's load), so the 2-actor
speed-up here is a floor of what two separate devices give, and the measured ratios of parallel jobs
carry each other's interference. The pool of 1 against here is the overhead a pooled measurement adds
(shipping the job, deploying the reference in the actor).

    python benchmarks/pool_scaling.py [--model resnet20] [--target 0.6] [--prefilter 6] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import torch
from pruning_pareto import PROFILE, RESULTS
from torch.utils.data import DataLoader, TensorDataset

from latbench.arch import trace
from latbench.device_profile import DeviceProfile
from latbench.fleet import device_resource
from latbench.fleet.pool import RayPool
from latbench.jsonio import dump_json
from latbench.models import build_model
from pruners.groups import channel_groups
from pruners.hilp import hilp
from pruners.method import Problem
from pruners.oracle import LatencyOracle
from pruners.train import TrainConfig


def run(profile, name: str, model, x, data, target: float, prefilter: int, pool, out: Path) -> dict:
    """One HILP search from scratch (``out`` emptied first: a resumed search would skip its steps)."""
    shutil.rmtree(out, ignore_errors=True)
    arch = trace(model, x, name)
    groups = channel_groups(model, arch, x)
    oracle = LatencyOracle(profile, model, arch, x, mode="measure", pool=pool)
    problem = Problem(model, arch, groups, x, oracle, target, "latency", data, data, TrainConfig(epochs=0), out=out,
                      bn_images=64)
    start = time.perf_counter()
    found = hilp(problem, prefilter=prefilter, accuracy_batches=1)
    wall = time.perf_counter() - start
    steps, measured = len(found.history), oracle.counts.measurements
    return {"actors": 0 if pool is None else len(pool), "wall_s": wall, "steps": steps, "measurements": measured,
            "measure_s": oracle.counts.measure_seconds, "s_per_step": wall / max(steps, 1),
            "measure_s_per_step": oracle.counts.measure_seconds / max(steps, 1),
            "reached": found.knob, "chosen": [s["chosen"] for s in found.history]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet20")
    p.add_argument("--profile", default=PROFILE)
    p.add_argument("--target", type=float, default=0.6)
    p.add_argument("--prefilter", type=int, default=6)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--runs", default="runs/pool-scaling")
    p.add_argument("--out", default=str(RESULTS / "pool_scaling.json"))
    args = p.parse_args()
    import ray

    torch.set_num_threads(1)
    profile = DeviceProfile.load(args.profile)
    ray.init(num_cpus=2, resources={device_resource(profile.name): 2}, include_dashboard=False, log_to_driver=False)
    model = build_model(args.model).eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g)),
                      batch_size=32)
    rows, start = [], time.perf_counter()
    for r in range(args.repeats):
        order = [0, 1, 2] if r % 2 == 0 else [2, 1, 0]  # interleaved: drift hits every setting alike
        for n in order:
            out = Path(args.runs) / f"repeat{r}-actors{n}"
            pool = RayPool.for_profile(profile, actors=n) if n else None  # actors started outside the timing
            found = run(profile, args.model, model, x, data, args.target, args.prefilter, pool, out)
            if pool is not None:
                pool.shutdown()  # its devices free for the next pool
            row = {"repeat": r, **found}
            rows.append(row)
            print(f"repeat {r} actors {n}: {row['wall_s']:.1f} s, {row['steps']} steps, {row['measurements']} "
                  f"measurements, {row['measure_s_per_step']:.2f} s measuring per step", flush=True)
    ray.shutdown()
    summary = {}
    for n in (0, 1, 2):
        mine = [row for row in rows if row["actors"] == n]
        summary[n] = {"measure_s_per_step": sorted(row["measure_s_per_step"] for row in mine),
                      "s_per_step": sorted(row["s_per_step"] for row in mine)}
    here = {row["repeat"]: row["measure_s"] / row["measurements"] for row in rows if row["actors"] == 0}
    per_measurement = [row["measure_s"] / row["measurements"] - here[row["repeat"]] for row in rows
                       if row["actors"] == 1]
    dump_json({"benchmark": "pool_scaling", "model": args.model, "profile": args.profile, "target": args.target,
               "prefilter": args.prefilter, "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
               "wall_s": time.perf_counter() - start, "rows": rows, "summary": summary,
               "pooled_overhead_s_per_measurement": per_measurement}, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
