"""LAP's targeting knob with free widths against widths on the groups' menus, predicted and measured.

LAP fits its best policy to the measured target by scaling every keep ratio by one knob ``k``. Rounding
``min(1, r * k) * C`` to any channel count puts widths between the engine's channel blocks, where a few
channels cost a whole block; the menu mapping (``pruners.lap.Environment.snap``) keeps every width on a
chunk width. For the best policy of a LAP run folder, this scans the knob as the targeting loop does
(121 knobs) with both mappings, counts the knob steps where the predicted ratio falls although every width
grew, and measures both mappings at a few knobs side by side with the original, interleaved in one run.

    PYTHONPATH=benchmarks python benchmarks/lap_knob.py --run runs/pareto-mbv2-lap-steps5/mobilenetv2_cifar-lap-0.5
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from pruning_pareto import RESULTS

from latbench.arch import trace
from latbench.device_profile import DeviceProfile
from latbench.jsonio import dump_json
from latbench.measure import MeasureSettings
from pruners.groups import channel_groups
from pruners.lap import LOG, Environment, scaled_widths
from pruners.oracle import LatencyOracle
from pruners.splamp import profile_group_size
from pruners.surgery import Decision, apply, keep_first
from pruners.trained import load_trained

MBV2_PROFILE = "device_profiles/amd-epyc-1t-onnxruntime-fp32-bs1-mobilenetv2cifar"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a LAP run folder (its lap.json holds the episodes)")
    p.add_argument("--model", default="mobilenetv2_cifar")
    p.add_argument("--profile", default=MBV2_PROFILE)
    p.add_argument("--knobs", type=float, nargs="+", default=[0.4, 0.5, 0.6, 0.75, 1.0],
                   help="knobs measured with both mappings")
    p.add_argument("--seconds", type=float, default=60.0, help="budget of the interleaved measurement")
    p.add_argument("--out", default=str(RESULTS / "lap_knob.json"))
    return p


def falls(values: np.ndarray) -> tuple[int, float]:
    """Knob steps where the value falls, and the largest fall (a ratio of the original)."""
    steps = np.diff(values)
    return int((steps < -1e-9).sum()), float(max(0.0, -steps.min()))


def main() -> None:
    args = parser().parse_args()
    torch.set_num_threads(1)
    profile = DeviceProfile.load(args.profile)
    model = load_trained(args.model, Path(f"runs/{args.model}-digits"), 10).eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    arch = trace(model, x, args.model)
    groups = channel_groups(model, arch, x)
    oracle = LatencyOracle(profile, model, arch, x, mode="measure",
                           settings=MeasureSettings(target_rel_ci=0.01, budget_s=args.seconds))
    env = Environment(arch, [g.id for g in groups], oracle, 1.0, step=profile_group_size(profile))
    log = json.loads((Path(args.run) / LOG).read_text())
    best = max(log, key=lambda r: r["reward"])
    ratios = {int(g): w / arch.width_tuple[int(g)] for g, w in best["keep"].items()}
    mappings = {
        "free": lambda k: {g: max(1, round(min(1.0, r * k) * arch.width_tuple[g])) for g, r in ratios.items()},
        "menu": lambda k: scaled_widths(env, ratios, k),
    }
    grid = np.linspace(0.25, max(2.0, 1.0 / min(ratios.values())), 121)
    scans = {}
    for name, widths_at in mappings.items():
        predicted = oracle.predict_ratios([arch.with_widths(widths_at(k)) for k in grid])
        count, largest = falls(predicted)
        scans[name] = {"predicted": [float(v) for v in predicted], "falls": count, "largest_fall": largest}
        print(f"{name}: predicted ratio falls at {count} of {len(grid) - 1} knob steps (largest {largest:.3f})")
    candidates, labels = [], []
    for k in args.knobs:
        for name, widths_at in mappings.items():
            w = widths_at(k)
            decision = Decision(keep_first({g: v for g, v in w.items() if v < arch.width_tuple[g]}))
            candidates.append((apply(model, arch, decision, x, check_arch=False)[0], arch.with_widths(w)))
            labels.append((k, name))
    start = time.perf_counter()
    estimates = oracle.measure_many(candidates)
    points = []
    for (k, name), (_, cand), est in zip(labels, candidates, estimates, strict=True):
        points.append({"knob": k, "mapping": name, "predicted": float(oracle.predict(cand).ratio),
                       "measured": est.ratio, "measured_ci": [est.low, est.high],
                       "mflops": cand.flops() / 1e6, "on_step": sum(w % env.step == 0 for w in cand.width_tuple)})
        print(f"k {k:g} {name}: predicted {points[-1]['predicted']:.3f} measured {est.ratio:.3f} "
              f"({points[-1]['mflops']:.1f} MFLOPs)", flush=True)
    dump_json({"benchmark": "lap_knob", "model": args.model, "profile": args.profile, "run": args.run,
               "date": time.strftime("%Y-%m-%d"), "cpu_count": os.cpu_count(), "best_episode": best["episode"],
               "keep": best["keep"], "grid": [float(k) for k in grid], "scans": scans, "points": points,
               "measure_s": round(time.perf_counter() - start, 1)}, args.out)


if __name__ == "__main__":
    main()
