"""A new device (or configuration) from another's profile and a few measurements.

``latbench profile --from device_profiles/OTHER --samples N`` spends ``N`` measurements here:

* **networks** (40%, at least the full-width network of every family): the full-width networks
  and random-width variants of the prior's families, measured interleaved in one run; they
  calibrate the predictors as a full profile's networks do (few networks fit few terms);
* **layers** (the rest): layers of the families' full-width networks, drawn with probability
  proportional to their share of the networks' latency on the prior, so the slow layers are
  measured. Each was measured by the prior too, so each gives a ratio this device / prior. Per
  op kind, ``log ratio = a + b * log prior latency`` is fitted (a slope only from ``MIN_SLOPE``
  samples of that op with some spread, since threads speed big layers up more than small ones;
  ops with fewer than ``MIN_OP`` samples use the fit over all ops).

The adapted profile is an ordinary profile folder: the prior's layer table with every latency
mapped through the fitted ratio (``stop_reason`` says ``scaled``, ``runs`` is 0), the layers
measured here in place of theirs, and only the networks measured here. ``profile.json`` records
the prior, the measurements, the fits and the minutes it took. It has no held-out networks;
measure its accuracy with ``benchmarks/predictor_accuracy.py``.

A prior from an incompatible configuration is refused: another device type (CPU vs GPU), other
precision or batch size, other families, or a profile that is not complete.
"""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from latbench.errors import ProfileError

NETWORK_SHARE = 0.4
MIN_OP = 3  # samples of an op kind for its own ratio fit
MIN_SLOPE = 5  # ... and for a slope in log prior latency
MIN_LOG_SPREAD = 0.5  # (its samples must span at least this much log latency)


def device_type(settings: dict[str, Any]) -> str:
    """``cuda`` or ``cpu``, from a profile's settings."""
    if settings.get("backend") == "tensorrt" or str(settings.get("device") or "cpu").startswith("cuda"):
        return "cuda"
    return "cpu"


def check_prior(meta: dict[str, Any], settings) -> None:
    """Refuse a prior that cannot describe ``settings`` (a ``ProfileSettings``), with the reason."""
    name = meta.get("name", "?")
    if meta.get("status") != "complete":
        raise ProfileError(f"prior profile {name} is not complete (status {meta.get('status')!r})")
    prior = meta["settings"]
    here = {"backend": settings.backend, "device": settings.device}
    if device_type(prior) != device_type(here):
        raise ProfileError(f"prior profile {name} was made on {device_type(prior)} ({prior['backend']}); "
                           f"this profile runs on {device_type(here)} ({settings.backend}): "
                           "layer latencies do not transfer between device types")
    for key, value in (("precision", settings.precision), ("batch", settings.batch)):
        if prior.get(key) != value:
            raise ProfileError(f"prior profile {name} has {key} {prior.get(key)!r}, this profile {value!r}")
    missing = sorted(set(settings.families) - set(meta.get("families", [])))
    if missing:
        raise ProfileError(f"prior profile {name} has no samples of {', '.join(missing)}")


def split(samples: int, families: int) -> tuple[int, int]:
    """(networks, layers) for a budget of ``samples`` measurements."""
    networks = max(families, round(NETWORK_SHARE * samples))
    if samples < networks + 1:
        raise ProfileError(f"--samples {samples} is too few: adapting {families} families needs at least "
                           f"{families + 1} (one network per family and a layer)")
    return networks, samples - networks


def pick_layers(prior, families: list[str], n: int, seed: int) -> list[int]:
    """Row indices of ``n`` distinct prior layer samples, drawn by their latency share in the
    families' full-width networks."""
    from latbench.profiler.plan import spec_key

    keys = {k: i for i, k in enumerate(prior.layers["key"])}
    weights: dict[int, float] = {}
    lut = prior.predictor("lut")
    for fam in families:
        arch = prior.family_archs[fam]
        share = {b["layer"]: b["share"] for b in lut.predict(arch).breakdown}
        for layer in arch.base.layers:
            row = keys.get(spec_key(layer.spec))
            if row is not None:
                weights[row] = weights.get(row, 0.0) + share.get(layer.name, 0.0)
    rows = np.array(sorted(weights))
    p = np.array([weights[r] for r in rows]) + 1e-3
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(rows, size=min(n, len(rows)), replace=False, p=p / p.sum()).tolist())


def fit_ratios(ops: np.ndarray, prior_us: np.ndarray, here_us: np.ndarray) -> dict[str, dict[str, float]]:
    """Per op kind (and ``*`` for all): ``log(here / prior) = a + b * (log prior - center)``."""

    def fit(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        center = float(np.mean(x))
        if len(x) >= MIN_SLOPE and np.ptp(x) >= MIN_LOG_SPREAD:
            b, a = np.polyfit(x - center, y, 1)
            return {"a": float(a), "b": float(b), "center": center, "n": len(x)}
        return {"a": float(np.median(y)), "b": 0.0, "center": center, "n": len(x)}

    x, y = np.log(prior_us), np.log(here_us / prior_us)
    out = {"*": fit(x, y)}
    for op in sorted(set(ops)):
        sel = ops == op
        if sel.sum() >= MIN_OP:
            out[op] = fit(x[sel], y[sel])
    return out


def apply_ratios(ratios: dict[str, dict[str, float]], ops: np.ndarray, prior_us: np.ndarray) -> np.ndarray:
    """Prior latencies mapped to this device through ``fit_ratios``' fits."""
    out = np.empty(len(prior_us))
    for i, (op, us) in enumerate(zip(ops, prior_us, strict=True)):
        f = ratios.get(op, ratios["*"])
        out[i] = us * np.exp(f["a"] + f["b"] * (np.log(us) - f["center"]))
    return out


def adapt_profile(prior_path: str | Path, settings, samples: int = 30, out: str | Path | None = None,
                  progress: bool = True, root: str | Path = "device_profiles") -> Path:
    """Adapt the profile at ``prior_path`` to ``settings`` (a ``ProfileSettings``) with ``samples``
    measurements; returns the new profile folder (see the module docstring)."""
    import pandas as pd

    from latbench.backends import require_backend
    from latbench.device_profile import SCHEMA, DeviceProfile
    from latbench.jsonio import dump_json
    from latbench.measure import measure
    from latbench.predictors import PREDICTORS
    from latbench.profiler.microbench import build_layer
    from latbench.profiler.run import LAYER_COLUMNS, LAYER_SETTINGS, default_name, measurement_row, row_spec

    started = time.perf_counter()
    prior = DeviceProfile.load(prior_path, check_fingerprint=False)
    settings.families = settings.families or list(prior.meta.get("families", []))
    check_prior(prior.meta, settings)
    backend = require_backend(settings.backend, device=settings.device, threads=settings.threads,
                              precision=settings.precision)
    fingerprint = backend.fingerprint()
    folder = Path(out) if out else Path(root) / f"{default_name(fingerprint, settings)}-from-{prior.name}"
    if (folder / "profile.json").exists():
        raise ProfileError(f"{folder} exists; give another --out or remove it")
    n_networks, n_layers = split(samples, len(settings.families))

    # layers: measured here, mapped through per-op ratio fits
    layers = prior.layers.copy()
    rows = pick_layers(prior, settings.families, n_layers, settings.seed)
    measured = {}
    for i in _progress(rows, "layers", progress):
        spec = row_spec(layers.iloc[i])
        module, x = build_layer(spec)
        measured[i] = measure(backend.deploy(module, x), LAYER_SETTINGS)
    ops = layers["op"].to_numpy(dtype=object)
    prior_us = layers["median_us"].to_numpy(dtype=float)
    idx = np.array(sorted(measured))
    here = np.array([measured[i].median_us for i in idx])
    ratios = fit_ratios(ops[idx], prior_us[idx], here)
    factor = apply_ratios(ratios, ops, prior_us) / prior_us
    for col in ("median_us", "ci_low_us", "ci_high_us", "p90_us"):
        layers[col] = (pd.to_numeric(layers[col]) * factor).round(3)
    layers["runs"], layers["stop_reason"], layers["wall_s"] = 0, f"scaled from {prior.name}", 0.0
    for i, m in measured.items():
        for col, value in measurement_row(m).items():
            layers.loc[i, col] = value

    models = measure_networks(backend, prior, settings.families, n_networks, settings.seed + 500, progress)

    folder.mkdir(parents=True, exist_ok=True)
    layers[LAYER_COLUMNS].to_csv(folder / "layers.csv", index=False)
    models.to_csv(folder / "models.csv", index=False)
    from latbench import __version__

    overhead = float(prior.meta.get("overhead_us", 0.0)) * float(np.exp(ratios["*"]["a"]))
    meta = {"schema": SCHEMA, "name": folder.name, "status": "running", "latbench": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "fingerprint": fingerprint,
            "settings": {**settings.comparable(), "step": prior.meta["settings"].get("step")},
            "families": settings.families, "overhead_us": overhead, "plan": prior.meta["plan"],
            "staircase": prior.meta.get("staircase"),
            "adapted_from": {"profile": prior.name, "samples": samples, "networks": len(models),
                             "layers": len(measured), "ratios": ratios},
            "timings_s": {"total": time.perf_counter() - started}}
    dump_json(meta, folder / "profile.json")
    profile = DeviceProfile.load(folder, check_fingerprint=False)
    meta["calibration"] = {}
    for kind in PREDICTORS:
        try:
            meta["calibration"][kind] = profile.predictor(kind).calibration
        except ProfileError as exc:
            meta["calibration"][kind] = {"skipped": str(exc)}
    if "skipped" not in meta["calibration"]["xgb"]:
        profile.predictor("xgb").save(folder)
    meta["timings_s"] = {"total": time.perf_counter() - started}
    meta["status"] = "complete"
    meta["completed"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    dump_json(meta, folder / "profile.json")
    return folder


def measure_networks(backend, prior, families: list[str], n: int, seed: int, progress: bool):
    """``models.csv`` rows of ``n`` networks (the full-width one of every family first, then
    random-width variants) measured interleaved in one run; the full-width network of a family is
    the anchor of its rows."""
    import pandas as pd
    import torch

    from latbench.measure import compare, measure
    from latbench.models import build_candidate
    from latbench.profiler.plan import network_variants
    from latbench.profiler.run import (
        MODEL_COLUMNS,
        NETWORK_SECONDS_EACH,
        NETWORK_SETTINGS,
        interleave,
        measurement_row,
    )

    step = int(prior.meta["plan"]["step"])
    per_family = [network_variants(f, prior.family_archs[f], n // len(families) + 2, seed=seed, align=step)
                  for f in families]
    chosen = interleave(per_family)[:n]
    archs = {v.key: v.arch(prior.family_archs[v.family]) for v in chosen}
    runnables = {v.key: backend.deploy(build_candidate(v.family, archs[v.key]),
                                       torch.randn(*archs[v.key].base.input_shape)) for v in chosen}
    if progress:
        print(f"measuring {len(runnables)} networks interleaved ...", flush=True)
    if len(runnables) > 1:
        budget = max(NETWORK_SETTINGS.budget_s, NETWORK_SECONDS_EACH * len(runnables))
        results = compare(runnables, replace(NETWORK_SETTINGS, budget_s=budget), min_rounds=8).measurements
    else:
        results = {k: measure(r, NETWORK_SETTINGS) for k, r in runnables.items()}
    anchors = {v.family: results[v.key].median_us for v in chosen[:len(families)]}
    return pd.DataFrame([{"key": v.key, "family": v.family, "split": "calib", "widths": " ".join(map(str, v.widths)),
                          "removed": ";".join(v.removed), "flops": archs[v.key].flops(),
                          "params": archs[v.key].params(), "anchor_us": round(anchors[v.family], 3),
                          **measurement_row(results[v.key])} for v in chosen], columns=MODEL_COLUMNS)


def _progress(items: list, label: str, enabled: bool):
    if not enabled:
        return items
    from rich.progress import track

    return track(items, description=f"measuring {len(items)} {label}")
