"""Accuracy against *measured* latency: latency-aware pruning methods vs the FLOPs-era baselines.

A network trained on digits (``latbench train``; trained here first if ``--weights`` has no weights) is pruned
by every method to every measured latency target on the profile's backend (ONNX Runtime on this CPU by
default), each fine-tuned for the same number of epochs with the same seed, then measured interleaved with the
original (``pruners.prune.prune``). Every run keeps its folder under ``--runs``, so an interrupted benchmark
resumes where it stopped. A shared machine drifts between measurements by more than the ±5% a target allows,
so the networks of every method at one target are then also measured side by side in one interleaved
comparison with the original, ``--repeats`` times (median and range reported). ``--match-to METHOD`` prunes
with METHOD first, then the others to the latency it measured, every measurement of theirs on its network's
scale (``pruners.oracle.Anchor``), so all land at its latency in any machine state. Writes one JSON row per
(method, target) and a Pareto plot (test accuracy against measured latency ratio, one line per method; FLOPs in
a second panel).

    python benchmarks/pruning_pareto.py [--model resnet56] [--targets 0.7 0.5 0.35]
        [--methods splamp uniform global hilp] [--option hilp.prefilter=8] [--finetune-epochs 5]
        [--match-to lap]
    python benchmarks/pruning_pareto.py --seeds 3 [--finetune-epochs 15] --out FILE   # fine-tune FILE's runs again
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

from latbench.arch import trace
from latbench.device_profile import DeviceProfile
from latbench.jsonio import dump_json
from pruners.compare import side_by_side as compare_side_by_side
from pruners.data import load_dataset, loaders
from pruners.errors import PruningError
from pruners.method import options_given
from pruners.oracle import Anchor
from pruners.prune import prune
from pruners.result import load_pruned, search_cost
from pruners.surgery import Decision, apply
from pruners.train import TrainConfig, evaluate, fit
from pruners.trained import load_trained, train_zoo_model

RESULTS = Path(__file__).parent / "results"
PROFILE = "device_profiles/amd-epyc-1t-onnxruntime-fp32-bs1"


def row(report: dict[str, Any], target: float) -> dict[str, Any]:
    """The run's row under the benchmark's ``target``; ``within_5pct`` of the ratio the run aimed at (``target``,
    or another method's measured latency with ``--match-to``)."""
    lat = report["latency"]
    aim = report["target"]["ratio"]
    return {"method": report["method"], "target": target, "measured_ratio": lat["measured_ratio"],
            "measured_ci": lat["measured_ci"], "measured_us": lat["measured_us"],
            "predicted_ratio": lat["predicted_ratio"], "within_5pct": abs(lat["measured_ratio"] / aim - 1) <= 0.05,
            "accuracy": report["accuracy"]["finetuned"], "accuracy_before_finetune": report["accuracy"]["pruned"],
            "accuracy_original": report["accuracy"]["original"], "mflops": report["flops"]["pruned"] / 1e6,
            "flops_ratio": report["flops"]["ratio"], "params_k": report["params"]["pruned"] / 1e3,
            **search_cost(report),
            "widths": report["widths"], "removed_blocks": len(report["removed_blocks"]),
            "removed_layers": len(report.get("removed_layers", [])),
            "options": report["settings"].get("options", {})}


def run_folder(runs: str, model: str, method: str, target: float, match_to: str | None = None) -> Path:
    """A run's folder; one pruned to another method's measured latency says so (it aims elsewhere)."""
    matched = f"-at-{match_to}" if match_to and method != match_to else ""
    return Path(runs) / f"{model}-{method}-{target:g}{matched}"


def side_by_side(model: str, original: torch.nn.Module, folders: dict[str, Path], profile: str, budget_s: float,
                 repeats: int) -> dict[str, dict[str, Any]]:
    """Every method's network at one target (from its run folder) measured side by side with the original
    (``pruners.compare.side_by_side``)."""
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    networks = {m: load_pruned(model, f, original) for m, f in folders.items()}
    return compare_side_by_side(DeviceProfile.load(profile), original, networks, x, budget_s, repeats)


def seeds_cache(folder: Path, epochs: int) -> Path:
    """Where a run's per-seed accuracies are kept: ``seeds.json`` for the epochs the run fine-tuned with,
    ``seeds-{epochs}ep.json`` for another fine-tuning length."""
    ran = json.loads((folder / "report.json").read_text())["settings"]["finetune"]["epochs"]
    return folder / ("seeds.json" if epochs == ran else f"seeds-{epochs}ep.json")


def accuracy_over_seeds(model: str, weights: Path, folder: Path, seeds: list[int], epochs: int) -> list[float]:
    """Test accuracy of a run's decision fine-tuned again for ``epochs`` with each seed (:func:`seeds_cache`)."""
    cache = seeds_cache(folder, epochs)
    done = json.loads(cache.read_text()) if cache.exists() else {}
    splits = load_dataset("digits", None, seed=0)
    original = load_trained(model, weights, splits.num_classes)
    x = torch.randn(1, *splits.input_shape, generator=torch.Generator().manual_seed(0))
    arch = trace(original, x, model)
    decision = Decision.from_dict(json.loads((folder / "decision.json").read_text()))
    for seed in seeds:
        if str(seed) in done:
            continue
        pruned = apply(original, arch, decision, x)[0]
        train_loader, val_loader, test_loader = loaders(splits, 64, seed)
        fit(pruned, train_loader, val_loader, TrainConfig(epochs=epochs, lr=0.01, seed=seed), progress=False)
        done[str(seed)] = evaluate(pruned, test_loader)
        dump_json(done, cache)
    return [done[str(s)] for s in seeds]


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((r for r in rows if r["method"] == method and "accuracy" in r), key=lambda r: r["measured_ratio"])
        acc = [r.get("accuracy_mean", r["accuracy"]) for r in pts]
        ax.errorbar([r["measured_ratio"] for r in pts], acc, yerr=[r.get("accuracy_std", 0.0) for r in pts],
                    fmt="o-", capsize=3, label=method)
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet56")
    p.add_argument("--weights", help="trained weights (default runs/MODEL-digits; trained there if missing)")
    p.add_argument("--profile", default=PROFILE)
    p.add_argument("--targets", type=float, nargs="+", default=[0.7, 0.5, 0.35])
    p.add_argument("--methods", nargs="+", default=["splamp", "uniform", "global"])
    p.add_argument("--option", action="append", default=[], metavar="METHOD.NAME=VALUE",
                   help="a method's option, e.g. hilp.prefilter=8 (repeatable)")
    p.add_argument("--finetune-epochs", type=int,
                   help="fine-tuning epochs (default 5; with --seeds: the run's own, or this many again)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--measure-budget", type=float, default=20.0,
                   help="seconds of the final interleaved measurement of each pruned network (default 20)")
    p.add_argument("--joint-budget", type=float, default=30.0,
                   help="seconds of each side-by-side comparison of all methods at one target (default 30)")
    p.add_argument("--repeats", type=int, default=3, help="side-by-side comparisons per target (default 3)")
    p.add_argument("--runs", default="runs/pareto", help="run folders (kept, so a rerun resumes)")
    p.add_argument("--match-to", metavar="METHOD",
                   help="prune with METHOD first, then the others to the latency it measured, on its network's scale")
    p.add_argument("--out", default=str(RESULTS / "pruning_pareto.json"))
    p.add_argument("--seeds", type=int, default=0,
                   help="with N > 0: only fine-tune every run's decision again with seeds 0..N-1 and add the accuracy "
                        "mean and spread to the existing JSON (with --finetune-epochs E other than the runs': to a "
                        "copy of it named ..._E_epochs.json)")
    return p


def main() -> None:
    args = parser().parse_args()
    if args.seeds:
        add_seeds(args)
        return

    weights = Path(args.weights or f"runs/{args.model}-digits")
    if not (weights / "weights.pt").exists() and not weights.is_file():
        print(f"training {args.model} on digits into {weights}")
        train_zoo_model(args.model, "digits", weights, TrainConfig(seed=args.seed))
    finetune = TrainConfig(epochs=args.finetune_epochs or 5, lr=0.01, seed=args.seed)
    methods = args.methods
    if args.match_to:
        if args.match_to not in methods:
            raise SystemExit(f"--match-to {args.match_to}: not one of --methods {' '.join(methods)}")
        methods = [args.match_to, *(m for m in methods if m != args.match_to)]
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for target in args.targets:
        anchor = None
        for method in methods:
            out = run_folder(args.runs, args.model, method, target, args.match_to)
            aim = target if anchor is None else anchor.ratio
            try:
                result = prune(method, args.model, weights, args.profile, aim, out=out, finetune=finetune,
                               seed=args.seed, measure_budget_s=args.measure_budget, progress=False,
                               options=options_given(args.option, method), anchor=anchor)
            except PruningError as exc:
                rows.append({"method": method, "target": target, "error": str(exc)})
                print(f"{method:8s} target {target:g}: {exc}")
                continue
            if method == args.match_to:
                anchor = Anchor(result.model, result.latency["measured_ratio"], method)
            r = row(result.to_dict(), target) | {"folder": str(out)}
            if aim != target:
                r |= {"matched_to": args.match_to, "aim": aim}
            rows.append(r)
            print(f"{method:8s} target {target:g}: measured {r['measured_ratio']:.3f} (pred {r['predicted_ratio']:.3f})"
                  f"  acc {r['accuracy']:.2f}%  {r['mflops']:.1f} MFLOPs  {r['wall_s']:.0f} s", flush=True)
    original = load_trained(args.model, weights, 10).eval()
    torch.set_num_threads(1)
    for target in args.targets:
        done = {r["method"]: Path(r["folder"]) for r in rows if r["target"] == target and "error" not in r}
        if len(done) < 1:
            continue
        joint = side_by_side(args.model, original, done, args.profile, args.joint_budget, args.repeats)
        for r in rows:
            if r["target"] == target and r["method"] in joint:
                j = joint[r["method"]]
                r["side_by_side"] = j
                r["side_by_side_within_5pct"] = abs(j["median"] / target - 1) <= 0.05
                if r.get("matched_to") in joint:  # the latency ratio to the matched network, repeat by repeat
                    r["side_by_side_to_matched"] = statistics.median(
                        a / b for a, b in zip(j["all"], joint[r["matched_to"]]["all"], strict=True))
        print(f"target {target:g} side by side: " + "  ".join(f"{m} {j['median']:.3f} ({j['low']:.3f}-{j['high']:.3f})"
                                                              for m, j in joint.items()), flush=True)
    report = {"benchmark": "pruning_pareto", "model": args.model, "dataset": "digits", "profile": args.profile,
              "finetune": finetune.to_dict(), "cpu_count": os.cpu_count(), "wall_s": time.perf_counter() - start,
              "rows": rows}
    dump_json(report, args.out)
    plot(rows, Path(args.out).with_suffix(".png"), f"{args.model} on digits, {Path(args.profile).name}")
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.png')}")


def add_seeds(args: argparse.Namespace) -> None:
    """Fine-tune every row's decision again with seeds 0..N-1; for another length than the runs', into a copy of
    the JSON (its ``seed_finetune_epochs`` says how long), so that both lengths' results are kept."""
    out = Path(args.out)
    report = json.loads(out.read_text())
    epochs = args.finetune_epochs or report["finetune"]["epochs"]
    if epochs != report["finetune"]["epochs"]:
        out = out.with_name(f"{out.stem}_{epochs}_epochs.json")
        report["seed_finetune_epochs"] = epochs
    weights = Path(args.weights or f"runs/{args.model}-digits")
    seeds = list(range(args.seeds))
    for r in report["rows"]:
        if "error" in r:
            continue
        folder = Path(r.get("folder") or run_folder(args.runs, args.model, r["method"], r["target"]))
        cost = json.loads((folder / "search.json").read_text()).get("cost") or {}
        if "wall_s" in cost:  # a row written by a resumed call: what the searching run spent, from its record
            r["measurements"], r["wall_s"] = cost["measurements"], cost["wall_s"]
        accs = accuracy_over_seeds(args.model, weights, folder, seeds, epochs)
        r["accuracy_seeds"] = accs
        r["accuracy_mean"] = statistics.mean(accs)
        r["accuracy_std"] = statistics.stdev(accs) if len(accs) > 1 else 0.0
        print(f"{r['method']:8s} target {r['target']:g}: accuracy {r['accuracy_mean']:.2f} ± {r['accuracy_std']:.2f} "
              f"over seeds {seeds}, {epochs} epochs", flush=True)
    dump_json(report, out)
    plot(report["rows"], out.with_suffix(".png"), f"{args.model} on digits, {Path(args.profile).name}")


if __name__ == "__main__":
    main()
