"""Layer vs filter pruning at the same *measured* latency (LayerPrune's claim).

For each target, LayerPrune removes blocks of a trained network; then the filter methods (uniform, global)
prune the same network to the latency LayerPrune's network measured, all fine-tuned alike (same epochs, same
seed, uniform with LayerPrune's criterion), and the networks are measured side by side with the original in
one interleaved comparison (``pruners.compare.compare_at_latency``, what ``latbench prune layerprune --compare
uniform global`` runs). Writes one comparison per target.

    python benchmarks/layer_vs_filter.py [--model resnet56] [--targets 0.7 0.5] [--finetune-epochs 5]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from pruning_pareto import PROFILE, RESULTS

from latbench.device_profile import DeviceProfile
from latbench.jsonio import dump_json
from pruners.compare import compare_at_latency, comparison_table
from pruners.errors import PruningError
from pruners.prune import prune
from pruners.train import TrainConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet56")
    p.add_argument("--weights", help="trained weights (default runs/MODEL-digits)")
    p.add_argument("--profile", default=PROFILE)
    p.add_argument("--targets", type=float, nargs="+", default=[0.7, 0.5])
    p.add_argument("--filters", nargs="+", default=["uniform", "global"])
    p.add_argument("--criterion", default="l1")
    p.add_argument("--finetune-epochs", type=int, default=5)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--runs", default="runs/layer-vs-filter")
    p.add_argument("--out", default=str(RESULTS / "layer_vs_filter.json"))
    args = p.parse_args()
    weights = Path(args.weights or f"runs/{args.model}-digits")
    finetune = TrainConfig(epochs=args.finetune_epochs, lr=args.lr, seed=args.seed)
    profile = DeviceProfile.load(args.profile)
    comparisons, start = [], time.perf_counter()
    for target in args.targets:
        out = Path(args.runs) / f"{args.model}-layerprune-{target:g}"
        shared = {"finetune": finetune, "seed": args.seed, "progress": False}
        try:
            layer = prune("layerprune", args.model, weights, profile, target, out=out,
                          options={"criterion": args.criterion}, **shared)
        except PruningError as exc:
            comparisons.append({"target": target, "error": str(exc)})
            print(f"target {target:g}: {exc}", flush=True)
            continue
        torch.set_num_threads(1)
        report = compare_at_latency(layer, args.filters, args.model, weights, profile, out, repeats=args.repeats,
                                    **shared)
        comparisons.append({"target": target, **report})
        print(f"target {target:g}\n{comparison_table(report)}", flush=True)
    dump_json({"benchmark": "layer_vs_filter", "model": args.model, "profile": args.profile,
               "criterion": args.criterion, "finetune": finetune.to_dict(), "cpu_count": os.cpu_count(),
               "date": time.strftime("%Y-%m-%d"), "wall_s": time.perf_counter() - start,
               "comparisons": comparisons}, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
