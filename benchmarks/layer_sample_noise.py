"""How far one layer sample of a profile can be off: the same layers measured again, three ways, in one run.

A random subset of a profile's layer samples (``--samples``, at least 15 us each) is measured now, in this order:

* **A**: as the profiler measures them (``latbench.profiler.layer_group``): in groups of ``--group``, interleaved
  with the profile's reference layer, each as its paired ratio to the reference layer;
* **C**: one by one, each alone (``LAYER_SETTINGS``), the reference layer every 20 samples and interpolated in
  between, as ``reference_factors`` does: how the shipped CPU profiles' samples were measured;
* **B**: as A, again.

A and B are a minute or two apart with C between them, so A against B shows how repeatable the interleaved way
is, and C against A and B how far the profiler's way lands from it over the same stretch of time. The profile's
own stored samples (reference-corrected, relative to the reference layer's median) are compared too. Each
comparison is the spread of log ratios around their median (a common change of speed cancels): median absolute
deviation, 90th percentile, share within ±10%, largest.

``--modes`` samples are also deployed four times each and timed in 50 ms blocks, round-robin, eight rounds:
per sample, the 10th and 90th percentile of its block medians show the speed modes the machine switches between.

    PYTHONPATH=benchmarks python benchmarks/layer_sample_noise.py [--profile DIR] [--samples 120] [--group 20]
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from latbench.device_profile import DeviceProfile
from latbench.jsonio import dump_json
from latbench.measure import measure
from latbench.profile import reference_factors
from latbench.profile.tables import row_to_spec
from latbench.profiler.channel_step import reference_layer
from latbench.profiler.layer_group import GROUP_SIZE, measure_group
from latbench.profiler.microbench import build_layer
from latbench.profiler.run import LAYER_SETTINGS

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PROFILE = ROOT / "device_profiles" / "intel-r-xeon-r-processor-1t-onnxruntime-fp32-bs1"
MIN_US = 15.0
REFERENCE_EVERY = 20  # one by one: layer samples between two measurements of the reference layer


def spread(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Spread of log(a / b) over the keys of ``a`` around its median (a common factor cancels)."""
    keys = [k for k in a if k in b]
    logs = np.log(np.array([a[k] for k in keys]) / np.array([b[k] for k in keys]))
    dev = np.abs(logs - np.median(logs))
    return {"n": len(keys), "median_abs_pct": float(100 * np.median(dev)),
            "p90_abs_pct": float(100 * np.quantile(dev, 0.9)), "within_10pct": float(np.mean(dev < np.log(1.1))),
            "max_abs_pct": float(100 * dev.max())}


def interleaved(backend, reference, specs: dict[str, Any], group: int) -> dict[str, float]:
    """Each layer's latency relative to the reference layer, measured in groups as the profiler does."""
    keys, out = list(specs), {}
    for start in range(0, len(keys), group):
        chunk = keys[start:start + group]
        ref, rows = measure_group(backend, reference, [specs[k] for k in chunk], LAYER_SETTINGS)
        out |= {k: r["median_us"] / ref["median_us"] for k, r in zip(chunk, rows, strict=True)}
    return out


def one_by_one(backend, reference, specs: dict[str, Any]) -> dict[str, float]:
    """Each layer alone, the reference layer every ``REFERENCE_EVERY`` samples (the shipped profiles' older way)."""
    raw, refs = {}, []
    for i, (key, spec) in enumerate(specs.items()):
        if i % REFERENCE_EVERY == 0:
            refs.append((i, measure(backend.deploy(*build_layer(reference)), LAYER_SETTINGS).median_us))
        raw[key] = measure(backend.deploy(*build_layer(spec)), LAYER_SETTINGS).median_us
    refs.append((len(specs), measure(backend.deploy(*build_layer(reference)), LAYER_SETTINGS).median_us))
    at = np.interp(np.arange(len(specs)), [i for i, _ in refs], [v for _, v in refs])
    return {k: v / r for (k, v), r in zip(raw.items(), at, strict=True)}


def modes(backend, specs: dict[str, Any], copies: int = 4, rounds: int = 8, block_s: float = 0.05) -> list[dict]:
    runs = {(k, c): backend.deploy(*build_layer(s)) for k, s in specs.items() for c in range(copies)}
    blocks: dict[tuple, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for k, run in runs.items():
            for _ in range(5):
                run()
            times, start = [], time.perf_counter()
            while time.perf_counter() - start < block_s:
                t0 = time.perf_counter()
                run()
                times.append(time.perf_counter() - t0)
            blocks[k].append(1e6 * float(np.median(times)))
    out = []
    for key, spec in specs.items():
        values = np.concatenate([blocks[(key, c)] for c in range(copies)])
        fast, slow = np.quantile(values, [0.1, 0.9])
        out.append({"key": key, "op": spec.op, "in_channels": spec.in_channels, "out_channels": spec.out_channels,
                    "block_medians_us": [blocks[(key, c)] for c in range(copies)], "p10_us": float(fast),
                    "p90_us": float(slow), "p90_over_p10": float(slow / fast)})
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default=str(PROFILE))
    p.add_argument("--samples", type=int, default=120)
    p.add_argument("--group", type=int, default=GROUP_SIZE, help="layers per group (default: the profiler's)")
    p.add_argument("--modes", type=int, default=5, help="samples timed in blocks to show the speed modes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(RESULTS / "layer_sample_noise.json"))
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    profile = DeviceProfile.load(args.profile)
    layers = profile.layers.assign(corrected=profile.layers["median_us"].astype(float)
                                   * reference_factors(profile.layers))
    ref_median = float(layers.loc[layers["shape_key"] == "reference", "median_us"].median())
    pool = layers[(layers["shape_key"] != "reference") & (layers["corrected"] >= MIN_US)]
    picked = pool.iloc[np.random.default_rng(args.seed).choice(len(pool), min(args.samples, len(pool)), replace=False)]
    specs = {str(row["key"]): row_to_spec(row) for _, row in picked.iterrows()}
    backend = profile.backend()
    reference = reference_layer(profile.meta)
    started = time.perf_counter()
    now: dict[str, dict[str, float]] = {}
    now["A"] = interleaved(backend, reference, specs, args.group)
    print(f"A: interleaved with the reference layer ({time.perf_counter() - started:.0f} s)", flush=True)
    now["C"] = one_by_one(backend, reference, specs)
    print(f"C: one by one, each alone ({time.perf_counter() - started:.0f} s)", flush=True)
    now["B"] = interleaved(backend, reference, specs, args.group)
    print(f"B: interleaved again ({time.perf_counter() - started:.0f} s)", flush=True)
    stored = {str(r["key"]): float(r["corrected"]) / ref_median for _, r in picked.iterrows()}
    mode_rows = modes(backend, dict(list(specs.items())[:args.modes]))
    comparisons = {"A vs B": spread(now["A"], now["B"]), "C vs A": spread(now["C"], now["A"]),
                   "C vs B": spread(now["C"], now["B"]), "profile vs A": spread(stored, now["A"]),
                   "profile vs B": spread(stored, now["B"])}
    report = {"benchmark": "layer_sample_noise", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": backend.fingerprint(), "profile": profile.name, "samples": len(specs), "group": args.group,
              "wall_s": round(time.perf_counter() - started, 1), "comparisons": comparisons, "modes": mode_rows,
              "values": {"A": now["A"], "B": now["B"], "C": now["C"], "profile": stored}}
    dump_json(report, args.out)
    for name, s in comparisons.items():
        print(f"{name:>14}: median |dev| {s['median_abs_pct']:.1f}%, p90 {s['p90_abs_pct']:.1f}%, "
              f"within ±10% {s['within_10pct']:.0%}, max {s['max_abs_pct']:.0f}% (n={s['n']})")
    for m in mode_rows:
        print(f"{m['op']:>8} {m['in_channels']:4d}->{m['out_channels']:<4d}: block medians p10 {m['p10_us']:.1f} us, "
              f"p90 {m['p90_us']:.1f} us ({m['p90_over_p10']:.2f}x)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
