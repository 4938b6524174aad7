"""How fast is a candidate architecture? ``with_widths``, ``without_blocks``, ``signature``, ``flops``.

Search algorithms describe thousands of candidates; none may build a module. For each model,
each operation is timed with ``timeit`` in repeated batches, and the median time per call is
reported (microseconds), next to the cost of building and tracing the real module for scale.

    python benchmarks/arch_candidates.py [--models resnet56,mobilenetv2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import timeit
from pathlib import Path

import torch

from latbench.arch import trace
from latbench.models import REGISTRY, build_model


def per_call_us(fn, number: int, repeat: int = 7) -> float:
    return statistics.median(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def bench(name: str) -> dict:
    x = torch.randn(1, *REGISTRY[name].input_shape)
    t0 = time.perf_counter()
    model = build_model(name)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    arch = trace(model, x, name)
    trace_s = time.perf_counter() - t0
    rng = random.Random(0)
    full = {g.id: max(1, int(g.channels * rng.uniform(0.3, 1.0))) for g in arch.prunable_groups}
    one = dict([next(iter(full.items()))])
    removable = [b.name for b in arch.blocks if b.removable][:3]
    candidate = arch.with_widths(full)
    row = {
        "model": name, "layers": len(arch.base.layers), "prunable_groups": len(full),
        "build_module_ms": build_s * 1e3, "trace_ms": trace_s * 1e3,
        "with_widths_all_groups_us": per_call_us(lambda: arch.with_widths(full), 2000),
        "with_widths_one_group_us": per_call_us(lambda: arch.with_widths(one), 5000),
        "signature_us": per_call_us(candidate.signature, 2000),
        "flops_us": per_call_us(candidate.flops, 200),
    }
    if removable:
        row["without_blocks_3_us"] = per_call_us(lambda: arch.without_blocks(removable), 5000)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="resnet56,resnet50,mobilenetv2")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "arch_candidates.json"))
    args = p.parse_args()
    rows = [bench(m) for m in args.models.split(",")]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"benchmark": "arch_candidates", "results": rows}, indent=2) + "\n")
    keys = [k for k in rows[0] if k not in ("model",)]
    print(f"{'':28}" + "".join(f"{r['model']:>14}" for r in rows))
    for k in keys:
        print(f"{k:28}" + "".join(f"{r.get(k, float('nan')):14.1f}" for r in rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
