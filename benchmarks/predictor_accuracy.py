"""How well does a device profile predict networks it never saw? LUT vs FLOPs, side by side.

Held-out random-width (and some block-removed) variants of each profiled family are drawn with
a seed the profiler never used (a third with widths on multiples of the profile's step, as
group-wise pruners produce), deployed on the profile's backend, and measured *interleaved*
(``latbench.measure.compare``: round-robin blocks, so machine drift hits every network alike).
Five reference networks per family (its full-width network and four of the profile's own
calibration networks) are measured in the same run; the ``+rescaled`` predictors scale each
family by the median of measured / predicted over them (the machine's speed now, see
``Rescaled``). Every predictor then predicts every network; the script reports share within +-5% / +-10%,
RMSPE, Spearman, 90%-interval coverage, profiling wall time and batched predictions per second,
writes JSON and a predicted-vs-measured scatter plot.

    python benchmarks/predictor_accuracy.py [--profile DIR] [--per-family 24] [--budget 240] [--reuse]
        [--rebuild-min 12] [--adapt-from DIR --adapt-samples 10,30,100]
        [--extend FAMILY [FAMILY ...] [--extend-budget-min 5]]

``--reuse`` keeps the networks and measurements of the existing result file and only predicts
again (to evaluate a predictor change against the same measurements). ``--rebuild-min M``
profiles the profile's configuration again from scratch first (M minutes, into the same folder),
so that it and the adapted profiles are measured in one run with the held-out networks.
``--adapt-from`` adapts another profile (e.g. the 2-thread one) to this profile's configuration
with each number of measurements in ``--adapt-samples`` (``latbench profile --from``) and
compares them with the profile from scratch on the same held-out networks: share within +-10%,
measurements and minutes. ``--extend`` adds each family the profile lacks to a copy of it with
``latbench profile --extend`` and reports held-out accuracy before and after
(``extension_accuracy.py``, ``results/extension_accuracy.json``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from extension_accuracy import run as run_extension

from latbench.arch import Arch
from latbench.device_profile import DeviceProfile, list_profiles
from latbench.measure import MeasureSettings, compare
from latbench.models import build_candidate
from latbench.predictors import PREDICTORS, Rescaled, accuracy
from latbench.profiler.plan import network_variants
from latbench.profiler.run import ProfileSettings, profile_device

FAMILIES = ["resnet56", "vgg16", "mobilenetv2"]
REFERENCES_PER_FAMILY = 5  # measured again with the held-out networks for the ``+rescaled`` predictors
RESULTS = Path(__file__).parent / "results"


def find_or_build(path: str | None, budget_min: float) -> Path:
    if path:
        return Path(path)
    for row in list_profiles():
        if row.get("status") == "complete" and row.get("backend") == "onnxruntime" and set(FAMILIES) <= set(
                str(row.get("families", "")).split(",")):
            return Path("device_profiles") / row["name"]
    return profile_device(ProfileSettings(families=FAMILIES, budget_min=budget_min))


def rebuild(folder: Path, minutes: float) -> Path:
    """Profile ``folder``'s configuration again from scratch, into ``folder``."""
    old = DeviceProfile.load(folder, check_fingerprint=False).meta["settings"]
    shutil.rmtree(folder)
    return profile_device(ProfileSettings(families=FAMILIES, threads=old.get("threads"), budget_min=minutes),
                          out=folder)


def adapt(prior: str, target: DeviceProfile, samples: list[int]) -> dict[str, DeviceProfile]:
    """``prior`` adapted to ``target``'s configuration with each number of measurements."""
    from latbench.profiler.adapt import adapt_profile

    out = {}
    for n in samples:
        folder = RESULTS / "profiles" / f"adapted-{n}"
        shutil.rmtree(folder, ignore_errors=True)
        settings = ProfileSettings(families=list(FAMILIES), threads=target.meta["settings"].get("threads"))
        print(f"adapting {prior} with {n} measurements ...", flush=True)
        out[f"adapted-{n}"] = DeviceProfile.load(adapt_profile(prior, settings, samples=n, out=folder,
                                                               progress=False), check_fingerprint=False)
    return out


def adaptation_report(profiles: dict[str, DeviceProfile], archs, measured, anchors) -> dict[str, dict]:
    """Per profile: measurements, minutes, and accuracy of its LUT and xgb predictors on the
    held-out networks (raw, and rescaled by the reference networks measured with them)."""
    out = {}
    for name, prof in profiles.items():
        adapted = prof.meta.get("adapted_from")
        count = adapted["samples"] if adapted else int((prof.layers["shape_key"] != "reference").sum()
                                                       + len(prof.models))
        row: dict = {"measurements": count, "minutes": prof.meta["timings_s"]["total"] / 60}
        for kind in ("lut", "xgb"):
            for label, pred in ((kind, prof.predictor(kind)), (f"{kind}+rescaled", Rescaled(prof.predictor(kind),
                                                                                             anchors))):
                p, sig = pred.predict_many(archs)
                m = accuracy(p, measured, sig)
                row[label] = {k: m[k] for k in ("within_5pct", "within_10pct", "rmspe", "spearman", "coverage_90")}
        out[name] = row
    return out


def leave_one_family_out(profile: DeviceProfile, families: list[str] | None = None) -> dict[str, dict[str, dict]]:
    """Per family F (``families``, default the zoo's three) and predictor: accuracy on F's profile networks when
    nothing of F was seen.

    The predictors are built from the layer samples of the other families (a shape key that F
    shares with another family stays, as that family would have measured it too) and calibrated
    on the other families' networks. F's networks are the profile's own (calibration and
    held-out), so layer and network samples come from one machine state, free of later drift.
    """
    from latbench.predictors import OutOfProfileError, build_predictor
    from latbench.profile import shape_key

    families = families or FAMILIES
    archs, measured = profile.network_samples()
    keys = {fam: {shape_key(layer.spec) for layer in profile.family_archs[fam].base.layers} for fam in families}
    out: dict[str, dict[str, dict]] = {}
    for fam in families:
        others = set().union(*(keys[f] for f in families if f != fam))
        layers = profile.layers[profile.layers["shape_key"].isin(others | {"reference"})].reset_index(drop=True)
        train = np.array([a.name != fam for a in archs])
        out[fam] = {}
        for kind in PREDICTORS:
            pred = build_predictor(kind, profile.meta, layers)
            pred.fit([a for a, t in zip(archs, train, strict=True) if t], measured[train])
            test = [a for a, t in zip(archs, train, strict=True) if not t]
            try:
                mu, sig = pred.predict_many(test)
            except OutOfProfileError as exc:
                out[fam][kind] = {"n": len(test), "unavailable": str(exc)}
                continue
            out[fam][kind] = accuracy(mu, measured[~train], sig)
    return out


def predictions_per_second(profile: DeviceProfile, family: str, kind: str = "lut", n: int = 20_000) -> float:
    base = profile.family_archs[family]
    rng = np.random.default_rng(0)
    groups = base.prunable_groups
    ratios = rng.uniform(0.3, 1.0, (n, len(groups)))
    archs = [base.with_widths({g.id: max(1, int(g.channels * r)) for g, r in zip(groups, row, strict=True)})
             for row in ratios]
    pred = profile.predictor(kind)
    pred.predict_many(archs[:10])  # compile once
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        pred.predict_many(archs)
        best = min(best, time.perf_counter() - t0)
    return n / best


def reference_archs(profile: DeviceProfile, per_family: int) -> list[tuple[str, Arch]]:
    """Per family, its full-width network and the first calibration networks of the profile."""
    archs, _ = profile.network_samples("calib")
    out = []
    for fam in FAMILIES:
        out.append((fam, profile.family_archs[fam]))
        out += [(fam, a) for a in [a for a in archs if a.name == fam][: per_family - 1]]
    return out


def stored_arch(profile: DeviceProfile, row: dict) -> Arch:
    """The candidate a result row describes (family, widths, removed blocks)."""
    return Arch(profile.family_archs[row["family"]].base, tuple(row["widths"])).without_blocks(row["removed"])


def measure_variants(profile: DeviceProfile, per_family: int, budget: float):
    """Held-out variants of every family, measured interleaved with the reference networks."""
    backend = profile.backend()
    variants = []
    for fam in FAMILIES:
        base = profile.family_archs[fam]
        variants += [(fam, v) for v in network_variants(fam, base, per_family + 1, seed=1000,
                                                        align=int(profile.meta["plan"]["step"]))[1:]]
    runnables, archs = {}, []
    references = reference_archs(profile, REFERENCES_PER_FAMILY)
    for i, (fam, arch) in enumerate(references):  # measured again now, for the rescaled predictors
        runnables[f"reference:{fam}:{i}"] = backend.deploy(build_candidate(fam, arch),
                                                           torch.randn(*arch.base.input_shape))
    for i, (fam, v) in enumerate(variants):
        arch = v.arch(profile.family_archs[fam])
        runnables[f"{fam}-{i}"] = backend.deploy(build_candidate(fam, arch), torch.randn(*arch.base.input_shape))
        archs.append(arch)
    print(f"measuring {len(runnables)} held-out networks interleaved (budget {budget:.0f} s) ...", flush=True)
    result = compare(runnables, MeasureSettings(target_rel_ci=0.02, budget_s=budget), min_rounds=10)
    names = [n for n in runnables if not n.startswith("reference:")]
    measured = np.array([result.measurements[name].median_us for name in names])
    anchors = [(arch, result.measurements[f"reference:{fam}:{i}"].median_us)
               for i, (fam, arch) in enumerate(references)]
    rows = [{"family": fam, "widths": list(a.width_tuple), "removed": sorted(a.removed), "flops": a.flops(),
             "measured_us": float(m)} for (fam, _), a, m in zip(variants, archs, measured, strict=True)]
    return rows, archs, measured, anchors, result.rounds, result.stop_reason


def plot(rows: list[dict], metrics: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = ["lut", "lut+rescaled", "xgb+rescaled", "flops"]
    fig, axes = plt.subplots(1, len(kinds), figsize=(5.5 * len(kinds), 5.2), sharex=True, sharey=True)
    measured = np.array([r["measured_us"] for r in rows]) / 1e3
    lim = (measured.min() * 0.7, measured.max() * 1.4)
    line = np.geomspace(*lim, 50)
    for ax, kind in zip(axes, kinds, strict=True):
        for fam, marker in zip(FAMILIES, "osD", strict=True):
            sel = [r for r in rows if r["family"] == fam]
            ax.scatter([r["measured_us"] / 1e3 for r in sel], [r[f"{kind}_us"] / 1e3 for r in sel], s=22,
                       marker=marker, label=fam, alpha=0.8, zorder=3)
        ax.plot(line, line, "k-", lw=1)
        ax.fill_between(line, line * 0.9, line * 1.1, color="0.85", label="±10%", zorder=0)
        m = metrics[kind]
        ax.set_title(f"{kind.upper()}: {m['within_10pct'] * 100:.0f}% within ±10%, RMSPE {m['rmspe'] * 100:.1f}%, "
                     f"Spearman {m['spearman']:.3f}", fontsize=10)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lim)
        ax.set_ylim(lim)
        ax.set_xlabel("measured latency (ms)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("predicted latency (ms)")
    axes[0].legend(loc="upper left")
    fig.suptitle(f"Held-out networks, ONNX Runtime on this CPU ({len(rows)} networks, measured interleaved)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", help="profile folder (default: a complete one under device_profiles/, else build)")
    p.add_argument("--per-family", type=int, default=24)
    p.add_argument("--budget", type=float, default=240.0, help="seconds for the interleaved measurement")
    p.add_argument("--profile-budget-min", type=float, default=15.0)
    p.add_argument("--out", default=str(RESULTS / "predictor_accuracy.json"))
    p.add_argument("--reuse", action="store_true", help="predict the stored networks again, measure nothing")
    p.add_argument("--rebuild-min", type=float, help="profile the configuration again from scratch first (minutes)")
    p.add_argument("--adapt-from", help="a profile of another configuration to adapt to this one")
    p.add_argument("--adapt-samples", default="10,30,100", help="measurements of each adaptation")
    p.add_argument("--extend", nargs="+", metavar="FAMILY",
                   help="families the profile lacks: predict them before and after extending a copy of it "
                        "(benchmarks/extension_accuracy.py)")
    p.add_argument("--extend-budget-min", type=float, default=5.0, help="minutes of each extension (default 5)")
    p.add_argument("--extend-runs", default="runs/extension", help="where the extended copies go")
    args = p.parse_args()

    folder = find_or_build(args.profile, args.profile_budget_min)
    if args.extend:
        out = RESULTS / "extension_accuracy.json" if args.out == p.get_default("out") else Path(args.out)
        run_extension(folder, args.extend, args.per_family, args.budget, args.extend_budget_min, (3, 32, 32),
                      Path(args.extend_runs), out)
        print(f"wrote {out}")
        return
    if args.rebuild_min:
        folder = rebuild(folder, args.rebuild_min)
    profile = DeviceProfile.load(folder)
    adapted = adapt(args.adapt_from, profile, [int(n) for n in args.adapt_samples.split(",")]) if args.adapt_from \
        else {}
    if args.reuse:
        stored = json.loads(Path(args.out).read_text())
        rows = [{k: r[k] for k in ("family", "widths", "removed", "flops", "measured_us")} for r in stored["rows"]]
        archs = [stored_arch(profile, r) for r in rows]
        measured = np.array([r["measured_us"] for r in rows])
        anchors = [(stored_arch(profile, r), r["measured_us"]) for r in stored["references"]]
        rounds, stop = stored["interleaved_rounds"], stored["measurement_stop"]
    else:
        rows, archs, measured, anchors, rounds, stop = measure_variants(profile, args.per_family, args.budget)
    predictors = {k: profile.predictor(k) for k in PREDICTORS}
    predictors |= {f"{k}+rescaled": Rescaled(profile.predictor(k), anchors) for k in PREDICTORS}
    metrics, per_family = {}, {}
    for kind, predictor in predictors.items():
        pred, sig = predictor.predict_many(archs)
        for r, v in zip(rows, pred, strict=True):
            r[f"{kind}_us"] = float(v)
        metrics[kind] = accuracy(pred, measured, sig)
        per_family[kind] = {fam: accuracy(pred[[r["family"] == fam for r in rows]],
                                          measured[[r["family"] == fam for r in rows]]) for fam in FAMILIES}
    rate = {fam: predictions_per_second(profile, fam) for fam in FAMILIES}
    learned_rate = {fam: predictions_per_second(profile, fam, kind="xgb", n=2000) for fam in FAMILIES}
    lofo = leave_one_family_out(profile)
    adaptation = adaptation_report({"scratch": profile, **adapted}, archs, measured, anchors) if adapted else None
    report = {
        "benchmark": "predictor_accuracy", "profile": profile.name, "networks": len(rows),
        "profiling_wall_time_min": profile.meta["timings_s"]["total"] / 60,
        "interleaved_rounds": rounds, "measurement_stop": stop,
        "references": [{"family": a.name, "widths": list(a.width_tuple), "removed": sorted(a.removed),
                        "measured_us": m} for a, m in anchors],
        "metrics": metrics, "per_family": per_family, "lut_predictions_per_second": rate,
        "xgb_predictions_per_second": learned_rate, "leave_one_family_out": lofo,
        "refine": profile.meta.get("refine"), "adaptation": adaptation, "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    plot(rows, metrics, out.with_suffix(".png"))
    print(f"\nprofile {profile.name}: profiled in {report['profiling_wall_time_min']:.1f} min")
    print(f"{'':16}" + "".join(f"{k:>16}" for k in metrics))
    for key in ("within_5pct", "within_10pct", "rmspe", "spearman", "coverage_90"):
        print(f"{key:16}" + "".join(f"{metrics[k][key]:16.3f}" for k in metrics))
    print("LUT predictions/s: " + ", ".join(f"{f} {r:,.0f}" for f, r in rate.items()))
    print("XGB predictions/s: " + ", ".join(f"{f} {r:,.0f}" for f, r in learned_rate.items()))
    print("leave one family out (the profile's own networks of the family left out), within +-10%:")
    for fam, by_kind in lofo.items():
        print(f"  {fam:12}" + "".join(f"  {k} " + (f"{m['within_10pct'] * 100:3.0f}%" if "within_10pct" in m else "n/a")
                                      for k, m in by_kind.items()))
    if adaptation:
        print("adaptation (held-out networks within +-10%):")
        for name, r in adaptation.items():
            print(f"  {name:12} {r['measurements']:5d} measurements {r['minutes']:5.1f} min  " + "  ".join(
                f"{k} {r[k]['within_10pct'] * 100:3.0f}%" for k in ("lut", "lut+rescaled", "xgb", "xgb+rescaled")))
    print(f"wrote {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
