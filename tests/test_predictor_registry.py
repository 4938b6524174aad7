"""The predictor protocol and registry: every kind follows ``Predictor``, and a new one plugs in by name."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from test_cli import run

from latbench.device_profile import DeviceProfile
from latbench.predictors import PREDICTORS, Prediction, Predictor, register_predictor
from latbench.predictors.batch import CandidateBatch, group_by_base


class LayerCount:
    """A toy predictor: ``scale`` microseconds per active layer, ``scale`` fitted as the median ratio."""

    name = "layers"

    def __init__(self) -> None:
        self.calibration = {"us_per_layer": 10.0}

    @classmethod
    def from_profile(cls, meta, layers=None, folder=None) -> LayerCount:
        return cls()

    def _layers(self, archs: Sequence) -> np.ndarray:
        groups, order = group_by_base(archs)
        counts = np.concatenate([CandidateBatch.of(g).active.sum(axis=1) for g in groups])
        out = np.empty(len(archs))
        out[order] = counts
        return out

    def fit(self, archs, measured_us, prior=None) -> None:
        self.calibration = {"us_per_layer": float(np.median(np.asarray(measured_us) / self._layers(archs)))}

    def predict_many(self, archs):
        return self.calibration["us_per_layer"] * self._layers(archs), np.full(len(archs), 0.1)

    def predict(self, arch) -> Prediction:
        (latency,), _ = self.predict_many([arch])
        return Prediction(float(latency), latency * 0.85, latency * 1.18, 0.1, self.name)


@pytest.fixture
def toy_registered():
    register_predictor("layers", LayerCount)
    yield
    PREDICTORS.pop("layers")


@pytest.fixture(scope="module")
def profile(shipped_profile):
    return DeviceProfile.load(shipped_profile(), check_fingerprint=False)


def test_every_registered_kind_follows_the_protocol(profile):
    for kind, cls in PREDICTORS.items():
        predictor = profile.predictor(kind, reanchored=False)
        assert isinstance(predictor, cls) and isinstance(predictor, Predictor), kind
    assert list(PREDICTORS)[:4] == ["lut", "xgb", "rf", "flops"]


def test_a_registered_predictor_is_calibrated_by_the_profile_and_offered_by_the_cli(capsys, toy_registered, profile,
                                                                                   shipped_profile):
    toy = profile.predictor("layers", reanchored=False)
    archs, measured = profile.network_samples("calib")  # the networks the profile calibrates every kind on
    expected = float(np.median([m / len(a.active_layers()) for a, m in zip(archs, measured, strict=True)]))
    assert toy.calibration["us_per_layer"] == pytest.approx(expected)
    code, out, err = run(capsys, "predict", "--profile", str(shipped_profile()), "--model", "resnet56",
                         "--predictor", "layers")
    layers = len(profile.family_archs["resnet56"].active_layers())
    assert code == 0, err
    assert f"{expected * layers:.1f} us" in out


def test_an_unknown_predictor_is_refused_naming_the_registered_ones(capsys, shipped_profile):
    code, _, err = run(capsys, "predict", "--profile", str(shipped_profile()), "--model", "resnet56",
                       "--predictor", "nosuch")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "invalid choice: 'nosuch' (choose from 'all', 'lut', 'xgb', 'rf', 'flops')" in err
    with pytest.raises(ValueError, match="a predictor needs a name"):
        register_predictor("all", LayerCount)
