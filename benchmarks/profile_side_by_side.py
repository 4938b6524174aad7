"""Profiles of one configuration, priced against the same held-out networks measured now, in one run.

Two builds of a profile (say, before and after a change to how the profiler measures) hold the same held-out
networks when they share families, seed and network count. Their validation metrics come from two different
runs of a drifting machine, so they cannot be compared. Here the held-out networks are measured once, interleaved,
and every profile's predictors (calibrated on its own calibration networks) are scored against those
measurements: as predicted, and scaled by one factor per family (the median measured / predicted over that
family's held-out networks, which takes the machine's level out and leaves how well the profile ranks and spaces
a family's networks).

    PYTHONPATH=benchmarks python benchmarks/profile_side_by_side.py PROFILE PROFILE ... [--budget 240]
"""

from __future__ import annotations

import argparse
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latbench.device_profile import DeviceProfile
from latbench.jsonio import dump_json
from latbench.measure import MeasureSettings, compare
from latbench.predictors import Rescaled, accuracy

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("lut", "xgb", "rf")
KEEP = ("within_10pct", "within_5pct", "rmspe", "spearman", "median_error", "error_sd")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profiles", nargs="+", help="profile folders of one configuration and network plan")
    p.add_argument("--budget", type=float, default=240.0, help="seconds for the interleaved measurement")
    p.add_argument("--out", default=str(RESULTS / "profile_side_by_side.json"))
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    profiles = [DeviceProfile.load(p, check_fingerprint=False) for p in args.profiles]
    keys = [profile.models.loc[profile.models["split"] == "valid", "key"].tolist() for profile in profiles]
    if any(k != keys[0] for k in keys[1:]):
        raise SystemExit("latbench: error: the profiles do not hold the same held-out networks")
    base = profiles[0]
    archs, _ = base.network_samples("valid")
    backend = base.backend()
    runnables = {key: backend.deploy(base.families[a.name].build(a), torch.randn(*a.base.input_shape))
                 for key, a in zip(keys[0], archs, strict=True)}
    print(f"measuring {len(runnables)} held-out networks interleaved ({args.budget:.0f} s) ...", flush=True)
    result = compare(runnables, MeasureSettings(target_rel_ci=0.01, budget_s=args.budget), min_rounds=6)
    measured = np.array([result.measurements[k].median_us for k in keys[0]])
    rows: list[dict[str, Any]] = []
    for folder, profile in zip(args.profiles, profiles, strict=True):
        own, _ = profile.network_samples("valid")
        row: dict[str, Any] = {"profile": str(folder), "created": profile.meta.get("created"),
                               "layer_samples": int((profile.layers["shape_key"] != "reference").sum())}
        for kind in KINDS:
            predictor = profile.predictor(kind, reanchored=False)
            predicted, sigma = predictor.predict_many(own)
            # one factor per family: the median measured / predicted over its networks
            scaled, _ = Rescaled(predictor, list(zip(own, measured, strict=True))).predict_many(own)
            row[kind] = {k: v for k, v in accuracy(predicted, measured, sigma).items() if k in KEEP}
            row[f"{kind}+family_scaled"] = {k: v for k, v in accuracy(scaled, measured, sigma).items() if k in KEEP}
        rows.append(row)
    report = {"benchmark": "profile_side_by_side", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "machine": backend.fingerprint(), "networks": len(measured), "rounds": result.rounds,
              "measured_us": dict(zip(keys[0], map(float, measured), strict=True)), "profiles": rows}
    dump_json(report, args.out)
    for row in rows:
        scaled = {k: row[f"{k}+family_scaled"] for k in KINDS}
        cells = "  ".join(f"{k} {s['within_5pct']:.0%}/{s['within_10pct']:.0%} sd {s['error_sd']:.1%}"
                          for k, s in scaled.items())
        print(f"{row['profile']}: family-scaled within ±5%/±10%: {cells}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
