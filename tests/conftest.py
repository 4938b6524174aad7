from __future__ import annotations

import importlib.util

import pytest
import torch

from latbench.models.small import SmallConvNet


def _cuda() -> bool:
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    no_cuda = pytest.mark.skip(reason="needs a CUDA GPU; torch sees none")
    no_trt = pytest.mark.skip(reason="needs TensorRT and a CUDA GPU")
    has_trt = _cuda() and importlib.util.find_spec("tensorrt") is not None
    for item in items:
        if "cuda" in item.keywords and not _cuda():
            item.add_marker(no_cuda)
        if "tensorrt" in item.keywords and not has_trt:
            item.add_marker(no_trt)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny-network tests: as fast, and no stalls on a shared machine.
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def small_net():
    torch.manual_seed(0)
    return SmallConvNet(width=16).eval()


@pytest.fixture(scope="session")
def example_input():
    return torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))


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


@pytest.fixture
def fake():
    """(clock, make_timer) for statistics tests that must not depend on this machine's speed."""
    clock = FakeClock()
    return clock, lambda sampler: FakeTimer(clock, sampler)
