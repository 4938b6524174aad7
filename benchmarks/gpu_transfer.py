"""Networks pruned for one device, measured on another: does a latency cut made for this CPU carry to a GPU?

Every run folder of ``pruning_pareto.py`` (``RUNS/MODEL-METHOD-TARGET/arch.json``) is rebuilt from its
architecture (weights do not change latency) and measured side by side with the original with the torch
backend on ``--device``, at each batch size, eagerly (kernel launches included, as a framework runs it) and
as CUDA-graph replays (launches removed), ``--repeats`` interleaved comparisons each (median and range).
The CPU's side-by-side ratio, the FLOPs ratio and the test accuracy come from the committed Pareto results
(``--pareto``) so that one table sets each network's CPU speed-up against its GPU one. Only ``latbench`` is
imported: the GPU machine needs no pruning library.

The committed results ran on the GPU machine over copies of the run folders' ``arch.json`` files:

    python3 benchmarks/gpu_transfer.py --runs gpu_archs/pareto-hybrid --targets 0.7 0.5 0.35 --batches 1 32 256 \\
        --budget 2 --pareto benchmarks/results/pruning_pareto_hybrid*.json --out gpu_transfer_resnet56.json
    python3 benchmarks/gpu_transfer.py --model mobilenetv2_cifar --runs gpu_archs/pareto-mbv2 [same options] \\
        --pareto benchmarks/results/pruning_pareto_mobilenetv2_cifar_*.json --out gpu_transfer_mobilenetv2_cifar.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from latbench.arch import Arch
from latbench.backends import require_backend
from latbench.jsonio import dump_json
from latbench.measure import MeasureSettings, compare
from latbench.models import build_candidate, build_model

RESULTS = Path(__file__).resolve().parent / "results"


def networks(model: str, runs: Path, targets: list[float]) -> dict[str, torch.nn.Module]:
    """``METHOD@TARGET`` -> the run folder's architecture, randomly initialised."""
    out = {}
    for target in targets:
        for arch_file in sorted(runs.glob(f"{model}-*-{target:g}/arch.json")):
            method = arch_file.parent.name[len(model) + 1:-len(f"-{target:g}")]
            out[f"{method}@{target:g}"] = build_candidate(model, Arch.from_json(arch_file), num_classes=10).eval()
    if not out:
        raise SystemExit(f"no {model}-*-TARGET/arch.json under {runs} for targets {targets}")
    return out


def cpu_rows(paths: list[str]) -> dict[str, dict[str, Any]]:
    """``METHOD@TARGET`` -> the committed Pareto row's side-by-side CPU ratio, FLOPs ratio and accuracy."""
    out = {}
    for path in paths:
        for r in json.loads(Path(path).read_text())["rows"]:
            if "error" in r:
                continue
            out[f"{r['method']}@{r['target']:g}"] = {
                "cpu_side_by_side": r.get("side_by_side", {}).get("median"), "flops_ratio": r.get("flops_ratio"),
                "accuracy_mean": r.get("accuracy_mean", r.get("accuracy")), "removed_blocks": r.get("removed_blocks")}
    return out


def measure(original: torch.nn.Module, nets: dict[str, torch.nn.Module], device: str, precision: str, batch: int,
            engine: str, budget_s: float, repeats: int) -> dict[str, Any]:
    """One engine at one batch: every network's latency ratio to the original over ``repeats`` comparisons."""
    backend = require_backend("torch", device=device, precision=precision, cuda_graph=engine == "graph")
    x = torch.randn(batch, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    runnables = {"original": backend.deploy(original, x)} | {k: backend.deploy(n, x) for k, n in nets.items()}
    ratios: dict[str, list[float]] = {k: [] for k in nets}
    original_us = []
    for _ in range(repeats):
        result = compare(runnables, MeasureSettings(target_rel_ci=0.005, budget_s=budget_s), baseline="original")
        original_us.append(result.measurements["original"].median_us)
        for k in nets:
            ratios[k].append(result.ratios[k].ratio)
    return {"batch": batch, "engine": engine, "original_us": statistics.median(original_us),
            "ratios": {k: {"median": statistics.median(v), "low": min(v), "high": max(v)} for k, v in ratios.items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet56")
    p.add_argument("--runs", default="runs/pareto-hybrid", help="folders MODEL-METHOD-TARGET holding arch.json")
    p.add_argument("--targets", type=float, nargs="+", default=[0.5, 0.35])
    p.add_argument("--pareto", nargs="*", default=[], help="pruning_pareto result files (CPU ratios, accuracy)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--precision", default="fp16")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--engines", nargs="+", default=["eager", "graph"], choices=["eager", "graph"])
    p.add_argument("--budget", type=float, default=3.0, help="seconds of each interleaved comparison")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(RESULTS / "gpu_transfer.json"))
    args = p.parse_args()
    if args.device == "cpu" and "graph" in args.engines:
        args.engines = ["eager"]
    start = time.perf_counter()
    original = build_model(args.model, num_classes=10)
    nets = networks(args.model, Path(args.runs), args.targets)
    runs = []
    for batch in args.batches:
        for engine in args.engines:
            row = measure(original, nets, args.device, args.precision, batch, engine, args.budget, args.repeats)
            print(f"batch {batch} {engine}: original {row['original_us']:.1f} us; "
                  + ", ".join(f"{k} {v['median']:.3f}" for k, v in row["ratios"].items()), flush=True)
            runs.append(row)
    device = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    dump_json({"benchmark": "gpu_transfer", "model": args.model, "device": device, "precision": args.precision,
               "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "runs": runs,
               "cpu": cpu_rows(args.pareto), "wall_s": round(time.perf_counter() - start, 1)}, args.out)


if __name__ == "__main__":
    main()
