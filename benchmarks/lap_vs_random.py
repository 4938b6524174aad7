"""LAP's agent against a random-search policy with the same episodes, wall, reward and filter selection.

Random search is LAP with ``warmup`` equal to ``episodes``: every episode's actions are uniform random, the
wall, reward, dynamic filter selection, regrowth, targeting and fine-tuning are the same. Both runs prune the
same trained network to each target; their networks are then measured side by side with the original. Writes
one JSON row per (target, policy): the best episode's reward, predicted latency and quick-check accuracy, the
episode at which it was found, test accuracy after fine-tuning, measured latency, wall time.

    python benchmarks/lap_vs_random.py [--model resnet56] [--targets 0.5] [--episodes 300] [--warmup 100]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from pruning_pareto import PROFILE, RESULTS

from latbench.device_profile import DeviceProfile
from latbench.jsonio import dump_json
from pruners.compare import side_by_side
from pruners.prune import prune
from pruners.train import TrainConfig
from pruners.trained import load_trained


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet56")
    p.add_argument("--weights", help="trained weights (default runs/MODEL-digits)")
    p.add_argument("--profile", default=PROFILE)
    p.add_argument("--targets", type=float, nargs="+", default=[0.5])
    p.add_argument("--episodes", type=int, default=300)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--finetune-epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--runs", default="runs/lap-vs-random")
    p.add_argument("--out", default=str(RESULTS / "lap_vs_random.json"))
    args = p.parse_args()
    weights = Path(args.weights or f"runs/{args.model}-digits")
    profile = DeviceProfile.load(args.profile)
    finetune = TrainConfig(epochs=args.finetune_epochs, lr=0.01, seed=args.seed)
    original = load_trained(args.model, weights, 10).eval()
    rows, start = [], time.perf_counter()
    for target in args.targets:
        results = {}
        for policy, warmup in (("agent", args.warmup), ("random", args.episodes)):
            out = Path(args.runs) / f"{args.model}-{policy}-{target:g}"
            results[policy] = prune("lap", args.model, weights, profile, target, out=out, finetune=finetune,
                                    seed=args.seed, progress=False,
                                    options={"episodes": args.episodes, "warmup": warmup})
        torch.set_num_threads(1)
        x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        joint = side_by_side(profile, original, {k: r.model for k, r in results.items()}, x, 30.0, args.repeats)
        for policy, r in results.items():
            lap = next(e["lap"] for e in r.search if "lap" in e)
            log = json.loads((Path(args.runs) / f"{args.model}-{policy}-{target:g}" / "lap.json").read_text())
            rows.append({"target": target, "policy": policy, "episodes": lap["episodes"],
                         "best_episode": lap["best_episode"], "best_reward": lap["best_reward"],
                         "best_predicted": lap["best_predicted"], "best_quick_accuracy": lap["best_accuracy"],
                         "mean_reward_last_50": sum(e["reward"] for e in log[-50:]) / len(log[-50:]),
                         "selection_accuracy": lap["selection_accuracy"], "regrown": lap["regrown"],
                         "accuracy": r.accuracy["finetuned"], "measured_ratio": r.latency["measured_ratio"],
                         "side_by_side": joint[policy], "search_s": lap["search_s"], "wall_s": r.wall_time_s})
            print(f"target {target:g} {policy:6s}: best reward {lap['best_reward']:.4f} (episode "
                  f"{lap['best_episode']}), quick {lap['best_accuracy']:.1f}%, "
                  f"fine-tuned {r.accuracy['finetuned']:.2f}%, "
                  f"side by side {joint[policy]['median']:.3f}, {r.wall_time_s:.0f} s", flush=True)
    dump_json({"benchmark": "lap_vs_random", "model": args.model, "profile": args.profile, "episodes": args.episodes,
               "warmup": args.warmup, "finetune": finetune.to_dict(), "cpu_count": os.cpu_count(),
               "date": time.strftime("%Y-%m-%d"), "wall_s": time.perf_counter() - start, "rows": rows}, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
