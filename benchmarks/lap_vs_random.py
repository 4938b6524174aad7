"""LAP's agent against random search with the same episodes, wall, reward and filter selection.

For every agent seed, ``latbench prune lap`` runs twice on one trained network and one latency target: with
the agent (``--warmup`` random episodes, then DDPG) and as random search (every episode random:
``warmup = episodes``). Both runs go through the whole method (the calibration measurement, the search
against the predictor, targeting by measurement, regrowth, fine-tuning with the same seed); then all their
networks are measured side by side with the original. Reports, per run: the best reward, its quick-check
accuracy and predicted latency, the best reward found after 25, 50, 100, ... episodes, the fine-tuned test
accuracy, the measured latency ratio and the wall time; and per policy the means over seeds.

    python benchmarks/lap_vs_random.py [--model resnet56] [--target 0.5] [--episodes 300] [--warmup 100]
        [--agent-seeds 0 1 2] [--reward-steps 0]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from pruning_pareto import PROFILE, RESULTS, row, side_by_side

from latbench.jsonio import dump_json
from pruners.lap import LOG
from pruners.prune import prune
from pruners.train import TrainConfig
from pruners.trained import load_trained

CHECKPOINTS = (25, 50, 100, 150, 200, 300, 400, 500)


def best_so_far(log: list[dict[str, Any]]) -> dict[str, float]:
    """The best reward among the first ``n`` episodes, for each checkpoint ``n`` the log reaches."""
    out, best = {}, float("-inf")
    for i, record in enumerate(log, 1):
        best = max(best, record["reward"])
        if i in CHECKPOINTS or i == len(log):
            out[str(i)] = best
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet56")
    p.add_argument("--weights", help="trained weights (default runs/MODEL-digits)")
    p.add_argument("--profile", default=PROFILE)
    p.add_argument("--target", type=float, default=0.5)
    p.add_argument("--episodes", type=int, default=300)
    p.add_argument("--warmup", type=int, default=100, help="the agent's random episodes (random search: all)")
    p.add_argument("--agent-seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--reward-steps", type=int, default=0, help="LAP's reward_steps for both policies (default 0)")
    p.add_argument("--finetune-epochs", type=int, default=5)
    p.add_argument("--joint-budget", type=float, default=30.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--runs", default="runs/lap-vs-random", help="run folders (kept, so a rerun resumes)")
    p.add_argument("--out", default=str(RESULTS / "lap_vs_random.json"))
    args = p.parse_args()
    weights = Path(args.weights or f"runs/{args.model}-digits")
    finetune = TrainConfig(epochs=args.finetune_epochs, lr=0.01, seed=0)
    policies = {"agent": args.warmup, "random": args.episodes}
    rows, folders, start = [], {}, time.perf_counter()
    for seed in args.agent_seeds:
        for policy, warmup in policies.items():
            out = Path(args.runs) / f"{args.model}-{args.target:g}-{policy}-{seed}"
            result = prune("lap", args.model, weights, args.profile, args.target, out=out, finetune=finetune,
                           seed=0, measure_budget_s=20.0, progress=False,
                           options={"episodes": args.episodes, "warmup": warmup, "agent_seed": seed,
                                    "reward_steps": args.reward_steps})
            log = json.loads((out / LOG).read_text())
            report = result.to_dict()
            lap = next(e["lap"] for e in report["search"] if "lap" in e)
            r = {"policy": policy, "agent_seed": seed, **row(report, args.target),
                 "best_reward": lap["best_reward"], "best_episode": lap["best_episode"],
                 "best_quick_accuracy": lap["best_accuracy"], "best_predicted": lap["best_predicted"],
                 "best_so_far": best_so_far(log),
                 "mean_reward_last_50": statistics.mean(e["reward"] for e in log[-50:]),
                 "selection_accuracy": lap["selection_accuracy"], "regrown": lap["regrown"],
                 "search_s": lap["search_s"]}
            rows.append(r)
            folders[f"{policy}-{seed}"] = out
            print(f"{policy:6s} seed {seed}: best reward {r['best_reward']:.4f} (episode {r['best_episode']}, "
                  f"quick check {r['best_quick_accuracy']:.1f}%, predicted {r['best_predicted']:.3f})  "
                  f"fine-tuned {r['accuracy']:.2f}%  measured {r['measured_ratio']:.3f}  {r['wall_s']:.0f} s",
                  flush=True)
    original = load_trained(args.model, weights, 10).eval()
    torch.set_num_threads(1)
    joint = side_by_side(args.model, original, folders, args.profile, args.joint_budget, args.repeats)
    for r in rows:
        r["side_by_side"] = joint[f"{r['policy']}-{r['agent_seed']}"]
    summary = {}
    for policy in policies:
        mine = [r for r in rows if r["policy"] == policy]
        summary[policy] = {key: {"mean": statistics.mean(r[key] for r in mine),
                                 "stdev": statistics.stdev(r[key] for r in mine) if len(mine) > 1 else 0.0}
                           for key in ("best_reward", "best_quick_accuracy", "accuracy", "wall_s")}
        summary[policy]["side_by_side_median"] = statistics.median(r["side_by_side"]["median"] for r in mine)
        print(f"{policy:6s}: " + "  ".join(f"{k} {v['mean']:.3f} ± {v['stdev']:.3f}" for k, v in summary[policy].items()
                                           if isinstance(v, dict)), flush=True)
    dump_json({"benchmark": "lap_vs_random", "model": args.model, "profile": args.profile, "target": args.target,
               "episodes": args.episodes, "warmup": args.warmup, "reward_steps": args.reward_steps,
               "finetune": finetune.to_dict(),
               "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
               "wall_s": time.perf_counter() - start, "summary": summary, "rows": rows}, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
