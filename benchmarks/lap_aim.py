"""Which uniform network should LAP measure to aim its search? Predicted against measured, old aim and new.

LAP measures one uniform network before its search and scales the wall's target by predicted / measured.
The old aim took the widest uniform network (same keep ratio in every group) predicted within the target;
the new one takes the uniform network on the profile's channel step predicted nearest the target from below
(``pruners.lap.calibration_widths``). For each network and target both are built, predicted and measured
interleaved with the original (the latency oracle), and the correction each would give is reported.

    python benchmarks/lap_aim.py [--models resnet56 mobilenetv2_cifar] [--targets 0.7 0.5 0.35]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from pruning_pareto import PROFILE, RESULTS

from latbench.arch import trace
from latbench.device_profile import DeviceProfile
from latbench.jsonio import dump_json
from pruners.baselines import uniform_widths
from pruners.groups import channel_groups
from pruners.lap import Environment, calibration_widths
from pruners.oracle import LatencyOracle
from pruners.splamp import profile_group_size
from pruners.surgery import Decision, apply, keep_first
from pruners.trained import load_trained


def old_aim(env: Environment, groups, target: float) -> dict[int, int]:
    """The widest uniform network predicted within ``target`` (keep ratios 0.01 ... 1)."""
    options = [uniform_widths(groups, k / 100) for k in range(1, 101)]
    ratios = env.oracle.predict_ratios([env.arch.with_widths(w) for w in options])
    within = [i for i, r in enumerate(ratios) if r <= target]
    return options[max(within) if within else 0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet56", "mobilenetv2_cifar"])
    p.add_argument("--targets", type=float, nargs="+", default=[0.7, 0.5, 0.35])
    p.add_argument("--profile", default=PROFILE)
    p.add_argument("--out", default=str(RESULTS / "lap_aim.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    profile = DeviceProfile.load(args.profile)
    rows = []
    for name in args.models:
        model = load_trained(name, Path(f"runs/{name}-digits"), 10).eval()
        x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        arch = trace(model, x, name)
        groups = channel_groups(model, arch, x)
        oracle = LatencyOracle(profile, model, arch, x, mode="auto")
        env = Environment(arch, [g.id for g in groups], oracle, 1.0, step=profile_group_size(profile))
        for target in args.targets:
            for aim, widths in (("old", old_aim(env, groups, target)), ("new", calibration_widths(env, target))):
                candidate = arch.with_widths(widths)
                decision = Decision(keep_first({g: w for g, w in widths.items() if w < arch.width_tuple[g]}))
                predicted = oracle.predict(candidate).ratio
                measured = oracle.measure(apply(model, arch, decision, x, check_arch=False)[0], candidate).ratio
                rows.append({"model": name, "target": target, "aim": aim, "predicted": predicted,
                             "measured": measured, "correction": predicted / measured,
                             "flops_ratio": candidate.flops() / arch.flops(),
                             "widths": sorted(set(widths.values()))})
                print(f"{name} {target:g} {aim}: predicted {predicted:.3f} measured {measured:.3f} "
                      f"(correction {predicted / measured:.2f}), widths {sorted(set(widths.values()))}", flush=True)
    dump_json({"benchmark": "lap_aim", "profile": args.profile, "cpu_count": os.cpu_count(),
               "date": time.strftime("%Y-%m-%d"), "rows": rows}, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
