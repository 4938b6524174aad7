"""Does re-anchoring bring a shipped profile's absolute predictions back to this machine's state now?

The profile's own held-out networks (``models.csv``, split ``valid``: the networks its
``profile.json`` validation metrics were computed on, the day it was built) are deployed on the
profile's backend and measured *now*, interleaved with the family anchors and the reference layer
in one run. Right before, ``DeviceProfile.reanchor`` runs as a user would run it (its own short
measurement, timed); right after, it runs again, to show how far the machine moved meanwhile.
Every predictor then predicts every held-out network three ways: as profiled (no re-anchoring),
re-anchored by the user's run before the measurement, and re-anchored by the anchors measured in
the same interleaved run. The script reports share within +-5% / +-10%, RMSPE and Spearman for
each, next to the metrics of the day the profile was built, and the factors found.

    python benchmarks/reanchor_accuracy.py [--profile DIR] [--seconds 8] [--budget 150] [--reuse]

``--reuse`` keeps the measurements of the existing result file and only predicts again.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from latbench.anchoring import REFERENCE, AnchorPoint, Reanchoring, anchor_networks
from latbench.device_profile import DeviceProfile
from latbench.measure import MeasureSettings, compare
from latbench.models import build_candidate
from latbench.predictors import PREDICTORS, accuracy
from latbench.profile import reference_us
from latbench.profiler.channel_step import PROBE
from latbench.profiler.microbench import build_layer

RESULTS = Path(__file__).parent / "results"
DEFAULT_PROFILE = "device_profiles/amd-epyc-1t-onnxruntime-fp32-bs1"
METRICS = ("within_5pct", "within_10pct", "rmspe", "spearman")


def held_out(profile: DeviceProfile):
    """(archs, rows) of the profile's held-out networks, in models.csv order."""
    archs, then = profile.network_samples("valid")
    valid = profile.models[profile.models["split"] == "valid"]
    rows = [{"key": r.key, "family": r.family, "widths": str(r.widths), "removed": str(r.removed),
             "flops": float(r.flops), "profile_us": float(t)} for r, t in zip(valid.itertuples(), then, strict=True)]
    return archs, rows


def measure_now(profile: DeviceProfile, archs, rows, budget: float):
    """The held-out networks, measured interleaved with everything re-anchoring measures."""
    backend = profile.backend()
    runnables, state = {}, {}
    module, x = build_layer(PROBE)
    runnables[REFERENCE], state[REFERENCE] = backend.deploy(module, x), (None, reference_us(profile.layers))
    for name, family, arch, then in anchor_networks(profile):
        runnables[name] = backend.deploy(build_candidate(family, arch), torch.randn(*arch.base.input_shape))
        state[name] = (family, then)
    for row, arch in zip(rows, archs, strict=True):
        runnables[row["key"]] = backend.deploy(build_candidate(row["family"], arch),
                                               torch.randn(*arch.base.input_shape))
    print(f"measuring {len(runnables)} networks and layers interleaved (budget {budget:.0f} s) ...", flush=True)
    started = time.perf_counter()
    result = compare(runnables, MeasureSettings(target_rel_ci=0.01, budget_s=budget), min_rounds=10)
    points = tuple(AnchorPoint(name, family, then, *(float(v) for v in (s.median, s.ci_low, s.ci_high)))
                   for name, (family, then) in state.items() for s in [result.measurements[name].summary])
    in_run = Reanchoring(profile.name, datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         round(time.perf_counter() - started, 2), points)
    for row in rows:
        row["measured_us"] = float(result.measurements[row["key"]].median_us)
    return in_run, {"rounds": result.rounds, "stop": result.stop_reason, "wall_s": result.wall_time_s}


def evaluate(profile: DeviceProfile, archs, measured: np.ndarray, anchorings: dict[str, Reanchoring | None]):
    """Accuracy of every predictor under every anchoring (None: the profile as it was built)."""
    out: dict[str, dict[str, dict]] = {}
    predictions: dict[str, np.ndarray] = {}
    for label, anchoring in anchorings.items():
        profile.apply_anchoring(anchoring)
        out[label] = {}
        for kind in PREDICTORS:
            pred, sig = profile.predictor(kind).predict_many(archs)
            predictions[f"{kind}:{label}"] = pred
            out[label][kind] = accuracy(pred, measured, sig)
    profile.apply_anchoring(None)
    return out, predictions


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default=DEFAULT_PROFILE)
    p.add_argument("--seconds", type=float, default=8.0, help="re-anchoring budget (as --reanchor SECONDS)")
    p.add_argument("--budget", type=float, default=150.0, help="seconds for the interleaved measurement")
    p.add_argument("--out", help="result file (default benchmarks/results/reanchor_accuracy_<profile>.json)")
    p.add_argument("--reuse", action="store_true", help="predict the stored measurements again, measure nothing")
    args = p.parse_args()

    profile = DeviceProfile.load(args.profile)
    out = Path(args.out or RESULTS / f"reanchor_accuracy_{profile.name}.json")
    archs, rows = held_out(profile)
    if args.reuse:
        stored = json.loads(out.read_text())
        rows = stored["rows"]
        anchorings = {k: Reanchoring.from_dict(v) for k, v in stored["anchorings"].items()}
        run, date, engine = stored["interleaved"], stored["date"], stored["engine"]
    else:
        date = datetime.now(timezone.utc).isoformat(timespec="seconds")
        fp = profile.current_fingerprint()
        engine = {k: fp.get(k) for k in ("cpu", "backend", "onnxruntime", "threads")}
        before = profile.reanchor(args.seconds, save=False)
        print(f"before: {before.describe()}", flush=True)
        in_run, run = measure_now(profile, archs, rows, args.budget)
        after = profile.reanchor(args.seconds, save=False)
        print(f"after:  {after.describe()}", flush=True)
        anchorings = {"before": before, "in_run": in_run, "after": after}
    measured = np.array([r["measured_us"] for r in rows])
    metrics, predictions = evaluate(profile, archs, measured,
                                    {"as_profiled": None, "reanchored": anchorings["before"],
                                     "reanchored_in_run": anchorings["in_run"]})
    for i, row in enumerate(rows):
        row.update({k: float(v[i]) for k, v in predictions.items()})
        row["ratio_now"] = row["measured_us"] / row["profile_us"]
    term_ratios = {}
    for label in ("before", "in_run"):
        profile.apply_anchoring(anchorings[label])
        term_ratios[label] = {k: profile.predictor(k).calibration.get("reanchored") for k in ("lut", "xgb", "rf")}
    profile.apply_anchoring(None)
    day_built = {k: {m: v[m] for m in METRICS} for k, v in profile.meta["validation"].items() if "skipped" not in v}
    report = {
        "benchmark": "reanchor_accuracy", "profile": profile.name, "profile_created": profile.meta["created"],
        "date": date, "machine": f"{engine.get('cpu')} ({platform.machine()}), {engine.get('threads')} thread(s)",
        "engine": engine, "networks": len(rows), "interleaved": run,
        "reanchor_seconds": {k: a.seconds for k, a in anchorings.items() if k != "in_run"},
        "factors": {k: {"factor": a.factor, **{pt.name: pt.ratio for pt in a.points}} for k, a in anchorings.items()},
        "term_ratios": term_ratios,
        "day_built": day_built, "metrics": metrics, "anchorings": {k: a.to_dict() for k, a in anchorings.items()},
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(out)
    print(f"\n{profile.name} (built {profile.meta['created'][:10]}), {len(rows)} held-out networks measured {date}")
    print("factors: " + "; ".join(f"{k} {v['factor']:.3f}" for k, v in report["factors"].items())
          + " · re-anchoring took " + ", ".join(f"{s:.1f} s" for s in report["reanchor_seconds"].values()))
    print(f"{'':22}" + "".join(f"{m:>14}" for m in METRICS))
    for kind in PREDICTORS:
        for label, table in [("day built", day_built), *metrics.items()]:
            if kind in table:
                print(f"{kind:5} {label:16}" + "".join(f"{table[kind][m]:14.3f}" for m in METRICS))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
