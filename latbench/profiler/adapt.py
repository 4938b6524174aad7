"""A new device (or configuration) from another's profile and a few network measurements.

``latbench profile --from device_profiles/OTHER --samples N`` measures ``N`` networks here: the
full-width network of every family and random-width variants, interleaved in one run. The
adapted profile keeps the prior's layer table (layer latencies there) and its stored learned
model, and recalibrates how layer sums become network latencies *here*: every calibration term
is fitted on the ``N`` networks, held toward the prior's calibration
(``latbench.predictors.calibration.fit_toward``). The prior knows how layers of these families fuse and
combine on this kind of device; the few networks say how much faster or slower this one is, and
for which kind of layer. Its uncertainty is the calibration's leave-one-out error.

Measuring layers here and mapping the prior's table through per-op speed ratios was tried and
did worse than this on the 2 -> 1 thread adaptation: with few networks, the calibration terms,
not the layer latencies, limit the accuracy (see the README's numbers).

The adapted profile is an ordinary profile folder; ``profile.json`` records the prior, the
measurements, the prior's calibration it was held to and the minutes it took. It has no
held-out networks; measure its accuracy with ``benchmarks/predictor_accuracy.py``.

A prior from an incompatible configuration is refused: another device type (CPU vs GPU), other
precision or batch size, other families, or a profile that is not complete.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from latbench.device_profile import DeviceProfile
from latbench.errors import ProfileError
from latbench.folder_lock import FolderLock
from latbench.measure import compare, measure
from latbench.predictors.calibration import PRIOR_STRENGTH
from latbench.profile import MODEL_COLUMNS, new_meta, write_meta
from latbench.profile.integrity import MANIFEST, manifest
from latbench.profiler.journal import measurement_row
from latbench.profiler.plan import network_variants
from latbench.profiler.run import NETWORK_SETTINGS, default_name, interleave, network_budget_s


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


MIN_PER_FAMILY = 2  # networks per family: the full-width one and at least one variant


def check_samples(samples: int, families: int) -> None:
    """Refuse a budget too small to calibrate every family."""
    if samples < MIN_PER_FAMILY * families:
        raise ProfileError(f"--samples {samples} is too few: adapting {families} families needs at least "
                           f"{MIN_PER_FAMILY * families} networks ({MIN_PER_FAMILY} per family)")


def prior_calibrations(prior) -> dict[str, dict[str, float]]:
    """The prior's calibration coefficients of each layer-sum predictor it can build."""
    return {kind: dict(c["coefficients"]) for kind, c in prior.calibrations().items() if "coefficients" in c}


def adapt_profile(prior_path: str | Path, settings, samples: int = 30, out: str | Path | None = None,
                  progress: bool = True, root: str | Path = "device_profiles") -> Path:
    """Adapt the profile at ``prior_path`` to ``settings`` (a ``ProfileSettings``) with ``samples``
    network measurements; returns the new profile folder (see the module docstring)."""
    started = time.perf_counter()
    prior = DeviceProfile.load(prior_path, check_fingerprint=False)
    settings.families = settings.families or list(prior.meta.get("families", []))
    check_prior(prior.meta, settings)
    check_samples(samples, len(settings.families))
    backend = settings.make_backend()
    fingerprint = backend.fingerprint()
    folder = Path(out) if out else Path(root) / f"{default_name(fingerprint, settings)}-from-{prior.name}"
    with FolderLock(folder, "latbench profile --from"):
        if (folder / "profile.json").exists():
            raise ProfileError(f"{folder} exists; give another --out or remove it")
        calibration_prior = prior_calibrations(prior)

        models = measure_networks(backend, prior, settings.families, samples, settings.seed + 500, progress,
                                  settings.network_seconds)

        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(prior.path / "layers.csv", folder / "layers.csv")
        if (prior.path / "predictors").is_dir():
            shutil.copytree(prior.path / "predictors", folder / "predictors", dirs_exist_ok=True)
        models.to_csv(folder / "models.csv", index=False)
        meta = new_meta(folder.name, fingerprint, {**settings.comparable(), "step": prior.meta["settings"].get("step")},
                        settings.families, overhead_us=prior.meta.get("overhead_us", 0.0), plan=prior.meta["plan"],
                        staircase=prior.meta.get("staircase"),
                        **{k: prior.meta[k] for k in ("reference_layer",) if k in prior.meta},
                        adapted_from={"profile": prior.name, "samples": samples, "networks": len(models),
                                      "layers_from": prior.meta.get("fingerprint"), "strength": PRIOR_STRENGTH,
                                      "calibration_prior": calibration_prior},
                        timings_s={"total": time.perf_counter() - started})
        write_meta(folder, meta)
        meta["calibration"] = DeviceProfile.load(folder, check_fingerprint=False).calibrations()
        meta["timings_s"] = {"total": time.perf_counter() - started}
        meta["status"] = "complete"
        meta["completed"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        meta[MANIFEST] = manifest(folder)
        write_meta(folder, meta)
    return folder


def measure_networks(backend, prior, families: list[str], n: int, seed: int, progress: bool,
                     seconds: float | None = None):
    """``models.csv`` rows of ``n`` networks (the full-width one of every family first, then
    random-width variants) measured interleaved in one run; the full-width network of a family is
    the anchor of its rows; ``seconds`` bounds the run (default ``network_budget_s``)."""
    step = int(prior.meta["plan"]["step"])
    per_family = [network_variants(f, prior.family_archs[f], n // len(families) + 2, seed=seed, align=step)
                  for f in families]
    chosen = list({v.key: v for v in interleave(per_family)}.values())[:n]  # a network once, however often drawn
    archs = {v.key: v.arch(prior.family_archs[v.family]) for v in chosen}
    runnables = {v.key: backend.deploy(prior.families[v.family].build(archs[v.key]),
                                       torch.randn(*archs[v.key].base.input_shape)) for v in chosen}
    if progress:
        print(f"measuring {len(runnables)} networks interleaved ...", flush=True)
    if len(runnables) > 1:
        budget = network_budget_s(len(runnables), seconds)
        results = compare(runnables, replace(NETWORK_SETTINGS, budget_s=budget), min_rounds=8).measurements
    else:
        results = {k: measure(r, NETWORK_SETTINGS) for k, r in runnables.items()}
    anchors = {v.family: results[v.key].median_us for v in chosen[:len(families)]}
    return pd.DataFrame([{"key": v.key, "family": v.family, "split": "calib", "widths": " ".join(map(str, v.widths)),
                          "removed": ";".join(v.removed), "flops": archs[v.key].flops(),
                          "params": archs[v.key].params(), "anchor_us": round(anchors[v.family], 3),
                          **measurement_row(results[v.key])} for v in chosen], columns=MODEL_COLUMNS)
