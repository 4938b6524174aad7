"""Re-anchoring a profile to the machine's state now, fingerprint warnings, and ``latbench devices``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from fakes import FakeClock, FakeTimer
from test_cli import assert_one_line_error, run

from latbench.anchoring import ANCHORS_FILE, AnchorPoint, Reanchoring, group_ratios, history, record
from latbench.device_profile import DeviceProfile, list_profiles
from latbench.models import build_candidate
from latbench.predictors import accuracy
from latbench.profiler.channel_step import PROBE
from latbench.profiler.microbench import build_layer


def parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


class SlowerMachine:
    """A backend on a fake clock whose runnables take the profile's own latencies times ``factor``,
    with log-normal noise: it knows every network of the profile by its parameter count."""

    name = "fake"

    def __init__(self, profile: DeviceProfile, clock: FakeClock, factor: float, noise: float = 0.02) -> None:
        self.clock, self.factor, self.noise, self.deployed = clock, factor, noise, 0
        layers = profile.layers
        self.truth = {parameters(build_layer(PROBE)[0]):
                      float(layers.loc[layers["shape_key"] == "reference", "median_us"].median())}
        for family, arch in profile.family_archs.items():
            anchor = profile.models.loc[profile.models["family"] == family, "anchor_us"].astype(float).median()
            self.truth[parameters(build_candidate(family, arch))] = float(anchor)
        archs, then = profile.network_samples("calib")
        for arch, us in zip(archs, then, strict=True):
            self.truth.setdefault(parameters(build_candidate(arch.name, arch)), float(us))

    def deploy(self, module, example):
        us = self.truth[parameters(module)] * self.factor
        rng = np.random.default_rng(self.deployed)
        self.deployed += 1

        def run() -> None:
            pass

        run.timer = FakeTimer(self.clock, lambda i: us * math.exp(rng.normal(0.0, self.noise)))
        run.conditions = {"backend": self.name}
        return run


@pytest.fixture(scope="module")
def profile(shipped_profile):
    return DeviceProfile.load(shipped_profile(), check_fingerprint=False)


def test_reanchoring_brings_predictions_to_a_machine_running_1_8x_slower(profile):
    clock = FakeClock()
    anchoring = profile.reanchor(5.0, backend=SlowerMachine(profile, clock, 1.8), clock=clock, save=False)
    try:
        assert anchoring.factor == pytest.approx(1.8, rel=0.02)
        assert len(anchoring.networks) == 9 and anchoring.reference is not None  # 3 anchors + 2 per family
        archs, then = profile.network_samples("valid")
        now = 1.8 * then  # the held-out networks, as this slower machine would measure them
        for kind in ("lut", "xgb", "flops"):
            raw = profile.predictor(kind, reanchored=False).predict_many(archs)[0]
            rescaled = profile.predictor(kind).predict_many(archs)[0]
            np.testing.assert_allclose(rescaled / raw, 1.8, rtol=0.03)  # within the fake's noise
            assert accuracy(raw, now)["within_10pct"] == 0.0
            day_built = accuracy(raw, then)["within_10pct"]
            assert accuracy(rescaled, now)["within_10pct"] >= day_built - 0.1
    finally:
        profile.apply_anchoring(None)
    assert profile.predictor("lut").predict(archs[0]).latency_us == pytest.approx(raw_lut(profile, archs[0]))


def raw_lut(profile, arch) -> float:
    return float(profile.predictor("lut", reanchored=False).predict(arch).latency_us)


def test_two_ratios_separate_compute_from_weight_traffic():
    rng = np.random.default_rng(0)
    contrib = np.column_stack([rng.uniform(500, 3000, 9), rng.uniform(20, 1500, 9)])  # compute, weights (us)
    ratios = (1.7 * contrib[:, 0] + 2.8 * contrib[:, 1]) / contrib.sum(axis=1)
    compute, weights = group_ratios(contrib, ratios)
    assert compute == pytest.approx(1.7, rel=0.05) and weights == pytest.approx(2.8, rel=0.1)
    np.testing.assert_allclose(group_ratios(contrib, np.full(9, 1.8)), 1.8, rtol=1e-3)  # uniform: one ratio


def anchoring_of(factor: float, measured_at: str = "2026-11-26T10:00:00+00:00") -> Reanchoring:
    return Reanchoring("p", measured_at, 9.5, (AnchorPoint("resnet56", "resnet56", 1000.0, 1000.0 * factor,
                                                            990.0 * factor, 1010.0 * factor),
                                                AnchorPoint("reference layer", None, 80.0, 80.0 * factor,
                                                            79.0 * factor, 81.0 * factor)))


def test_history_keeps_anchorings_in_order_and_ignores_a_corrupt_file(tmp_path):
    assert history(tmp_path) == []
    assert record(tmp_path, anchoring_of(1.5)) and record(tmp_path, anchoring_of(0.8, "2026-11-27T10:00:00+00:00"))
    got = history(tmp_path)
    assert [round(a.factor, 6) for a in got] == [1.5, 0.8] and got[1].measured_at.startswith("2026-11-27")
    assert got[0] == anchoring_of(1.5)  # round trip through JSON
    (tmp_path / ANCHORS_FILE).write_text("{not json")
    assert history(tmp_path) == []


def test_describe_says_slower_or_faster_and_flags_a_large_change():
    slow, fast, near = anchoring_of(1.87), anchoring_of(0.5), anchoring_of(1.1)
    assert "runs 1.87x slower than when p was profiled" in slow.describe() and slow.notable
    assert "2.00x faster" in fast.describe() and fast.notable
    assert not near.notable


# --- fingerprints ----------------------------------------------------------------------------------
def bumped(version: str, part: int) -> str:
    numbers = [int(x) for x in version.split("+")[0].split(".")[:3]]
    numbers[part] += 1
    return ".".join(map(str, numbers))


def predict_args(folder, *extra):
    return ("predict", "--profile", str(folder), "--model", "resnet56", "--keep", "0.5", "--predictor", "lut", *extra)


def test_an_engine_patch_release_warns_once_even_when_strict(capsys, shipped_profile):
    here = DeviceProfile.load(shipped_profile(), check_fingerprint=False).current_fingerprint()["onnxruntime"]
    folder = shipped_profile(onnxruntime=bumped(here, 2))
    for extra in ((), ("--strict",)):
        code, out, err = run(capsys, *predict_args(folder, *extra))
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert code == 0 and "lut" in out
        assert len(lines) == 1 and "warning" in lines[0] and "onnxruntime" in lines[0] and "patch release" in lines[0]


def test_another_engine_minor_release_or_device_is_refused_when_strict(capsys, shipped_profile):
    here = DeviceProfile.load(shipped_profile(), check_fingerprint=False).current_fingerprint()["onnxruntime"]
    minor = shipped_profile(onnxruntime=bumped(here, 1))
    code, _, err = run(capsys, *predict_args(minor))
    assert code == 0 and "onnxruntime" in err and "patch release" not in err
    code, _, err = run(capsys, *predict_args(minor, "--strict"))
    assert_one_line_error(code, err, "onnxruntime")
    code, _, err = run(capsys, *predict_args(shipped_profile(cpu="Some Other CPU"), "--strict"))
    assert_one_line_error(code, err, "cpu: profile 'Some Other CPU'")


def test_a_profile_of_this_machine_loads_silently(capsys, shipped_profile):
    code, _, err = run(capsys, *predict_args(shipped_profile()))
    assert code == 0 and err.strip() == ""


# --- the command line ------------------------------------------------------------------------------
def test_devices_in_a_pipe_keeps_names_whole_and_shows_the_last_anchor(capsys, shipped_profile):
    root = shipped_profile().parent
    record(shipped_profile(), anchoring_of(1.87))
    code, out, _ = run(capsys, "devices", "--root", str(root))
    row = next(ln for ln in out.splitlines() if "amd-epyc-1t-onnxruntime-fp32-bs1" in ln)
    assert code == 0 and "1.87x (2026-11-26)" in row
    code, out, _ = run(capsys, "devices", "--root", str(root), "--json", "--check")
    rows = json.loads(out)
    assert code == 0 and rows[0]["anchor_factor"] == pytest.approx(1.87) and rows[0]["here"] == "matches"
    assert rows == [{**r, "here": "matches"} for r in list_profiles(root)]


def test_predict_measure_reanchors_and_reports_the_error_after_it(capsys, shipped_profile, tmp_path):
    import shutil

    folder = tmp_path / "profile"
    shutil.copytree(shipped_profile(), folder)
    code, out, err = run(capsys, "predict", "--profile", str(folder), "--model", "resnet56", "--keep", "0.5",
                         "--predictor", "lut", "--measure", "--reanchor", "2")
    assert code == 0, err
    assert "was profiled" in err and "predictions rescaled" in err
    last = out.strip().splitlines()[-1]
    assert "interleaved with the anchors; lut error after re-anchoring" in last and "re-anchor factor" in last
    factor = history(folder)[-1].factor
    # the factor printed is the one recorded; a machine loaded by other work runs several times slower
    assert f"{factor:.2f}x" in last and 0.1 < factor < 20


def test_bad_reanchor_seconds_is_one_line(capsys, shipped_profile):
    code, _, err = run(capsys, *predict_args(shipped_profile(), "--reanchor", "0"))
    assert_one_line_error(code, err, "--reanchor: expected a number > 0, got '0'")
    code, _, err = run(capsys, "devices", "--reanchor", "1")
    assert_one_line_error(code, err, "--reanchor with devices needs --check")
