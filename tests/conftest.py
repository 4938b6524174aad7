from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch
from fakes import FakeClock, FakeTimer

from latbench.device_profile import DeviceProfile
from latbench.models.small import SmallConvNet

SHIPPED = Path(__file__).resolve().parents[1] / "device_profiles"


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


@pytest.fixture
def fake():
    """(clock, make_timer) for statistics tests that must not depend on this machine's speed."""
    clock = FakeClock()
    return clock, lambda sampler: FakeTimer(clock, sampler)


def as_if_made_here(folder: Path, **fingerprint_fields) -> None:
    """Give the profile in ``folder`` this machine's fingerprint (with ``fingerprint_fields`` changed)."""
    meta = json.loads((folder / "profile.json").read_text())
    here = DeviceProfile.load(folder, check_fingerprint=False).current_fingerprint()
    meta["fingerprint"] = {**here, **fingerprint_fields}
    (folder / "profile.json").write_text(json.dumps(meta))


@pytest.fixture(scope="session")
def shipped_profile(tmp_path_factory):
    """``copy(name, **fingerprint_fields)``: a copy of a shipped profile whose fingerprint is this
    machine's (with ``fingerprint_fields`` changed), so that no test depends on the engine version
    or machine a shipped profile was made with."""
    made: dict[tuple, Path] = {}

    def copy(name: str = "amd-epyc-1t-onnxruntime-fp32-bs1", **fingerprint_fields) -> Path:
        key = (name, tuple(sorted(fingerprint_fields.items())))
        if key not in made:
            folder = tmp_path_factory.mktemp("shipped") / name
            shutil.copytree(SHIPPED / name, folder, ignore=shutil.ignore_patterns("anchors.json"))
            as_if_made_here(folder, **fingerprint_fields)
            made[key] = folder
        return made[key]

    return copy


@pytest.fixture(scope="module")
def profile_and_data(shipped_profile):
    """(the shipped 1-thread profile, 64 random 32x32 images with labels in batches of 32): what a pruning
    method's search needs to run on a real engine without a trained network."""
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g)
    return DeviceProfile.load(shipped_profile()), DataLoader(TensorDataset(x, y), batch_size=32)
