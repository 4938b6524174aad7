"""Test doubles: a fake clock and timer for statistics code, and a device profile with a made-up,
FLOPs-linear latency predictor for the pruning tests."""

from __future__ import annotations

from typing import Any

import numpy as np

from latbench.arch import Arch
from latbench.predictors import Prediction


class FakePredictor:
    """Latency ``const_us + us_per_mflop * MFLOPs`` with a symmetric relative half-width ``rel_halfwidth``."""

    def __init__(self, rel_halfwidth: float = 0.02, const_us: float = 20.0, us_per_mflop: float = 2.0) -> None:
        self.rel_halfwidth, self.const_us, self.us_per_mflop = rel_halfwidth, const_us, us_per_mflop
        self.calls = 0

    def latency_us(self, arch: Arch) -> float:
        return self.const_us + self.us_per_mflop * arch.flops() / 1e6

    def predict_many(self, archs: list[Arch]) -> tuple[np.ndarray, np.ndarray]:
        self.calls += len(archs)
        return np.array([self.latency_us(a) for a in archs]), np.full(len(archs), self.rel_halfwidth / 1.645)

    def predict(self, arch: Arch) -> Prediction:
        self.calls += 1
        lat = self.latency_us(arch)
        h = self.rel_halfwidth
        return Prediction(lat, lat * (1 - h), lat * (1 + h), h / 1.645, "fake")


class FakeProfile:
    """What ``LatencyOracle`` needs of a ``DeviceProfile``: settings, a name, a backend and predictors by kind."""

    def __init__(self, predictors: dict[str, FakePredictor] | None = None, backend: Any = None,
                 backend_name: str = "onnxruntime", name: str = "fake-profile") -> None:
        self.meta = {"settings": {"backend": backend_name}}
        self.name = name
        self.anchoring = None
        self.predictors = predictors if predictors is not None else {"lut": FakePredictor()}
        self._backend = backend
        self.backend_calls = 0

    def backend(self) -> Any:
        self.backend_calls += 1
        if self._backend is None:
            from latbench.backends import get_backend

            self._backend = get_backend("onnxruntime", threads=1)
        return self._backend

    def predictor(self, kind: str) -> FakePredictor:
        return self.predictors[kind]


class FakeClock:
    """A wall clock that only moves when a fake timer says time has passed."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class FakeTimer:
    """Returns samples from ``sampler(call_index)`` in microseconds and advances the fake clock."""

    name = "fake"

    def __init__(self, clock: FakeClock, sampler) -> None:
        self.clock, self.sampler, self.calls = clock, sampler, 0

    def time(self, fn, n):
        out = []
        for _ in range(n):
            fn()
            value = float(self.sampler(self.calls))
            self.calls += 1
            self.clock.t += value / 1e6
            out.append(value)
        return out


class ConstantTimer:
    """Every call takes ``us`` microseconds, whatever it does."""

    name = "constant"

    def __init__(self, us: float) -> None:
        self.us = us

    def time(self, fn, n):
        return [self.us] * n


class ParamClockBackend:
    """A backend whose deployed networks take a made-up, deterministic ``const_us + us_per_kparam * kparams``
    (no engine runs): measurements that are equal wherever they are made, for testing what carries them.

    ``crash_once``: a file path; the first deploy that finds it missing creates it and kills its own process
    (a device that dies in the middle of a job)."""

    name = "param-clock"

    def __init__(self, const_us: float = 50.0, us_per_kparam: float = 1.0, crash_once: str | None = None) -> None:
        self.const_us, self.us_per_kparam, self.crash_once = const_us, us_per_kparam, crash_once

    def latency_us(self, module) -> float:
        return self.const_us + self.us_per_kparam * sum(p.numel() for p in module.parameters()) / 1e3

    def deploy(self, module, example):
        import os
        from pathlib import Path

        from latbench.backends.base import Runnable

        if self.crash_once is not None and not Path(self.crash_once).exists():
            Path(self.crash_once).touch()
            os._exit(1)
        return Runnable(lambda: None, timer=ConstantTimer(self.latency_us(module)))
