"""A device profile on disk: ``profile.json``, ``layers.csv``, ``models.csv``. Plain files, no pickle.

Loading checks the schema, the columns and the values (a hand-edited or truncated file is one
clear error naming the file, column and row), and compares the profile's fingerprint with this
machine's: a mismatch warns, or refuses with ``strict=True``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from latbench.anchoring import DEFAULT_SECONDS, Reanchoring, history, measure_anchors, record, rescale
from latbench.arch import Arch
from latbench.backends import get_backend, require_backend
from latbench.errors import ProfileError
from latbench.models.family import Family, recorded_families
from latbench.predictors import PREDICTORS, accuracy, build_predictor
from latbench.profile import (
    LAYER_COLUMNS,
    MODEL_COLUMNS,
    ProfileMeta,
    normalised_network_latency,
    read_meta,
    read_table,
)
from latbench.profile.integrity import check_integrity, corrupt_file

#: fingerprint fields naming the device and configuration: a difference means another setup
CONFIG_KEYS = ("cpu", "gpu", "backend", "device", "precision", "threads", "compute_capability")
#: engine and library versions: a patch release only warns, even with ``strict``
VERSION_KEYS = ("onnxruntime", "torch", "tensorrt")
FINGERPRINT_KEYS = CONFIG_KEYS + VERSION_KEYS


class ProfileMismatchWarning(UserWarning):
    """The profile was made on another device, configuration or engine version."""


@dataclass(frozen=True)
class FingerprintChange:
    """One fingerprint field that differs between a profile and this machine."""

    key: str
    profile: Any
    here: Any

    @property
    def patch_only(self) -> bool:
        """A version field whose major.minor matches: a patch release of the same engine."""
        if self.key not in VERSION_KEYS:
            return False
        a, b = _major_minor(self.profile), _major_minor(self.here)
        return a is not None and a == b

    @property
    def refused_when_strict(self) -> bool:
        return not self.patch_only

    def __str__(self) -> str:
        kind = " (patch release)" if self.patch_only else ""
        return f"{self.key}: profile {self.profile!r}, here {self.here!r}{kind}"


def _major_minor(version: Any) -> tuple[int, int] | None:
    match = re.match(r"(\d+)\.(\d+)", str(version)) if version is not None else None
    return (int(match[1]), int(match[2])) if match else None


def fingerprint_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[FingerprintChange]:
    """The fields of a recorded fingerprint that differ from ``current``, in ``FINGERPRINT_KEYS`` order."""
    return [FingerprintChange(k, saved.get(k), current.get(k)) for k in FINGERPRINT_KEYS
            if saved.get(k) != current.get(k)]


class DeviceProfile:
    """A loaded profile: metadata, layer samples, network samples, and its predictors."""

    def __init__(self, path: Path, meta: ProfileMeta, layers, models) -> None:
        self.path = path
        self.meta = meta
        self.layers = layers
        self.models = models
        self.anchoring: Reanchoring | None = None
        self._predictors: dict[str, Any] = {}  # calibrated on the profile, by kind
        self._reanchored: dict[str, Any] = {}  # the same, rescaled to ``anchoring``

    @classmethod
    def load(cls, path: str | Path, strict: bool = False, check_fingerprint: bool = True) -> DeviceProfile:
        path = Path(path)
        meta = read_meta(path)
        profile = cls(path, meta, read_table(path / "layers.csv", LAYER_COLUMNS),
                      read_table(path / "models.csv", MODEL_COLUMNS))
        check_integrity(path, meta, profile.layers, profile.models)
        if check_fingerprint:
            profile.check_fingerprint(strict)
        return profile

    def check_fingerprint(self, strict: bool = False, current: dict[str, Any] | None = None) -> None:
        """One warning naming every difference from this machine's fingerprint; with ``strict``,
        a ``ProfileError`` if any is more than an engine patch release."""
        changes = self.fingerprint_changes(current)
        if not changes:
            return
        msg = f"profile {self.path.name} differs from this machine: {'; '.join(map(str, changes))}"
        if strict and any(c.refused_when_strict for c in changes):
            raise ProfileError(msg)
        warnings.warn(msg, ProfileMismatchWarning, stacklevel=3)

    # --- identity ----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.meta.get("name", self.path.name)

    def backend(self, require: bool = True):
        """The backend this profile was made with, configured the same way (device, threads,
        precision). With ``require``, a backend that cannot run here is a one-line error."""
        s = self.meta["settings"]
        make = require_backend if require else get_backend
        return make(s["backend"], device=s.get("device"), threads=s.get("threads"), precision=s.get("precision"),
                    **({"cuda_graph": True} if s.get("cuda_graph") else {}))

    def current_fingerprint(self) -> dict[str, Any]:
        backend = self.backend(require=False)
        reason = backend.unavailable_reason()
        if reason is not None:
            return {"unavailable": reason}
        return backend.fingerprint()

    def fingerprint_changes(self, current: dict[str, Any] | None = None) -> list[FingerprintChange]:
        """The fields of the profile's fingerprint that differ from ``current`` (default: this machine's)."""
        current = current if current is not None else self.current_fingerprint()
        if "unavailable" in current:
            backend = self.meta["settings"]["backend"]
            return [FingerprintChange("backend", backend, f"{backend} cannot run here ({current['unavailable']})")]
        return fingerprint_differences(self.meta["fingerprint"], current)

    # --- data --------------------------------------------------------------------------------
    @cached_property
    def families(self) -> dict[str, Family]:
        """The profiled families, each able to build its candidates (``families[name].build(arch)``)."""
        return recorded_families(self.meta)

    @cached_property
    def family_archs(self) -> dict[str, Arch]:
        batch = int(self.meta["settings"].get("batch", 1))
        return {name: fam.trace(batch) for name, fam in self.families.items()}

    def network_samples(self, split: str | None = None) -> tuple[list[Any], np.ndarray]:
        """(candidate archs, median us) of the whole-network samples, in one machine state.

        Each row was measured interleaved with its family's full-width network (the anchor);
        scaling it by the family's median anchor over its anchor in the same run removes the
        machine's drift between chunks.
        """
        models = self.models
        normalised = normalised_network_latency(models, self.meta.get("family_state"))
        keep = slice(None) if split is None else (models["split"] == split).to_numpy()
        rows = models[keep]
        archs = []
        for r in rows.itertuples():
            base = self.family_archs[r.family]
            widths = tuple(int(w) for w in str(r.widths).split())
            removed = [b for b in str(r.removed).split(";") if b]
            archs.append(Arch(base.base, widths).without_blocks(removed))
        return archs, normalised[keep].to_numpy(dtype=float)

    # --- machine state now ----------------------------------------------------------------------
    def reanchor(self, seconds: float = DEFAULT_SECONDS, backend=None, progress=None, save: bool = True,
                 **measure_options: Any) -> Reanchoring:
        """Measure the reference layer and a few of the profile's networks now (interleaved, about
        ``seconds``) and rescale every predictor to this state (``latbench.anchoring``; options
        such as ``extra`` runnables go to ``measure_anchors``); recorded in the profile's
        ``anchors.json`` unless ``save`` is False."""
        anchoring = measure_anchors(self, seconds, backend=backend, progress=progress, **measure_options)
        self.apply_anchoring(anchoring)
        if save:
            record(self.path, anchoring)
        return anchoring

    def apply_anchoring(self, anchoring: Reanchoring | None) -> None:
        """Rescale predictions to ``anchoring`` (None: back to the profile's own state)."""
        self.anchoring = anchoring
        self._reanchored = {}

    # --- predictors --------------------------------------------------------------------------
    def predictor(self, kind: str = "lut", reanchored: bool = True):
        """A predictor calibrated on this profile's calibration networks: ``lut``, ``xgb``, ``rf`` or
        ``flops`` (an adapted profile's layer-sum predictors are held toward its prior's calibration),
        rescaled to the machine's state now once the profile is re-anchored (unless ``reanchored``
        is False)."""
        if kind not in PREDICTORS:
            raise ProfileError(f"unknown predictor {kind!r}; choose from {', '.join(PREDICTORS)}")
        if reanchored and self.anchoring is not None:
            if kind not in self._reanchored:
                self._reanchored[kind] = rescale(self.predictor(kind, reanchored=False), self, self.anchoring)
            return self._reanchored[kind]
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
        out: dict[str, dict[str, Any]] = {}
        for kind in PREDICTORS:
            try:
                out[kind] = self.predictor(kind, reanchored=False).calibration
            except ProfileError as exc:
                out[kind] = {"skipped": str(exc)}
        return out

    def validate(self) -> dict[str, dict[str, Any]]:
        """Accuracy of each predictor on the held-out network samples."""
        archs, measured = self.network_samples("valid")
        if not archs:
            return {}
        out: dict[str, dict[str, Any]] = {}
        for kind in PREDICTORS:
            try:
                pred, sig = self.predictor(kind, reanchored=False).predict_many(archs)
            except ProfileError as exc:  # e.g. too few layer samples to train a learned predictor
                out[kind] = {"skipped": str(exc)}
                continue
            out[kind] = accuracy(pred, measured, sig)
        return out


def list_profiles(root: str | Path = "device_profiles") -> list[dict[str, Any]]:
    """One summary row per profile folder under ``root`` (unreadable ones say why)."""
    rows = []
    for folder in sorted(Path(root).glob("*/")):
        if not (folder / "profile.json").exists():
            continue
        try:
            meta = read_meta(folder, require=())
        except ProfileError as exc:
            rows.append({"name": folder.name, "status": f"unreadable: {exc}"})
            continue
        s, fp = meta.get("settings", {}), meta.get("fingerprint", {})
        val = meta.get("validation", {}).get("lut", {})
        bad = corrupt_file(folder, meta)
        anchored = history(folder)
        rows.append({"name": folder.name, "device": fp.get("gpu") or fp.get("cpu"), "backend": s.get("backend"),
                     "threads": fp.get("threads"), "families": ",".join(meta.get("families", [])),
                     "created": meta.get("created", ""), "status": f"corrupt: {bad}" if bad else meta.get("status", ""),
                     "within_10pct": val.get("within_10pct"), "rmspe": val.get("rmspe"),
                     "anchor_factor": anchored[-1].factor if anchored else None,
                     "anchored_at": anchored[-1].measured_at if anchored else None})
    return rows


def check_profile(folder: str | Path, reanchor: float | None = None, log=None) -> dict[str, Any]:
    """How the profile in ``folder`` stands on this machine: ``here`` says whether its fingerprint
    matches (or what differs); with ``reanchor`` seconds, its anchor factor is measured now where
    its backend can run."""
    try:
        profile = DeviceProfile.load(folder, check_fingerprint=False)
    except ProfileError as exc:
        return {"here": f"unreadable: {exc}"}
    changes = profile.fingerprint_changes()
    out: dict[str, Any] = {"here": "matches" if not changes else "; ".join(map(str, changes))}
    runnable = not any(c.key == "backend" for c in changes)
    if reanchor is not None and runnable:
        if log is not None:
            log(profile.name)
        anchoring = profile.reanchor(reanchor)
        out |= {"anchor_factor": anchoring.factor, "anchored_at": anchoring.measured_at}
    return out
