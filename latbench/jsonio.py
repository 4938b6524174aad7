"""Plain JSON files: every latbench record is written the same way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def dump_json(data: Any, path: str | Path | None = None, indent: int = 2) -> str:
    """``data`` as JSON text; also written to ``path`` (folders created) when one is given, atomically: a run
    killed while writing leaves the previous file, never half of one."""
    text = json.dumps(data, indent=indent)
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text + "\n")
        tmp.replace(path)
    return text
