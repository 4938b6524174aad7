"""Layer vs filter pruning at the same *measured* latency (LayerPrune's claim).

For each target, LayerPrune removes blocks of a trained network; then the filter methods (uniform, global)
prune the same network to the latency LayerPrune's network measured, all fine-tuned alike (same epochs, same
seed), and the networks are measured side by side with the original in one interleaved comparison. Writes one
JSON row per (target, method).

    python benchmarks/layer_vs_filter.py [--model resnet56] [--targets 0.7 0.5] [--finetune-epochs 5]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from pruning_pareto import PROFILE, RESULTS, row, side_by_side

from latbench.jsonio import dump_json
from pruners.errors import PruningError
from pruners.prune import prune
from pruners.train import TrainConfig
from pruners.trained import load_trained


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet56")
    p.add_argument("--weights", help="trained weights (default runs/MODEL-digits)")
    p.add_argument("--profile", default=PROFILE)
    p.add_argument("--targets", type=float, nargs="+", default=[0.7, 0.5])
    p.add_argument("--filters", nargs="+", default=["uniform", "global"])
    p.add_argument("--criterion", default="l1")
    p.add_argument("--finetune-epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--runs", default="runs/layer-vs-filter")
    p.add_argument("--out", default=str(RESULTS / "layer_vs_filter.json"))
    args = p.parse_args()
    weights = Path(args.weights or f"runs/{args.model}-digits")
    finetune = TrainConfig(epochs=args.finetune_epochs, lr=0.01, seed=args.seed)
    rows, start = [], time.perf_counter()
    original = load_trained(args.model, weights, 10).eval()
    for target in args.targets:
        folders = {}
        layer_out = Path(args.runs) / f"{args.model}-layerprune-{target:g}"
        layer = prune("layerprune", args.model, weights, args.profile, target, out=layer_out, finetune=finetune,
                      seed=args.seed, progress=False, options={"criterion": args.criterion})
        folders["layerprune"] = layer_out
        rows.append(row(layer.to_dict(), target))
        reached = layer.latency["measured_ratio"]
        for method in args.filters:
            out = Path(args.runs) / f"{args.model}-{method}-at-layerprune-{target:g}"
            try:
                result = prune(method, args.model, weights, args.profile, reached, out=out, finetune=finetune,
                               seed=args.seed, progress=False)
            except PruningError as exc:
                rows.append({"method": method, "target": target, "error": str(exc)})
                continue
            folders[method] = out
            rows.append({**row(result.to_dict(), target), "filter_target": reached})
        torch.set_num_threads(1)
        joint = side_by_side(args.model, original, folders, args.profile, 30.0, args.repeats)
        for r in rows:
            if r["target"] == target and r["method"] in joint:
                r["side_by_side"] = joint[r["method"]]
        print(f"target {target:g}: " + "  ".join(
            f"{r['method']} {r['side_by_side']['median']:.3f} acc {r['accuracy']:.2f}%"
            for r in rows if r["target"] == target and "side_by_side" in r), flush=True)
    dump_json({"benchmark": "layer_vs_filter", "model": args.model, "profile": args.profile,
               "criterion": args.criterion, "finetune": finetune.to_dict(), "cpu_count": os.cpu_count(),
               "date": time.strftime("%Y-%m-%d"), "wall_s": time.perf_counter() - start, "rows": rows}, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
