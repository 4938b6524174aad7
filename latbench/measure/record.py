"""The ``Measurement`` record: samples, their summary, how they were taken, JSON round-trip."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.table import Table

from latbench.errors import InvalidValueError
from latbench.jsonio import dump_json
from latbench.measure.stats import Summary

SCHEMA = "latbench.measurement/1"


def _json_safe(value: Any) -> Any:
    """Replace non-finite floats by None so the JSON stays standard."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def format_us(value: float) -> str:
    """Microseconds as people read them: ``22.3 us``, ``12.345 ms`` from 10 ms up."""
    return f"{value / 1e3:.3f} ms" if value >= 1e4 else f"{value:.1f} us"


@dataclass
class Measurement:
    """One latency measurement. All times are microseconds.

    ``stop_reason`` is ``"converged"`` (the median's CI reached the target width),
    ``"time_budget"``, ``"max_runs"``, ``"fixed"`` (the naive method) or ``"interrupted"`` (Ctrl-C; what was
    measured is kept). The CI of the median is
    taken over ``block_medians_us`` when the measurement was made in blocks (see
    ``latbench.measure.adaptive``), else over the samples. ``drift`` is the relative change of the
    median from the first to the second half of the kept blocks; ``discarded_runs`` counts samples
    dropped because the machine's state changed under the measurement.
    """

    samples_us: list[float]
    warmup_runs: int
    wall_time_s: float
    stop_reason: str
    target_rel_ci: float | None
    drift: float = 0.0
    discarded_runs: int = 0
    conditions: dict[str, Any] = field(default_factory=dict)
    name: str = ""
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    ci_level: float = 0.95
    warmup_settled: bool = True
    block_medians_us: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.summary = Summary.of(self.samples_us, self.ci_level, blocks=self.block_medians_us or None)

    # convenient views of the summary -----------------------------------------------------
    @property
    def runs(self) -> int:
        return self.summary.n

    @property
    def median_us(self) -> float:
        return self.summary.median

    @property
    def ci_us(self) -> tuple[float, float]:
        return (self.summary.ci_low, self.summary.ci_high)

    @property
    def rel_ci_halfwidth(self) -> float:
        return self.summary.rel_ci_halfwidth

    @property
    def converged(self) -> bool:
        return self.stop_reason == "converged"

    # serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        s = self.summary
        return _json_safe({
            "schema": SCHEMA,
            "name": self.name,
            "created": self.created,
            "median_us": s.median, "mean_us": s.mean, "min_us": s.min, "max_us": s.max,
            "std_us": s.std, "p90_us": s.p90, "p99_us": s.p99, "iqr_us": s.iqr,
            "ci_low_us": s.ci_low, "ci_high_us": s.ci_high, "ci_level": s.ci_level,
            "rel_ci_halfwidth": s.rel_ci_halfwidth,
            "runs": s.n,
            "warmup_runs": self.warmup_runs,
            "warmup_settled": self.warmup_settled,
            "wall_time_s": self.wall_time_s,
            "stop_reason": self.stop_reason,
            "target_rel_ci": self.target_rel_ci,
            "drift": self.drift,
            "discarded_runs": self.discarded_runs,
            "conditions": self.conditions,
            "ci_method": self.summary.ci_method,
            "block_medians_us": list(self.block_medians_us),
            "samples_us": list(self.samples_us),
        })

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Measurement:
        if d.get("schema") != SCHEMA:
            raise InvalidValueError(f"not a latbench measurement (schema {d.get('schema')!r}, expected {SCHEMA!r})")
        return cls(
            samples_us=[float(x) for x in d["samples_us"]],
            warmup_runs=int(d["warmup_runs"]),
            wall_time_s=float(d["wall_time_s"]),
            stop_reason=str(d["stop_reason"]),
            target_rel_ci=None if d["target_rel_ci"] is None else float(d["target_rel_ci"]),
            drift=float(d.get("drift", 0.0)),
            discarded_runs=int(d.get("discarded_runs", 0)),
            conditions=dict(d.get("conditions", {})),
            name=str(d.get("name", "")),
            created=str(d.get("created", "")),
            ci_level=float(d.get("ci_level", 0.95)),
            warmup_settled=bool(d.get("warmup_settled", True)),
            block_medians_us=[float(x) for x in d.get("block_medians_us", [])],
        )

    def to_json(self, path: str | Path | None = None) -> str:
        return dump_json(self.to_dict(), path, indent=2)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> Measurement:
        p = Path(text_or_path) if not str(text_or_path).lstrip().startswith("{") else None
        text = p.read_text() if p is not None else str(text_or_path)
        return cls.from_dict(json.loads(text))

    def __rich__(self) -> Group:
        """The summary table (``rich.print(measurement)``), titled by name and conditions."""
        s, c = self.summary, self.conditions
        title = (f"{self.name or 'measurement'} · {c.get('backend', '?')} on {c.get('device', '?')} · "
                 f"batch {c.get('batch', '?')} · {c.get('dtype', '?')} · threads {c.get('threads') or '-'}")
        table = Table(title=title, show_header=False)
        table.add_column("statistic", style="bold")
        table.add_column("value", justify="right")
        us = format_us
        for key, value in (
            ("median", us(s.median)),
            (f"{s.ci_level:.0%} CI of median",
             f"{us(s.ci_low)} – {us(s.ci_high)} (±{s.rel_ci_halfwidth * 100:.2f}%)"),
            ("mean / min", f"{us(s.mean)} / {us(s.min)}"),
            ("p90 / p99", f"{us(s.p90)} / {us(s.p99)}"),
            ("IQR", us(s.iqr)),
            ("runs (warm-up)", f"{s.n} ({self.warmup_runs}{'' if self.warmup_settled else ', not settled'})"),
            ("stopped", f"{self.stop_reason} after {self.wall_time_s:.1f} s"),
        ):
            table.add_row(key, value)
        drift = (f"drift: machine state changed during the run; {self.discarded_runs} older samples discarded"
                 if self.discarded_runs else "")
        return Group(table, drift) if drift else Group(table)
