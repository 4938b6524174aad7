"""Timers: how one call of a deployed network is timed. Every timer returns microseconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class Timer(Protocol):
    """Times ``n`` consecutive calls of ``fn``, one sample per call, in microseconds."""

    name: str

    def time(self, fn: Callable[[], object], n: int) -> list[float]: ...


class HostTimer:
    """Host monotonic clock around a synchronous call (CPU engines return when the work is done)."""

    name = "host-perf_counter"

    def time(self, fn: Callable[[], object], n: int) -> list[float]:
        clock = time.perf_counter_ns
        out = []
        for _ in range(n):
            t0 = clock()
            fn()
            out.append((clock() - t0) / 1e3)
        return out


class CudaEventTimer:
    """CUDA events recorded on the current stream around each call, synchronised before reading.

    Each call is followed by an event synchronisation, so a sample is the latency of one
    inference issued alone (host launch cost included), never an unsynchronised host reading.
    """

    name = "cuda-events"

    def __init__(self, device: int | None = None) -> None:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("CUDA event timing needs a CUDA device, and torch sees none")
        self._torch = torch
        self._device = device if device is not None else torch.cuda.current_device()

    def time(self, fn: Callable[[], object], n: int) -> list[float]:
        torch = self._torch
        out = []
        with torch.cuda.device(self._device):
            torch.cuda.synchronize()
            for _ in range(n):
                start = torch.cuda.Event(enable_timing=True)
                end = torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                out.append(start.elapsed_time(end) * 1e3)  # ms -> us
        return out
