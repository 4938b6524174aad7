"""Append-only CSV journals: one row per measurement, flushed and fsynced, so nothing is lost.

A run killed mid-write (kill -9) can leave a torn last line; reopening drops it. Rows carry a
``key``; a resumed run skips keys already present, so nothing is measured or written twice.
"""

from __future__ import annotations

import csv
import io
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from latbench.errors import ProfileError


def measurement_row(m) -> dict[str, Any]:
    """The measurement columns of a journal row from a ``Measurement``."""
    s = m.summary
    return {"median_us": round(s.median, 3), "ci_low_us": round(s.ci_low, 3), "ci_high_us": round(s.ci_high, 3),
            "p90_us": round(s.p90, 3), "runs": s.n, "stop_reason": m.stop_reason, "wall_s": round(m.wall_time_s, 3),
            "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}


class Journal:
    def __init__(self, path: str | Path, columns: list[str]) -> None:
        self.path = Path(path)
        self.columns = columns
        self.rows: list[dict[str, str]] = []
        if self.path.exists():
            self._recover()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._write_line(columns)
        self.keys = {row["key"] for row in self.rows}

    def _recover(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):  # torn last line of a killed run
            data = data[: data.rfind(b"\n") + 1]
            with open(self.path, "r+b") as f:
                f.truncate(len(data))
        reader = csv.DictReader(io.StringIO(data.decode()))
        if reader.fieldnames != self.columns:
            raise ProfileError(f"cannot resume: {self.path} has columns {reader.fieldnames}, expected {self.columns} "
                               "(made by another version of latbench? use another --out or remove the folder)")
        self.rows = list(reader)

    def _write_line(self, values: list[Any]) -> None:
        self._write_lines([values])

    def _write_lines(self, lines: list[list[Any]]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(lines)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())

    def append(self, row: dict[str, Any]) -> None:
        self.extend([row])

    def extend(self, rows: list[dict[str, Any]]) -> None:
        """Append ``rows`` (those whose key is new) in one write."""
        new = []
        for row in rows:
            if row["key"] not in self.keys:
                new.append(row)
                self.keys.add(row["key"])
        if not new:
            return
        self._write_lines([[row.get(c, "") for c in self.columns] for row in new])
        self.rows += [{c: str(row.get(c, "")) for c in self.columns} for row in new]
