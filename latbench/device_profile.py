"""A device profile on disk: ``profile.json``, ``layers.csv``, ``models.csv``. Plain files, no pickle.

Loading checks the schema, the columns and the values (a hand-edited or truncated file is one
clear error naming the file, column and row), and compares the profile's fingerprint with this
machine's: a mismatch warns, or refuses with ``strict=True``.
"""

from __future__ import annotations

import json
import warnings
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from latbench.errors import ProfileError

SCHEMA = "latbench.profile/1"
#: fingerprint fields that must match for a profile to describe this machine
FINGERPRINT_KEYS = ("cpu", "gpu", "backend", "device", "precision", "threads", "onnxruntime", "torch", "tensorrt",
                    "compute_capability")
NUMERIC = {"layers.csv": ("in_channels", "out_channels", "median_us", "batch"), "models.csv": ("median_us",)}


class ProfileMismatchWarning(UserWarning):
    """The profile was made on another device or configuration."""


def _read_csv(path: Path, columns: list[str]):
    import pandas as pd

    if not path.exists():
        raise ProfileError(f"{path.parent}: missing {path.name}")
    try:
        df = pd.read_csv(path, dtype={"key": str, "widths": str, "removed": str}, keep_default_na=False)
    except Exception as exc:  # noqa: BLE001 - pandas raises several parser errors
        raise ProfileError(f"{path}: unreadable CSV ({exc})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ProfileError(f"{path}: missing column(s) {', '.join(missing)}")
    for col in NUMERIC.get(path.name, ()):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = np.flatnonzero(values.isna() | ~np.isfinite(values) | (values <= 0))
        if len(bad):
            raise ProfileError(f"{path}: column {col} has a missing, non-numeric or non-positive value "
                               f"at data row {int(bad[0]) + 1}")
        df[col] = values
    return df


def pd_numeric(series):
    import pandas as pd

    return pd.to_numeric(series, errors="coerce")


def reference_factors(layers) -> np.ndarray:
    """Per layer row, the factor that brings it to the median state of the reference layer.

    The profiler re-measures one fixed layer (rows with ``shape_key == "reference"``) every few
    samples; its latency, interpolated over measurement order, tracks the machine's speed.
    """
    is_ref = (layers["shape_key"] == "reference").to_numpy()
    if is_ref.sum() < 2:
        return np.ones(len(layers))
    pos = np.arange(len(layers))
    ref = layers["median_us"].to_numpy(dtype=float)
    at = np.interp(pos, pos[is_ref], ref[is_ref])
    return np.median(ref[is_ref]) / at


class DeviceProfile:
    """A loaded profile: metadata, layer samples, network samples, and its predictors."""

    def __init__(self, path: Path, meta: dict[str, Any], layers, models) -> None:
        self.path = path
        self.meta = meta
        self.layers = layers
        self.models = models
        self._predictors: dict[str, Any] = {}

    @classmethod
    def load(cls, path: str | Path, strict: bool = False, check_fingerprint: bool = True) -> DeviceProfile:
        from latbench.profiler.run import LAYER_COLUMNS, MODEL_COLUMNS

        path = Path(path)
        meta_path = path / "profile.json"
        if not meta_path.exists():
            raise ProfileError(f"not a device profile: {path} (no profile.json)")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise ProfileError(f"{meta_path}: corrupt JSON ({exc})") from None
        if meta.get("schema") != SCHEMA:
            raise ProfileError(f"{meta_path}: schema {meta.get('schema')!r} is not {SCHEMA!r}; "
                               "re-profile with this version of latbench")
        for key in ("plan", "fingerprint", "settings"):
            if key not in meta:
                raise ProfileError(f"{meta_path}: missing {key!r} "
                                   "(an interrupted run? re-run the same profile command)")
        profile = cls(path, meta, _read_csv(path / "layers.csv", LAYER_COLUMNS),
                      _read_csv(path / "models.csv", MODEL_COLUMNS))
        if check_fingerprint:
            mismatches = profile.fingerprint_mismatches()
            if mismatches:
                msg = f"profile {path.name} was made on another configuration: {'; '.join(mismatches)}"
                if strict:
                    raise ProfileError(msg)
                warnings.warn(msg, ProfileMismatchWarning, stacklevel=2)
        return profile

    # --- identity ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.meta.get("name", self.path.name)

    def backend(self, require: bool = True):
        """The backend this profile was made with, configured the same way (device, threads,
        precision). With ``require``, a backend that cannot run here is a one-line error."""
        from latbench.backends import get_backend, require_backend

        s = self.meta["settings"]
        make = require_backend if require else get_backend
        return make(s["backend"], device=s.get("device"), threads=s.get("threads"), precision=s.get("precision"))

    def current_fingerprint(self) -> dict[str, Any]:
        backend = self.backend(require=False)
        reason = backend.unavailable_reason()
        if reason is not None:
            return {"unavailable": reason}
        return backend.fingerprint()

    def fingerprint_mismatches(self, current: dict[str, Any] | None = None) -> list[str]:
        """Human-readable differences between the profile's fingerprint and this machine's."""
        current = current if current is not None else self.current_fingerprint()
        if "unavailable" in current:
            return [f"backend {self.meta['settings']['backend']} cannot run here ({current['unavailable']})"]
        saved = self.meta["fingerprint"]
        return [f"{k}: profile {saved.get(k)!r}, here {current.get(k)!r}" for k in FINGERPRINT_KEYS
                if saved.get(k) != current.get(k)]

    # --- data --------------------------------------------------------------------------------
    @cached_property
    def family_archs(self) -> dict[str, Any]:
        from latbench.profiler.run import trace_family

        batch = int(self.meta["settings"].get("batch", 1))
        return {fam: trace_family(fam, batch) for fam in self.meta.get("families", [])}

    def network_samples(self, split: str | None = None) -> tuple[list[Any], np.ndarray]:
        """(candidate archs, median us) of the whole-network samples, in one machine state.

        Each row was measured interleaved with its family's full-width network (the anchor);
        scaling it by the family's median anchor over its anchor in the same run removes the
        machine's drift between chunks.
        """
        from latbench.arch import Arch

        models = self.models
        anchor = pd_numeric(models["anchor_us"])
        reference = anchor.groupby(models["family"]).transform("median")
        normalised = models["median_us"] * (reference / anchor).fillna(1.0)
        keep = slice(None) if split is None else (models["split"] == split).to_numpy()
        rows = models[keep]
        archs = []
        for r in rows.itertuples():
            base = self.family_archs[r.family]
            widths = tuple(int(w) for w in str(r.widths).split())
            removed = [b for b in str(r.removed).split(";") if b]
            archs.append(Arch(base.base, widths).without_blocks(removed))
        return archs, normalised[keep].to_numpy(dtype=float)

    # --- predictors --------------------------------------------------------------------------
    def predictor(self, kind: str = "lut"):
        """A predictor calibrated on this profile's calibration networks: ``lut``, ``xgb``, ``rf`` or
        ``flops`` (an adapted profile's layer-sum predictors are held toward its prior's calibration)."""
        from latbench.predictors import PREDICTORS, build_predictor

        if kind not in PREDICTORS:
            raise ProfileError(f"unknown predictor {kind!r}; choose from {', '.join(PREDICTORS)}")
        if kind not in self._predictors:
            pred = build_predictor(kind, self.meta, self.layers, self.path)
            archs, measured = self.network_samples("calib")
            prior = self.meta.get("adapted_from", {}).get("calibration_prior", {}).get(kind)
            if prior is not None:
                pred.fit(archs, measured, prior=prior)
            elif len(archs) >= 3:
                pred.fit(archs, measured)
            self._predictors[kind] = pred
        return self._predictors[kind]

    def calibrations(self) -> dict[str, dict[str, Any]]:
        """Each predictor's calibration, or ``{"skipped": reason}`` where it cannot be built."""
        from latbench.predictors import PREDICTORS

        out: dict[str, dict[str, Any]] = {}
        for kind in PREDICTORS:
            try:
                out[kind] = self.predictor(kind).calibration
            except ProfileError as exc:
                out[kind] = {"skipped": str(exc)}
        return out

    def validate(self) -> dict[str, dict[str, Any]]:
        """Accuracy of each predictor on the held-out network samples."""
        from latbench.predictors import PREDICTORS, accuracy

        archs, measured = self.network_samples("valid")
        if not archs:
            return {}
        out: dict[str, dict[str, Any]] = {}
        for kind in PREDICTORS:
            try:
                pred, sig = self.predictor(kind).predict_many(archs)
            except ProfileError as exc:  # e.g. too few layer samples to train a learned predictor
                out[kind] = {"skipped": str(exc)}
                continue
            out[kind] = accuracy(pred, measured, sig)
        return out


def list_profiles(root: str | Path = "device_profiles") -> list[dict[str, Any]]:
    """One summary row per profile folder under ``root`` (unreadable ones say why)."""
    rows = []
    for folder in sorted(Path(root).glob("*/")):
        meta_path = folder / "profile.json"
        if not meta_path.exists():
            continue
        try:
            meta = json.loads(meta_path.read_text())
            s, fp = meta.get("settings", {}), meta.get("fingerprint", {})
            val = meta.get("validation", {}).get("lut", {})
            rows.append({"name": folder.name, "device": fp.get("gpu") or fp.get("cpu"), "backend": s.get("backend"),
                         "threads": fp.get("threads"), "families": ",".join(meta.get("families", [])),
                         "created": meta.get("created", ""), "status": meta.get("status", ""),
                         "within_10pct": val.get("within_10pct"), "rmspe": val.get("rmspe")})
        except (json.JSONDecodeError, AttributeError) as exc:
            rows.append({"name": folder.name, "status": f"unreadable: {exc}"})
    return rows
