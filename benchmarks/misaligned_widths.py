"""Uniform keep ratios against the engine's channel blocks: predicted and measured latency of uniformly pruned
networks, side by side with the original.

Every prunable group keeps ``round(keep * channels)`` channels (the FLOPs-era uniform baseline's widths). On
ONNX Runtime's blocked CPU layout a width off the profile's channel step costs layout conversions, so
latency is far from monotone in the keep ratio. Each network's predicted ratio (the profile's LUT) and its
measured ratio (one interleaved comparison of all of them with the original, ``--repeats`` times, median
and range) are written to JSON.

    python benchmarks/misaligned_widths.py [--model mobilenetv2_cifar] [--keeps 0.5 0.583 0.6 0.65 0.7 0.8]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from latbench.arch import trace
from latbench.device_profile import DeviceProfile
from latbench.jsonio import dump_json
from latbench.measure import MeasureSettings, compare
from latbench.models import build_candidate, build_model

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mobilenetv2_cifar")
    p.add_argument("--profile", default="device_profiles/amd-epyc-1t-onnxruntime-fp32-bs1-mobilenetv2cifar")
    p.add_argument("--keeps", type=float, nargs="+", default=[0.5, 0.583, 0.6, 0.65, 0.7, 0.8])
    p.add_argument("--budget", type=float, default=20.0, help="seconds of each interleaved comparison")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(RESULTS / "misaligned_widths.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    start = time.perf_counter()
    profile = DeviceProfile.load(args.profile)
    model = build_model(args.model)
    x = torch.randn(1, *model_input(args.model), generator=torch.Generator().manual_seed(0))
    arch = trace(model, x, args.model)
    step = int(profile.meta["plan"]["step"])
    lut = profile.predictor("lut")
    full = lut.predict(arch).latency_us
    backend = profile.backend()
    runnables = {"original": backend.deploy(model, x)}
    rows = []
    for keep in args.keeps:
        cand = arch.with_widths({g.id: max(1, round(g.channels * keep)) for g in arch.prunable_groups})
        widths = [cand.width_tuple[g.id] for g in arch.prunable_groups]
        rows.append({"keep": keep, "predicted_ratio": lut.predict(cand).latency_us / full,
                     "flops_ratio": cand.flops() / arch.flops(),
                     "groups_on_step": sum(w % step == 0 for w in widths), "groups": len(widths)})
        runnables[f"keep {keep:g}"] = backend.deploy(build_candidate(args.model, cand), x)
    ratios: dict[str, list[float]] = {k: [] for k in runnables if k != "original"}
    for _ in range(args.repeats):
        result = compare(runnables, MeasureSettings(target_rel_ci=0.01, budget_s=args.budget), baseline="original")
        for k in ratios:
            ratios[k].append(result.ratios[k].ratio)
    for row in rows:
        r = ratios[f"keep {row['keep']:g}"]
        row |= {"measured_ratio": statistics.median(r), "measured_low": min(r), "measured_high": max(r)}
        print(f"keep {row['keep']:.3f}: {row['groups_on_step']}/{row['groups']} groups on the {step}-channel step, "
              f"FLOPs {row['flops_ratio']:.3f}, predicted {row['predicted_ratio']:.3f}, "
              f"measured {row['measured_ratio']:.3f} ({row['measured_low']:.3f}-{row['measured_high']:.3f})")
    dump_json({"benchmark": "misaligned_widths", "model": args.model, "profile": args.profile, "step": step,
               "date": time.strftime("%Y-%m-%d"), "rows": rows, "wall_s": round(time.perf_counter() - start, 1)},
              args.out)


def model_input(name: str) -> tuple[int, int, int]:
    from latbench.models import get_entry

    return get_entry(name).input_shape


if __name__ == "__main__":
    main()
