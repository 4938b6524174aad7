"""Accuracy right after surgery, with and without batch-norm recalibration.

The network of the Pareto benchmark (ResNet-56 trained on digits; trained here first if ``--weights`` has no
weights) is pruned by every method to a latency target with no fine-tuning (``--oracle predict``: the decision
from the profile's predictions alone, so the run takes seconds), and its test accuracy is taken right after
surgery as cut, then after re-estimating the batch norms on ``--images`` training images
(``pruners.batchnorm``). Writes ``benchmarks/results/bn_recalibration.json``.

    python benchmarks/bn_recalibration.py [--model resnet56] [--target 0.5] [--images 512]
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import datetime, timezone
from pathlib import Path

from latbench.device_profile import DeviceProfile
from pruners.batchnorm import recalibrate_batchnorm
from pruners.data import load_dataset, loaders
from pruners.methods import method_names
from pruners.prune import prune
from pruners.train import TrainConfig, evaluate
from pruners.trained import load_trained, train_zoo_model

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet56")
    p.add_argument("--weights", default="runs/resnet56-digits")
    p.add_argument("--profile", default="device_profiles/amd-epyc-1t-onnxruntime-fp32-bs1")
    p.add_argument("--target", type=float, default=0.5)
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--runs", default="runs/bn-recalibration")
    args = p.parse_args()
    if not (Path(args.weights) / "weights.pt").exists():
        train_zoo_model(args.model, "digits", args.weights, TrainConfig(epochs=30), progress=True)
    profile = DeviceProfile.load(args.profile)
    splits = load_dataset("digits", None, seed=0)
    model = load_trained(args.model, args.weights, splits.num_classes)
    train, _, test = loaders(splits, 64, 0)
    recalibrate_batchnorm(model, train, args.images)
    uncut = evaluate(model, test)  # the unpruned network recalibrated: nothing should be lost
    print(f"unpruned, recalibrated: {uncut:.2f}%", flush=True)
    rows = []
    for method in method_names():
        result = prune(method, args.model, args.weights, profile, args.target, out=Path(args.runs) / method,
                       mode="predict", finetune=TrainConfig(epochs=0), measure_budget_s=2, progress=False,
                       bn_images=args.images)
        a = result.accuracy
        rows.append({"method": method, "original": a["original"], "cut": a["pruned_before_recalibration"],
                     "recalibrated": a["pruned"], "share_of_original": a["pruned"] / a["original"],
                     "predicted_ratio": result.latency["predicted_ratio"],
                     "measured_ratio": result.latency["measured_ratio"]})
        print(f"{method:8} original {a['original']:.2f}%  cut {a['pruned_before_recalibration']:.2f}%  "
              f"recalibrated {a['pruned']:.2f}% ({100 * a['pruned'] / a['original']:.0f}% of the original)",
              flush=True)
    out = RESULTS / ("bn_recalibration.json" if args.images == 512 else f"bn_recalibration_{args.images}.json")
    out.write_text(json.dumps({"benchmark": "bn_recalibration", "model": args.model, "target": args.target,
                               "images": args.images, "unpruned_recalibrated": uncut,
                               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                               "machine": f"{platform.machine()}, {profile.name}", "rows": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
