"""``profile.json``: a profile's metadata, with one reader and one writer.

Written atomically (a temporary file, then a rename), so an interrupted write never leaves a
half file; read with every check a profile needs (schema, required sections), each failure one
``ProfileError`` naming the file.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypedDict

from latbench import __version__
from latbench.errors import ProfileError
from latbench.jsonio import dump_json

SCHEMA = "latbench.profile/1"
META_FILE = "profile.json"
#: sections a profile needs before it can be used (an interrupted first run lacks them)
REQUIRED = ("plan", "fingerprint", "settings")


class ProfileMeta(TypedDict, total=False):
    """What ``profile.json`` holds (sections appear as the profiling run reaches them)."""

    schema: str
    name: str
    status: str  # "running" or "complete"
    created: str  # ISO time, UTC
    completed: str
    latbench: str  # the version that wrote it
    fingerprint: dict[str, Any]  # the device, engine and library versions it was measured with
    settings: dict[str, Any]  # what must match to resume: families, backend, device, threads, precision, ...
    measure_settings: dict[str, Any]
    families: list[str]
    timings_s: dict[str, float]
    overhead_us: float  # the engine's per-run cost on a trivial model
    staircase: dict[str, Any]  # the channel-step sweep
    reference_layer: dict[str, Any]  # the layer re-measured to track the machine's speed (``LayerSpec.to_dict``)
    plan: dict[str, Any]  # step, grids (``Grid.to_dict``), sample counts
    layers_complete_through_pass: int
    refine: dict[str, Any]
    validation: dict[str, dict[str, Any]]  # per predictor, accuracy on the held-out networks
    validated: dict[str, Any]  # when, and by which latbench, the predictors were last fitted and validated
    calibration: dict[str, dict[str, Any]]  # per predictor
    adapted_from: dict[str, Any]  # an adapted profile's prior and the calibration it was held to


def new_meta(name: str, fingerprint: dict[str, Any], settings: dict[str, Any], families: list[str],
             **sections: Any) -> ProfileMeta:
    """The metadata a new profile starts with (``status`` running)."""
    meta: ProfileMeta = {"schema": SCHEMA, "name": name, "status": "running",
                         "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         "latbench": __version__, "fingerprint": fingerprint, "settings": settings,
                         "families": families}
    meta.update(sections)  # type: ignore[typeddict-item]
    return meta


def read_meta(folder: str | Path, require: tuple[str, ...] = REQUIRED, context: str | None = None) -> ProfileMeta:
    """``folder``'s ``profile.json``, checked; ``context`` prefixes every error (e.g. ``cannot resume X``)."""
    path = Path(folder) / META_FILE

    def fail(message: str) -> ProfileError:
        return ProfileError(f"{context}: {message}" if context else message)

    if not path.exists():
        raise fail(f"not a device profile: {folder} (no {META_FILE})")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(f"{path}: unreadable ({exc})") from None
    except json.JSONDecodeError as exc:
        raise fail(f"{path}: corrupt JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise fail(f"{path}: not a JSON object")
    if meta.get("schema") != SCHEMA:
        raise fail(f"{path}: schema {meta.get('schema')!r} is not {SCHEMA!r}; re-profile with this version of latbench")
    for key in require:
        if key not in meta:
            raise fail(f"{path}: missing {key!r} (an interrupted run? re-run the same profile command)")
    return meta  # type: ignore[return-value]


def write_meta(folder: str | Path, meta: ProfileMeta) -> None:
    """Write ``profile.json`` atomically."""
    dump_json(meta, Path(folder) / META_FILE)
