"""Does LAP's reward rank pruned networks as fine-tuning does? The quick check against short training.

LAP searches with a reward whose accuracy term is a quick check of the freshly cut network (batch norms
recalibrated, no training). At aggressive targets every cut network reads near chance on it, and the
search has nothing to climb. This benchmark draws ``--policies`` random policies through LAP's wall at one
target (LAP's warm-up episodes: every group's keep ratio uniform in [0.2, 1], the wall keeping the
predicted latency within the target), selects filters as LAP does (dynamic scores), and scores each
network

- by the quick check after ``K`` SGD steps at the fine-tuning learning rate, for each ``K`` in ``--steps``
  (0: LAP's default reward), on LAP's two validation batches (128 images);
- by what the pipeline does to it afterwards: ``--epochs`` of fine-tuning (cosine, lr 0.01, seed 0),
  then the test accuracy (360 images; one image is 0.28 points).

It reports, per proxy, the Spearman rank correlation with the fine-tuned accuracy, the fine-tuned accuracy
of the policy the proxy ranks first (what a search maximising it would pick) against the best and the
median, and the seconds one reward costs.

    PYTHONPATH=benchmarks python benchmarks/lap_reward_signal.py [--model resnet56] [--target 0.35]
        [--policies 16] [--steps 0 5 10 17] [--epochs 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pruning_pareto import PROFILE, RESULTS
from scipy.stats import spearmanr

from latbench.arch import trace
from latbench.device_profile import DeviceProfile
from latbench.jsonio import dump_json
from pruners.data import digits, loaders
from pruners.dynamic_selection import dynamic_scores
from pruners.groups import channel_groups
from pruners.lap import Environment, keep_decision, run_episode
from pruners.method import Problem
from pruners.oracle import LatencyOracle
from pruners.splamp import profile_group_size
from pruners.surgery import apply
from pruners.train import TrainConfig, evaluate, fit
from pruners.trained import load_trained


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet56")
    p.add_argument("--weights", help="trained weights (default runs/MODEL-digits)")
    p.add_argument("--profile", default=PROFILE)
    p.add_argument("--target", type=float, default=0.35, help="the wall's target, a predicted latency ratio")
    p.add_argument("--policies", type=int, default=16)
    p.add_argument("--steps", type=int, nargs="+", default=[0, 5, 10, 17])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: other work shares the CPU well)")
    p.add_argument("--out", help="default benchmarks/results/lap_reward_signal_MODEL_TARGET.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    splits = digits(seed=0)
    train_loader, val_loader, test_loader = loaders(splits, 64, seed=0)
    model = load_trained(args.model, Path(args.weights or f"runs/{args.model}-digits"), 10).eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    arch = trace(model, x, args.model)
    groups = channel_groups(model, arch, x)
    profile = DeviceProfile.load(args.profile)
    oracle = LatencyOracle(profile, model, arch, x, mode="predict")
    env = Environment(arch, [g.id for g in groups], oracle, args.target, step=profile_group_size(profile))
    scores = dynamic_scores(model, groups, train_loader, 20, lr=0.01)
    problem = Problem(model, arch, groups, x, oracle, args.target, "latency", train_loader, val_loader,
                      TrainConfig(epochs=args.epochs, lr=0.01, seed=0))
    rng = np.random.default_rng(args.seed)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for i in range(args.policies):
        episode = run_episode(env, lambda _s: rng.uniform(0.0, 1.0))
        decision = keep_decision(episode.widths, scores, arch)
        row: dict[str, Any] = {"predicted": episode.predicted, "keep": {str(g): w for g, w in episode.widths.items()},
                               "proxy": {}, "proxy_s": {}}
        for k in args.steps:
            t = time.perf_counter()
            row["proxy"][str(k)] = problem.quick_accuracy(apply(model, arch, decision, x, check_arch=False)[0],
                                                          f"{i}:{k}", batches=2, images=128, steps=k)
            row["proxy_s"][str(k)] = time.perf_counter() - t
        tuned = apply(model, arch, decision, x)[0]
        problem.recalibrate(tuned)
        fit(tuned, train_loader, val_loader, TrainConfig(epochs=args.epochs, lr=0.01, seed=0), progress=False)
        row["finetuned"] = evaluate(tuned, test_loader)
        rows.append(row)
        print(f"policy {i + 1}/{args.policies}: predicted {episode.predicted:.3f}, "
              + ", ".join(f"{k} steps {row['proxy'][str(k)]:.1f}%" for k in args.steps)
              + f"; fine-tuned {row['finetuned']:.2f}%  ({time.perf_counter() - start:.0f} s)", flush=True)
    truth = [r["finetuned"] for r in rows]
    summary = {}
    for k in args.steps:
        proxy = [r["proxy"][str(k)] for r in rows]
        rho = spearmanr(proxy, truth)[0] if len(set(proxy)) > 1 else float("nan")
        picked = truth[int(np.argmax(proxy))]
        summary[str(k)] = {"spearman": float(rho), "picked_finetuned": picked,
                           "reward_s": statistics.median(r["proxy_s"][str(k)] for r in rows),
                           "proxy_range": [min(proxy), max(proxy)]}
        print(f"{k:3d} steps: Spearman {rho:+.2f} with the fine-tuned accuracy; its first pick fine-tunes to "
              f"{picked:.2f}% (best {max(truth):.2f}%, median {statistics.median(truth):.2f}%); "
              f"{summary[str(k)]['reward_s']:.2f} s per reward")
    out = args.out or str(RESULTS / f"lap_reward_signal_{args.model}_{args.target:g}.json")
    dump_json({"benchmark": "lap_reward_signal", "model": args.model, "profile": args.profile, "target": args.target,
               "policies": args.policies, "epochs": args.epochs, "seed": args.seed,
               "date": time.strftime("%Y-%m-%d"), "wall_s": round(time.perf_counter() - start, 1),
               "finetuned": {"best": max(truth), "median": statistics.median(truth), "worst": min(truth)},
               "summary": summary, "rows": rows}, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
