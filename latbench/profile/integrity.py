"""A finished profile's integrity: the digest of every data file, recorded when the profile completes and
checked whenever it is loaded, so an edited, truncated or swapped file is refused by name instead of
answering differently; and the value checks a digest cannot give (a profile without one, ``profile.json``'s
own numbers, duplicate rows)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import pandas as pd

from latbench.errors import ProfileError

#: ``profile.json`` key of the manifest: data file (relative path) -> sha256
MANIFEST = "files"
DATA_FILES = ("layers.csv", "models.csv")


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(folder: str | Path) -> dict[str, str]:
    """sha256 of the profile's tables and stored predictors."""
    folder = Path(folder)
    files = [folder / name for name in DATA_FILES if (folder / name).exists()]
    stored = folder / "predictors"
    files += sorted(p for p in stored.glob("*") if p.is_file()) if stored.is_dir() else []
    return {p.relative_to(folder).as_posix(): file_digest(p) for p in files}


def corrupt_file(folder: str | Path, meta: dict[str, Any]) -> str | None:
    """The first recorded file that is missing or whose digest differs, with why; None when all match (or
    the profile records no manifest)."""
    folder = Path(folder)
    for name, want in sorted(meta.get(MANIFEST, {}).items()):
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if file_digest(path) != want:
            return f"{name} changed since the profile was completed"
    return None


def check_integrity(folder: str | Path, meta: dict[str, Any], layers: pd.DataFrame, models: pd.DataFrame) -> None:
    """Refuse, in one line, a profile whose files do not match its manifest or whose values cannot be right."""
    name = Path(folder).name
    bad = corrupt_file(folder, meta)
    if bad:
        raise ProfileError(f"profile {name} is corrupt: {bad}; restore it or profile again")
    step = meta.get("plan", {}).get("step")
    if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step < 1):
        raise ProfileError(f"profile {name} is corrupt: plan.step must be a positive integer, not {step!r}")
    for label, table in (("layers.csv", layers), ("models.csv", models)):
        if "key" in table and table["key"].duplicated().any():
            dup = table.loc[table["key"].duplicated(), "key"].iloc[0]
            raise ProfileError(f"profile {name} is corrupt: {label} holds the key {dup!r} more than once")
        medians = pd.to_numeric(table.get("median_us", pd.Series(dtype=float)), errors="coerce")
        if len(medians) and not medians.map(lambda v: math.isfinite(v) and 0 < v < 1e9).all():
            raise ProfileError(f"profile {name} is corrupt: {label} has a median_us that is not a positive "
                               f"latency under 1000 s")
    _check_cells(name, layers, models)
    known = set(meta.get("families", []))
    unknown = sorted(set(models["family"].astype(str)) - known) if "family" in models else []
    if unknown:
        raise ProfileError(f"profile {name} is corrupt: models.csv names families {', '.join(unknown)} that "
                           f"profile.json does not list")


def _check_cells(name: str, layers: pd.DataFrame, models: pd.DataFrame) -> None:
    """Every cell the predictors parse parses: layer rows into specs, network rows into widths."""
    from latbench.arch.spec import OPS
    from latbench.profile.tables import row_to_spec

    for i, row in enumerate(layers.to_dict("records")):
        try:
            spec = row_to_spec(row)
        except (TypeError, ValueError, KeyError) as exc:
            raise ProfileError(f"profile {name} is corrupt: layers.csv row {i + 2} does not parse ({exc})") from None
        if spec.op not in OPS:
            raise ProfileError(f"profile {name} is corrupt: layers.csv row {i + 2} has the unknown op {spec.op!r}")
    for i, row in enumerate(models.to_dict("records")):
        try:
            widths = [int(w) for w in str(row["widths"]).split()]
        except ValueError:
            raise ProfileError(f"profile {name} is corrupt: models.csv row {i + 2} has widths {row['widths']!r}, "
                               f"not channel counts") from None
        if not widths or min(widths) < 1:
            raise ProfileError(f"profile {name} is corrupt: models.csv row {i + 2} has widths {row['widths']!r}, "
                               f"not positive channel counts")
