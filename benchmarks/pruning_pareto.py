"""Accuracy against *measured* latency: latency-aware pruning methods vs the FLOPs-era baselines.

A network trained on digits (``latbench train``; trained here first if ``--weights`` has no weights) is pruned
by every method to every measured latency target on the profile's backend (ONNX Runtime on this CPU by
default), each fine-tuned for the same number of epochs with the same seed, then measured interleaved with the
original (``pruners.run.prune``). Every run keeps its folder under ``--runs``, so an interrupted benchmark
resumes where it stopped. Writes one JSON row per (method, target) and a Pareto plot (test accuracy against
measured latency ratio, one line per method; FLOPs in a second panel).

    python benchmarks/pruning_pareto.py [--model resnet56] [--targets 0.7 0.5 0.35]
        [--methods splamp uniform global] [--finetune-epochs 5]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

from latbench.jsonio import dump_json
from pruners.errors import PruningError
from pruners.run import prune
from pruners.train import TrainConfig
from pruners.zoo import train_zoo_model

RESULTS = Path(__file__).parent / "results"
PROFILE = "device_profiles/amd-epyc-1t-onnxruntime-fp32-bs1"


def row(report: dict[str, Any], target: float) -> dict[str, Any]:
    lat = report["latency"]
    return {"method": report["method"], "target": target, "measured_ratio": lat["measured_ratio"],
            "measured_ci": lat["measured_ci"], "measured_us": lat["measured_us"],
            "predicted_ratio": lat["predicted_ratio"], "within_5pct": abs(lat["measured_ratio"] / target - 1) <= 0.05,
            "accuracy": report["accuracy"]["finetuned"], "accuracy_before_finetune": report["accuracy"]["pruned"],
            "accuracy_original": report["accuracy"]["original"], "mflops": report["flops"]["pruned"] / 1e6,
            "flops_ratio": report["flops"]["ratio"], "params_k": report["params"]["pruned"] / 1e3,
            "measurements": report["oracle"]["counts"]["measurements"], "wall_s": report["wall_time_s"],
            "widths": report["widths"]}


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((r for r in rows if r["method"] == method and "accuracy" in r), key=lambda r: r["measured_ratio"])
        ax.plot([r["measured_ratio"] for r in pts], [r["accuracy"] for r in pts], "o-", label=method)
        bx.plot([r["measured_ratio"] for r in pts], [r["flops_ratio"] for r in pts], "o-", label=method)
    for target in sorted({r["target"] for r in rows}):
        ax.axvline(target, color="grey", lw=0.5, ls=":")
        bx.axvline(target, color="grey", lw=0.5, ls=":")
    ax.set(xlabel="measured latency / original", ylabel="test accuracy (%)", title=title)
    bx.set(xlabel="measured latency / original", ylabel="FLOPs / original", title="FLOPs at that latency")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet56")
    p.add_argument("--weights", help="trained weights (default runs/MODEL-digits; trained there if missing)")
    p.add_argument("--profile", default=PROFILE)
    p.add_argument("--targets", type=float, nargs="+", default=[0.7, 0.5, 0.35])
    p.add_argument("--methods", nargs="+", default=["splamp", "uniform", "global"])
    p.add_argument("--finetune-epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default="runs/pareto", help="run folders (kept, so a rerun resumes)")
    p.add_argument("--out", default=str(RESULTS / "pruning_pareto.json"))
    args = p.parse_args()

    weights = Path(args.weights or f"runs/{args.model}-digits")
    if not (weights / "weights.pt").exists() and not weights.is_file():
        print(f"training {args.model} on digits into {weights}")
        train_zoo_model(args.model, "digits", weights, TrainConfig(seed=args.seed))
    finetune = TrainConfig(epochs=args.finetune_epochs, lr=0.01, seed=args.seed)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for target in args.targets:
        for method in args.methods:
            out = Path(args.runs) / f"{args.model}-{method}-{target:g}"
            try:
                result = prune(method, args.model, weights, args.profile, target, out=out, finetune=finetune,
                               seed=args.seed, progress=False)
            except PruningError as exc:
                rows.append({"method": method, "target": target, "error": str(exc)})
                print(f"{method:8s} target {target:g}: {exc}")
                continue
            r = row(result.to_dict(), target)
            rows.append(r)
            print(f"{method:8s} target {target:g}: measured {r['measured_ratio']:.3f} (pred {r['predicted_ratio']:.3f})"
                  f"  acc {r['accuracy']:.2f}%  {r['mflops']:.1f} MFLOPs  {r['wall_s']:.0f} s", flush=True)
    report = {"benchmark": "pruning_pareto", "model": args.model, "dataset": "digits", "profile": args.profile,
              "finetune": finetune.to_dict(), "cpu_count": os.cpu_count(), "wall_s": time.perf_counter() - start,
              "rows": rows}
    dump_json(report, args.out)
    plot(rows, Path(args.out).with_suffix(".png"), f"{args.model} on digits, {Path(args.profile).name}")
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.png')}")


if __name__ == "__main__":
    main()
