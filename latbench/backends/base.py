"""The backend protocol: deploy a network the way it ships, hand ``measure`` something to run."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from latbench.errors import InvalidValueError
from latbench.measure.timers import HostTimer, Timer

LAYER_COLUMNS = ["layer", "engine_node", "op", "time_us", "share"]


class Runnable:
    """A deployed network with its inputs bound: calling it runs one inference to completion.

    ``timer`` says how a call must be timed (host clock for synchronous CPU engines, CUDA
    events on GPU); ``conditions`` records backend fingerprint, threads, batch and dtype.
    """

    def __init__(self, call: Callable[[], object], *, timer: Timer | None = None,
                 conditions: dict[str, Any] | None = None,
                 fetch_output: Callable[[], np.ndarray] | None = None,
                 layer_profiler: Callable[[int], Any] | None = None) -> None:
        self._call = call
        self.timer: Timer = timer or HostTimer()
        self.conditions: dict[str, Any] = dict(conditions or {})
        self._fetch_output = fetch_output
        self._layer_profiler = layer_profiler

    def __call__(self) -> object:
        return self._call()

    def output(self) -> np.ndarray:
        """Run once and return the first output on the host, for correctness checks."""
        if self._fetch_output is None:
            raise NotImplementedError("this runnable does not expose its output")
        return self._fetch_output()

    @property
    def has_layer_times(self) -> bool:
        return self._layer_profiler is not None

    def layer_times(self, runs: int = 20):
        """Per-layer times from the engine's own profiler, as a DataFrame with ``LAYER_COLUMNS``.

        ``time_us`` is the median over ``runs`` inferences; ``layer`` is the source module path
        (empty where the engine node has no module, e.g. a layout reorder).
        """
        if self._layer_profiler is None:
            raise NotImplementedError("this backend has no per-layer profiler")
        return self._layer_profiler(runs)


def engine_layer_table(rows: list[dict[str, Any]]):
    """Aggregate per-run rows (layer, engine_node, op, time_us, run) into the layer DataFrame."""
    df = pd.DataFrame(rows, columns=["layer", "engine_node", "op", "time_us", "run"])
    if df.empty:
        return pd.DataFrame(columns=LAYER_COLUMNS)
    per_run = df.groupby(["engine_node", "layer", "op", "run"], sort=False, as_index=False)["time_us"].sum()
    table = per_run.groupby(["engine_node", "layer", "op"], sort=False, as_index=False)["time_us"].median()
    table["share"] = table["time_us"] / table["time_us"].sum()
    return table[LAYER_COLUMNS].reset_index(drop=True)


class Backend(ABC):
    """One inference engine on one device. Subclasses import their engine lazily."""

    name: str = ""
    description: str = ""

    def __init__(self, device: str = "cpu", threads: int | None = None, precision: str = "fp32") -> None:
        if precision not in self.precisions:
            supported = ", ".join(self.precisions)
            raise InvalidValueError(f"backend {self.name!r} supports precisions {supported}, not {precision!r}")
        if threads is not None and threads < 1:
            raise InvalidValueError(f"threads must be a positive integer, got {threads}")
        self.device = device
        self.threads = threads
        self.precision = precision

    precisions: tuple[str, ...] = ("fp32",)

    def available(self) -> bool:
        """True when this backend can deploy on this machine."""
        return self.unavailable_reason() is None

    @abstractmethod
    def unavailable_reason(self) -> str | None:
        """None when available, else one line saying exactly what is missing."""

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """Device and library versions, threads and precision of this backend."""

    @abstractmethod
    def deploy(self, model: Any, example_input: Any) -> Runnable:
        """Deploy ``model`` (an ``nn.Module``, or an ONNX path where supported) at ``example_input``."""
