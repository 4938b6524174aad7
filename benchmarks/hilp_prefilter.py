"""HILP's prefilter: does the predictor's ranking find the move the measurements choose?

Runs HILP on a trained network to one latency target twice in a row, measuring every candidate and then only
the predictor's top K (no fine-tuning, so both runs see the same network at step 1), and records per step
where the predictor had ranked the move the measurements chose, whether ranking by prediction would have
picked it, the prediction error, the measurements and the wall time. Writes JSON.

    python benchmarks/hilp_prefilter.py [--model resnet56] [--target 0.8] [--prefilter 8]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import torch

from latbench.jsonio import dump_json
from pruners.prune import prune
from pruners.train import TrainConfig

RESULTS = Path(__file__).parent / "results"


def run(model: str, weights: str, profile: str, target: float, prefilter: int | None, out: Path) -> dict[str, Any]:
    start = time.perf_counter()
    result = prune("hilp", model, weights, profile, target, out=out, finetune=TrainConfig(epochs=0),
                   progress=False, options={"prefilter": prefilter})
    report = result.to_dict()
    steps = [e for e in report["search"] if "chosen" in e]
    return {"prefilter": prefilter, "wall_s": time.perf_counter() - start,
            "measured_ratio": report["latency"]["measured_ratio"], "accuracy": report["accuracy"]["finetuned"],
            "measurements": report["oracle"]["counts"]["measurements"], "removed_blocks": report["removed_blocks"],
            "steps": [{"step": e["step"], "chosen": e["chosen"], "measured_ratio": e["measured_ratio"],
                       "candidates": len(e["candidates"]), "measured": e["measured"],
                       "chosen_prefilter_rank": e["chosen_prefilter_rank"],
                       "prediction_picks_same": e["prediction_picks_same"], "prediction_error": e["prediction_error"],
                       "rate_search_s": e["rate_search_s"]} for e in steps]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet56")
    p.add_argument("--weights", default="runs/resnet56-digits")
    p.add_argument("--profile", default="device_profiles/amd-epyc-1t-onnxruntime-fp32-bs1")
    p.add_argument("--target", type=float, default=0.8)
    p.add_argument("--prefilter", type=int, default=8)
    p.add_argument("--runs", default="runs/hilp-prefilter")
    p.add_argument("--out", default=str(RESULTS / "hilp_prefilter.json"))
    args = p.parse_args()
    torch.manual_seed(0)
    rows = []
    for k in (None, args.prefilter):
        row = run(args.model, args.weights, args.profile, args.target, k,
                  Path(args.runs) / f"{args.model}-{args.target:g}-{'all' if k is None else k}")
        ranks = [s["chosen_prefilter_rank"] for s in row["steps"]]
        print(f"prefilter {k or 'all'}: {len(row['steps'])} steps, {row['measurements']} measurements, "
              f"{row['wall_s']:.0f} s, measured {row['measured_ratio']:.3f}, accuracy {row['accuracy']:.2f}%, "
              f"chosen move's rank in the predictor's order {ranks}", flush=True)
        rows.append(row)
    dump_json({"benchmark": "hilp_prefilter", "model": args.model, "profile": args.profile, "target": args.target,
               "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%d"), "runs": rows}, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
