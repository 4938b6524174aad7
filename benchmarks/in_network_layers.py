"""Convolutions inside a network against the same convolutions alone (why a layer sum needs a traffic term).

A LUT prices a network as the sum of its layers, each measured alone with its weights warm in
cache. In a whole network the weights of every layer pass through the caches on each inference.
This benchmark times each convolution both ways with ONNX Runtime's own profiler (kernel time of
the layer's nodes, median over ``--runs`` inferences): once inside the whole network, once as the
profiler's isolated sample of the same shape (conv + BN + activation at its input size). Networks
and their layers alternate, ``--repeats`` times, and each time is the median over the repeats.

Per network it reports the ratio of summed in-network to summed isolated conv time, split by
whether a conv's channels are on ONNX Runtime's 16-channel blocked layout, and per (output
channels, output size) group. ``--keep`` adds a uniformly narrowed copy of each network (widths
off the blocked layout).

    python benchmarks/in_network_layers.py [--models resnet56 vgg16 mobilenetv2_cifar] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from latbench.backends import require_backend
from latbench.jsonio import dump_json
from latbench.models.family import family
from latbench.profiler.microbench import build_layer

RESULTS = Path(__file__).resolve().parent / "results"
BLOCK = 16  # ONNX Runtime's NCHWc block on AVX-512
CONV_OPS = ("conv", "dwconv")


def on_layout(spec) -> bool:
    return spec.in_channels % BLOCK == 0 and spec.out_channels % BLOCK == 0


def network_conv_times(backend, fam, arch, runs: int) -> dict[str, float]:
    """In-network kernel time per conv layer (µs; all of the layer's engine nodes)."""
    table = backend.deploy(fam.build(arch), fam.example()).layer_times(runs)
    return table[table.layer != ""].groupby("layer")["time_us"].sum().to_dict()


def isolated_conv_time(backend, spec, runs: int) -> float:
    """Kernel time of the isolated sample's conv node (µs; layout reorders excluded)."""
    module, x = build_layer(spec)
    table = backend.deploy(module, x).layer_times(runs)
    return float(table[table.op.str.contains("Conv")]["time_us"].sum())


def uniform(arch, keep: float):
    return arch.with_widths({g.id: max(1, round(g.channels * keep)) for g in arch.prunable_groups})


def summarise(name: str, arch, inside: dict[str, list[float]], alone: dict, weights_mb: float) -> dict:
    specs = {n: s for n, s in arch.layer_specs() if s.op in CONV_OPS and n in inside}
    rows = [{"layer": n, "in_channels": s.in_channels, "out_channels": s.out_channels, "out_hw": list(s.out_hw),
             "op": s.op, "on_layout": on_layout(s), "in_network_us": float(np.median(inside[n])),
             "isolated_us": float(np.median(alone[s]))} for n, s in specs.items()]
    for r in rows:
        r["ratio"] = r["in_network_us"] / r["isolated_us"]

    def ratio(sel) -> float | None:
        sel = list(sel)
        return sum(r["in_network_us"] for r in sel) / sum(r["isolated_us"] for r in sel) if sel else None

    groups = defaultdict(list)
    for r in rows:
        groups[(r["out_channels"], r["out_hw"][0])].append(r)
    return {"network": name, "weights_mb": round(weights_mb, 2), "convs": len(rows),
            "ratio_all": ratio(rows), "ratio_on_layout": ratio(r for r in rows if r["on_layout"]),
            "ratio_off_layout": ratio(r for r in rows if not r["on_layout"]),
            "by_group": [{"out_channels": c, "out_hw": hw, "convs": len(g), "ratio": ratio(g)}
                         for (c, hw), g in sorted(groups.items())],
            "rows": rows}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet56", "vgg16", "mobilenetv2_cifar"])
    p.add_argument("--keep", type=float, default=0.6, help="also a uniformly narrowed copy (0: none)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--runs", type=int, default=100, help="inferences per profiled session")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(RESULTS / "in_network_layers.json"))
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    backend = require_backend("onnxruntime", threads=args.threads)
    nets = []
    for model in args.models:
        fam = family(model)
        arch = fam.trace(1)
        nets.append((model, fam, arch))
        if args.keep:
            nets.append((f"{model}@{args.keep:g}", fam, uniform(arch, args.keep)))
    inside = {name: defaultdict(list) for name, _, _ in nets}
    alone: dict = defaultdict(list)
    start = time.perf_counter()
    for rep in range(args.repeats):
        for name, fam, arch in nets:
            for layer, t in network_conv_times(backend, fam, arch, args.runs).items():
                inside[name][layer].append(t)
            for spec in {s for _, s in arch.layer_specs() if s.op in CONV_OPS}:
                if len(alone[spec]) <= rep:
                    alone[spec].append(isolated_conv_time(backend, spec, args.runs))
            print(f"repeat {rep + 1}/{args.repeats}: {name} ({time.perf_counter() - start:.0f} s)", flush=True)
    results = [summarise(name, arch, inside[name], alone, 4 * arch.params() / 1e6) for name, _, arch in nets]
    report = {"benchmark": "in_network_layers", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": backend.fingerprint(), "runs": args.runs, "repeats": args.repeats,
              "wall_s": round(time.perf_counter() - start, 1), "networks": results}
    dump_json(report, args.out)
    for r in results:
        fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        print(f"{r['network']:>24}: {r['weights_mb']:6.1f} MB weights, in-network / isolated conv time "
              f"{fmt(r['ratio_all'])} (on layout {fmt(r['ratio_on_layout'])}, off {fmt(r['ratio_off_layout'])})")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
