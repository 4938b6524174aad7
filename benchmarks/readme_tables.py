"""The README's result tables, rendered from the committed result files they report.

Each table in the README sits between ``<!-- table: NAME -->`` and ``<!-- /table -->``; ``NAME`` is a key of
``TABLES`` and its function renders the table from its files. After a benchmark is rerun, ``--write``
copies the new numbers into the README; without it the README is checked and every table that disagrees
with its files is named (exit 1). ``tests/test_readme_tables.py`` runs the check.

    PYTHONPATH=benchmarks python benchmarks/readme_tables.py [--write]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pareto_table import accuracy_cell
from pareto_table import table as pareto

from pruners.pipeline import markdown_table

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- table: (?P<name>[\w.-]+) -->\n(?P<body>.*?)\n?<!-- /table -->", re.S)


def _load(name: str) -> dict[str, Any]:
    return json.loads((RESULTS / name).read_text())


def _rows(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _pareto(*names: str) -> Callable[[], str]:
    return lambda: pareto([RESULTS / n for n in names])


NAMES = {"uniform": "uniform", "global": "global", "splamp": "SP-LAMP", "hilp": "HILP", "layerprune": "LayerPrune",
         "lap": "LAP"}
NETWORKS = {"resnet56": "ResNet-56", "mobilenetv2_cifar": "MobileNet-V2", "vgg16": "VGG-16"}


#: the Pareto files with a LAP row and how LAP searched there: ``free`` (any channel count), ``menu v1`` (the
#: groups' chunk widths, one round of the aim, the knob's widths rounded to the nearest menu width), ``menu v2``
#: (a second round of the aim when the first moves it, the knob rounded by largest remainder) or ``menu v3``
#: (``pruners.lap`` now: the aim's correction interpolated in the predicted ratio over up to three rounds), with
#: the machine where it is not the profile's AMD EPYC
LAP_FILES = [("pruning_pareto_hybrid.json", "free"), ("pruning_pareto_hybrid_0.7_lap_steps5_free.json", "free"),
             ("pruning_pareto_hybrid_0.7_lap_steps5.json", "menu v1"),
             ("pruning_pareto_hybrid_0.7_lap_steps5_v3.json", "menu v3, Xeon"),
             ("pruning_pareto_hybrid_0.7_lap_steps5_v3_matched.json", "menu v3, Xeon, uniform at LAP's latency"),
             ("pruning_pareto_hybrid_0.7_lap_steps5_v3_matched_15_epochs.json",
              "menu v3, Xeon, uniform at LAP's latency"),
             ("pruning_pareto_hybrid_0.5.json", "free"),
             ("pruning_pareto_hybrid_0.5_lap_steps5.json", "menu v1"),
             ("pruning_pareto_hybrid_0.5_lap_steps5_v3.json", "menu v3, Xeon"),
             ("pruning_pareto_hybrid_0.5_lap_steps5_v3_matched.json", "menu v3, Xeon, uniform at LAP's latency"),
             ("pruning_pareto_hybrid_0.5_lap_steps5_v3_matched_15_epochs.json",
              "menu v3, Xeon, uniform at LAP's latency"),
             ("pruning_pareto_hybrid_0.35.json", "free"),
             ("pruning_pareto_hybrid_0.35_lap_steps5_free.json", "free"),
             ("pruning_pareto_hybrid_0.35_lap_steps5_aim1.json", "menu v1"),
             ("pruning_pareto_hybrid_0.35_lap_steps5.json", "menu v2"),
             ("pruning_pareto_hybrid_0.35_lap_steps5_seed1.json", "menu v2, agent seed 1"),
             ("pruning_pareto_hybrid_0.35_lap_steps5_v3.json", "menu v3, Xeon"),
             ("pruning_pareto_hybrid_0.35_lap_steps5_v3-seed1.json", "menu v3, Xeon, agent seed 1"),
             ("pruning_pareto_hybrid_0.35_lap_steps5_v3_matched.json", "menu v3, Xeon, uniform at LAP's latency"),
             ("pruning_pareto_hybrid_0.35_lap_steps5_v3-seed1_matched.json",
              "menu v3, Xeon, agent seed 1, uniform at LAP's latency"),
             ("pruning_pareto_hybrid_0.35_lap_steps5_v3_matched_15_epochs.json",
              "menu v3, Xeon, uniform at LAP's latency"),
             ("pruning_pareto_hybrid_0.35_lap_steps5_v3-seed1_matched_15_epochs.json",
              "menu v3, Xeon, agent seed 1, uniform at LAP's latency"),
             ("pruning_pareto_mobilenetv2_cifar_0.7.json", "free"),
             ("pruning_pareto_mobilenetv2_cifar_0.7_lap_steps5.json", "menu v2"),
             ("pruning_pareto_mobilenetv2_cifar_0.7_lap_steps5_v3_matched.json",
              "menu v3, Xeon, uniform at LAP's latency"),
             ("pruning_pareto_mobilenetv2_cifar_0.5.json", "free"),
             ("pruning_pareto_mobilenetv2_cifar_0.5_lap_steps5_free.json", "free"),
             ("pruning_pareto_mobilenetv2_cifar_0.5_lap_steps5.json", "menu v1"),
             ("pruning_pareto_mobilenetv2_cifar_0.35.json", "free"),
             ("pruning_pareto_mobilenetv2_cifar_0.35_lap_steps5.json", "menu v2"),
             ("pruning_pareto_mobilenetv2_cifar_0.35_lap_steps5_v3.json", "menu v3, Xeon"),
             ("pruning_pareto_mobilenetv2_cifar_0.35_lap_steps5_v3_matched.json",
              "menu v3, Xeon, uniform at LAP's latency"),
             ("pruning_pareto_mobilenetv2_cifar_0.35_lap_steps5_v3_matched_15_epochs.json",
              "menu v3, Xeon, uniform at LAP's latency")]


def lap_summary() -> str:
    """LAP against uniform at every target of every Pareto file that has a LAP row; the fine-tuning column is
    the epochs and seeds behind the accuracies."""
    out = []
    for name, widths in LAP_FILES:
        data = _load(name)
        rows = {r["method"]: r for r in data["rows"] if "error" not in r}
        if "lap" not in rows:
            continue
        lap, uni = rows["lap"], rows["uniform"]
        epochs = data.get("seed_finetune_epochs", data["finetune"]["epochs"])
        seeds = len(lap.get("accuracy_seeds", [0]))
        out.append([NETWORKS[data["model"]], f"{lap['target']:g}", widths,
                    str(lap.get("options", {}).get("reward_steps", 0)),
                    f"{epochs} epochs × {seeds} seed{'s' * (seeds > 1)}", accuracy_cell(lap), accuracy_cell(uni),
                    f"{lap['side_by_side']['median']:.3f}", f"{uni['side_by_side']['median']:.3f}",
                    f"{lap['mflops']:.1f}", f"{uni['mflops']:.1f}", f"{lap['wall_s']:.0f} s"])
    return _rows(["network", "target", "search", "reward steps", "fine-tuning", "LAP accuracy", "uniform accuracy",
                  "LAP side by side", "uniform side by side", "LAP MFLOPs", "uniform MFLOPs", "LAP wall time"], out)


def gpu_transfer() -> str:
    """CPU-pruned networks measured on the GPU (graph replay), the rows the README discusses."""
    picks = {"resnet56": [("uniform", 0.5), ("global", 0.5), ("splamp", 0.5), ("hilp", 0.5), ("layerprune", 0.5),
                          ("lap", 0.5), ("uniform", 0.35), ("hilp", 0.35), ("layerprune", 0.35), ("lap", 0.35)],
             "mobilenetv2_cifar": [("uniform", 0.35), ("global", 0.35), ("hilp", 0.35), ("layerprune", 0.35),
                                   ("lap", 0.35)]}
    out = []
    for model, rows in picks.items():
        data = _load(f"gpu_transfer_{model}.json")
        graph = {r["batch"]: r["ratios"] for r in data["runs"] if r["engine"] == "graph"}
        for method, target in rows:
            key = f"{method}@{target:g}"
            cpu = data["cpu"][key]
            out.append([f"{NETWORKS[model]} {NAMES[method]} {target:g}", f"{cpu['cpu_side_by_side']:.3f}",
                        f"{cpu['flops_ratio']:.3f}", f"{cpu['accuracy_mean']:.2f}",
                        *[f"{graph[b][key]['median']:.3f}" for b in (1, 32, 256)]])
    return _rows(["network (CPU target)", "CPU side by side", "FLOPs ratio", "accuracy", "H200 bs 1, graph",
                  "bs 32, graph", "bs 256, graph"], out)


def layer_vs_filter() -> str:
    out = []
    for comparison in _load("layer_vs_filter.json")["comparisons"]:
        for r in comparison["rows"]:
            s = r["side_by_side"]
            out.append([f"{comparison['target']:g}", r["method"], str(r["removed_blocks"]),
                        f"{s['median']:.3f} ({s['low']:.3f}–{s['high']:.3f})", f"{r['flops_ratio']:.3f}",
                        f"{r['accuracy']:.2f}%"])
    return _rows(["target", "method", "removed blocks", "measured side by side (range)", "FLOPs ratio",
                  "test accuracy"], out)


def pool_scaling() -> str:
    rows = _load("pool_scaling.json")["rows"]
    labels = {0: "this process", 1: "a pool of 1 actor", 2: "a pool of 2 actors"}
    out = []
    for actors, label in labels.items():
        mine = sorted((r for r in rows if r["actors"] == actors), key=lambda r: r["repeat"])
        out.append([label, ", ".join(f"{r['wall_s']:.1f} s" for r in mine),
                    ", ".join(f"{r['measure_s']:.1f} s" for r in mine)])
    return _rows(["measured by", "HILP wall time (two runs)", "of which measuring"], out)


def shipped_profiles() -> str:
    """The shipped ONNX Runtime profiles of this VM (AMD EPYC, then Intel Xeon after a host change), from their
    own files."""
    import pandas as pd

    out = []
    for name in ("amd-epyc-1t-onnxruntime-fp32-bs1", "amd-epyc-2t-onnxruntime-fp32-bs1",
                 "intel-r-xeon-r-processor-1t-onnxruntime-fp32-bs1"):
        folder = ROOT / "device_profiles" / name
        meta = json.loads((folder / "profile.json").read_text())
        layers, models = pd.read_csv(folder / "layers.csv"), pd.read_csv(folder / "models.csv")
        sampled = layers[layers["pass"] > 0]  # pass 0: the reference layer's repeats
        refined = int((sampled["pass"] >= 1000).sum())
        threads = meta["settings"].get("threads")
        v = meta["validation"]["lut"]
        out.append([f"`{name}`", f"{meta['fingerprint']['cpu']}, {meta['created'][:10]}",
                    str(threads) if threads else "2 (engine default)",
                    f"{meta['timings_s']['total'] / 60:.1f} min",
                    f"{len(sampled):,}" + (f" ({refined} by refinement)" if refined else ""),
                    f"{len(models)} ({(models['split'] == 'calib').sum()} calibration, {v['n']} held out)",
                    str(meta["plan"]["step"]),
                    f"{v['within_10pct']:.0%} / {v['rmspe']:.1%} / {v['spearman']:.3f}"])
    return _rows(["profile", "CPU, made", "threads", "profiling time", "layer samples", "networks", "step",
                  "its own held-out networks: LUT within ±10% / RMSPE / Spearman"], out)


FAMILIES = {"odd_resnet": "ResNet, odd widths", "vgg11_like": "VGG-11-like",
            "mobilenet_e4": "MobileNet-V2-like (expansion 4)"}
PREDICTOR_NAMES = {"lut": "LUT", "xgb": "XGBoost", "rf": "random forest"}


def _shares(scores: dict[str, Any], suffix: str) -> str:
    return " / ".join(f"{scores[f'{k}{suffix}']['within_10pct']:.0%}" for k in PREDICTOR_NAMES)


def extension_run(name: str) -> Callable[[], str]:
    """One ``predictor_accuracy.py --extend`` run: per family, the extension, the best predictor before it
    (re-anchored), and after it each layer-sum predictor with the family's own networks (``+anchored``) and
    re-anchored as ``latbench predict --reanchor`` does."""
    def render() -> str:
        out = []
        for family, r in _load(name)["families"].items():
            ext, before, after = r["extension"], r["before"], r["after"]
            usable = [k for k in PREDICTOR_NAMES if "within_10pct" in before.get(f"{k}+reanchored", {})]
            best = max(usable, key=lambda k: before[f"{k}+reanchored"]["within_10pct"])

            out.append([FAMILIES[family.rsplit(":", 1)[-1]],
                        f"{ext['minutes']:.1f} min, {ext['layer_measurements']} layer + {ext['network_measurements']} "
                        f"network measurements", f"{before[f'{best}+reanchored']['within_10pct']:.0%} "
                        f"({PREDICTOR_NAMES[best]})", _shares(after, "+anchored"), _shares(after, "+reanchored"),
                        f"{after['lut+anchored']['median_error']:+.1%} ± {after['lut+anchored']['error_sd']:.1%}",
                        f"{after['lut']['spearman']:.2f}"])
        return _rows(["family", "extension", "before, best +reanchored", "after +anchored, LUT / XGBoost / random "
                      "forest", "after +reanchored, LUT / XGBoost / random forest", "LUT +anchored: median error ± sd",
                      "Spearman after (LUT)"], out)
    return render


def lap_reward_signal() -> str:
    data = _load("lap_reward_signal_resnet56_0.462.json")
    out = [[str(k), f"{v['spearman']:+.2f}", f"{v['picked_finetuned']:.2f}", f"{v['reward_s']:.1f} s"]
           for k, v in data["summary"].items()]
    return _rows(["SGD steps before the check", "Spearman with fine-tuned accuracy",
                  "fine-tuned accuracy of its first pick", "seconds per reward"], out)


def pipeline_demo() -> str:
    """The final table of ``latbench pipeline``, as the pipeline itself prints it."""
    return markdown_table(_load("pipeline_demo.json")["rows"])


TABLES: dict[str, Callable[[], str]] = {
    "pipeline-demo": pipeline_demo,
    "lap-reward-signal": lap_reward_signal,
    "shipped-profiles": shipped_profiles,
    "extension-xeon-grouped": extension_run("extension_accuracy_xeon_grouped.json"),
    "pareto-resnet56": _pareto("pruning_pareto.json"),
    "pareto-resnet56-0.7": _pareto("pruning_pareto_hybrid.json"),
    "pareto-resnet56-0.5": _pareto("pruning_pareto_hybrid_0.5.json"),
    "pareto-resnet56-0.35": _pareto("pruning_pareto_hybrid_0.35.json"),
    "pareto-mobilenetv2": _pareto(*(f"pruning_pareto_mobilenetv2_cifar_{t}.json" for t in ("0.7", "0.5", "0.35"))),
    "pareto-vgg16": _pareto("pruning_pareto_vgg16_0.7.json", "pruning_pareto_vgg16_0.5.json",
                            "pruning_pareto_vgg16_0.35.json"),
    "lap-summary": lap_summary,
    "gpu-transfer": gpu_transfer,
    "layer-vs-filter": layer_vs_filter,
    "pool-scaling": pool_scaling,
}


def blocks(text: str) -> list[tuple[str, str]]:
    """(name, table as written) of every marked table, in order."""
    return [(m["name"], m["body"].strip()) for m in BLOCK.finditer(text)]


def stale(text: str) -> list[str]:
    """Problems of ``text``'s marked tables: unknown names, tables missing or repeated, tables whose cells
    disagree with their files (named with the first differing line)."""
    found = blocks(text)
    names = [n for n, _ in found]
    problems = [f"{n}: no such table" for n in names if n not in TABLES]
    problems += [f"{n}: not in the README" for n in TABLES if n not in names]
    problems += [f"{n}: marked {names.count(n)} times" for n in TABLES if names.count(n) > 1]
    for name, body in found:
        if name in TABLES and body != (want := TABLES[name]()):
            line = next((f"README '{a}' / file '{b}'" for a, b in zip(body.splitlines(), want.splitlines(),
                                                                       strict=False) if a != b), "row count differs")
            problems.append(f"{name}: {line}")
    return problems


def render(text: str) -> str:
    """``text`` with every marked table rendered again from its files."""
    return BLOCK.sub(lambda m: (f"<!-- table: {m['name']} -->\n{TABLES[m['name']]()}\n<!-- /table -->"
                                if m["name"] in TABLES else m[0]), text)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help="copy every table's numbers from its files into the README")
    args = p.parse_args()
    text = README.read_text()
    if args.write:
        README.write_text(render(text))
        text = README.read_text()
    problems = stale(text)
    for line in problems:
        print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
