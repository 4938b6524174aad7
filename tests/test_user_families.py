"""A network that only this file defines, profiled and predicted as a family: its source and digest are
recorded, its candidates are built by surgery, and a changed source is refused rather than mixed in."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from latbench.arch import trace
from latbench.device_profile import DeviceProfile
from latbench.errors import InputShapeError, UnknownModelError
from latbench.models.family import family
from latbench.profiler.run import ProfileSettings, profile_device

SHAPE = (3, 16, 16)


class TwoStage(nn.Module):
    """Conv-BN-ReLU, a residual 3x3 pair, a strided conv and a linear head."""

    def __init__(self, width: int = 24, wide: int = 40) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width))
        self.down = nn.Sequential(nn.Conv2d(width, wide, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(wide),
                                  nn.ReLU())
        self.head = nn.Linear(wide, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.body(x))
        return self.head(self.down(x).mean(dim=(2, 3)))


def two_stage() -> nn.Module:
    return TwoStage()


FACTORY = f"{__file__}:two_stage"
TINY = dict(families=[FACTORY], input_shape=SHAPE, threads=1, budget_min=5, networks_per_family=8,
            min_networks_per_family=8, passes=2, step=16, refine=False)


@pytest.fixture(scope="module")
def user_profile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("profiles") / "user"
    profile_device(ProfileSettings(**TINY), out=folder, progress=False)
    return folder


def test_the_profile_records_how_to_rebuild_the_family(user_profile):
    meta = json.loads((user_profile / "profile.json").read_text())
    expected = trace(TwoStage(), torch.zeros(1, *SHAPE), FACTORY).base.digest
    assert meta["families"] == [FACTORY]
    assert meta["family_sources"][FACTORY] == {"kind": "factory", "input_shape": list(SHAPE), "digest": expected}
    assert meta["status"] == "complete"


def test_a_user_family_is_predicted_and_its_candidates_built_like_a_built_in_one(user_profile):
    profile = DeviceProfile.load(user_profile)
    arch = profile.family_archs[FACTORY]
    rng = np.random.default_rng(0)
    variants = [arch.with_widths({g.id: int(rng.integers(1, g.channels + 1)) for g in arch.prunable_groups})
                for _ in range(4)]
    for v in variants:
        built = profile.families[FACTORY].build(v)
        assert trace(built, torch.zeros(1, *SHAPE), FACTORY).effective() == v.effective()
    predicted = profile.predictor("lut").predict_many([arch, *variants])[0]
    assert np.all(predicted > 0)
    smallest = arch.with_widths({g.id: 1 for g in arch.prunable_groups})
    assert profile.predictor("lut").predict_many([smallest])[0][0] < predicted[0]
    archs, measured = profile.network_samples()
    assert len(archs) == len(measured) >= 8 and all(a.base.digest == arch.base.digest for a in archs)


def test_a_family_whose_source_now_builds_another_network_is_refused(user_profile, tmp_path):
    source = tmp_path / "net.py"
    source.write_text(Path(__file__).read_text())
    folder = tmp_path / "changed"
    settings = {**TINY, "families": [f"{source}:two_stage"], "budget_min": 0.01}
    code = ("from latbench.profiler.run import ProfileSettings, profile_device\n"
            "import sys\n"
            f"settings = ProfileSettings(**{settings!r})\n"
            "try:\n"
            f"    profile_device(settings, out={str(folder)!r}, progress=False)\n"
            "except Exception as exc:\n"
            "    print(type(exc).__name__, exc)\n")
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert (folder / "profile.json").exists(), first.stderr[-2000:]
    source.write_text(Path(__file__).read_text().replace("width: int = 24", "width: int = 20"))
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert second.stdout.startswith("ModelLoadError") and "builds a different network" in second.stdout


def test_a_family_needs_a_known_name_or_an_input_shape():
    with pytest.raises(InputShapeError, match="give its input shape"):
        family(FACTORY)
    with pytest.raises(UnknownModelError):
        family("no_such_net", SHAPE)
    with pytest.raises(InputShapeError, match="takes input 3x32x32"):
        family("resnet20", SHAPE)
    assert family("resnet20").input_shape == (3, 32, 32)
