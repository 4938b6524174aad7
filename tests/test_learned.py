"""Learned layer predictors: features, portable storage, bad input, and calibrated intervals."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from latbench.arch import trace
from latbench.arch.spec import LayerSpec
from latbench.device_profile import DeviceProfile, ProfileError
from latbench.models import build_model
from latbench.predictors import LearnedPredictor, OutOfProfileError, RandomForestPredictor, XgbPredictor, accuracy
from latbench.predictors.batch import CandidateBatch
from latbench.predictors.layer_features import FEATURE_NAMES, spec_features, table_features
from latbench.predictors.layer_sum import LayerLookup, LayerSumPredictor
from latbench.predictors.learned import MIN_LAYER_SAMPLES, training_rows
from latbench.predictors.protocol import interval
from latbench.profile import read_meta, row_to_spec, spec_to_row, write_meta

SHIPPED = Path(__file__).resolve().parents[1] / "device_profiles" / "amd-epyc-1t-onnxruntime-fp32-bs1"


@pytest.fixture(scope="module")
def profile_copy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("learned") / SHIPPED.name
    shutil.copytree(SHIPPED, folder, ignore=shutil.ignore_patterns("predictors"))
    meta = read_meta(folder, require=())  # a profile that never stored a model: its manifest lists none
    meta["files"] = {k: v for k, v in meta["files"].items() if not k.startswith("predictors/")}
    write_meta(folder, meta)
    return folder


def _candidates(profile: DeviceProfile, family: str, n: int = 6):
    base = profile.family_archs[family]
    rng = np.random.default_rng(1)
    return [base.with_widths({g.id: int(rng.integers(max(1, g.channels // 4), g.channels + 1))
                              for g in base.prunable_groups}) for _ in range(n)]


def test_a_table_row_and_its_spec_have_the_same_features():
    specs = [LayerSpec("conv", 24, 40, (3, 3), (2, 2), (1, 1), in_hw=(16, 16), epilogue=("bn", "relu")),
             LayerSpec("dwconv", 36, 36, (3, 3), groups=36, padding=(1, 1), in_hw=(8, 8), epilogue=("bn",)),
             LayerSpec("linear", 64, 10, in_mult=4), LayerSpec("gap", 64, 64, in_hw=(4, 4))]
    table = pd.DataFrame([spec_to_row(s) for s in specs])
    assert [row_to_spec(r) for _, r in table.iterrows()] == specs  # a row reads back as its spec
    rows = table_features(table)
    for spec, row in zip(specs, rows, strict=True):
        np.testing.assert_array_equal(spec_features(spec, np.array([spec.in_channels]),
                                                    np.array([spec.out_channels]))[0], row)
    flops = rows[:, FEATURE_NAMES.index("log_flops")]
    assert np.expm1(flops[0]) == pytest.approx(specs[0].flops())
    assert np.expm1(flops[2]) == pytest.approx(specs[2].flops())


def test_stored_model_loads_in_a_fresh_process_and_predicts_the_same(profile_copy):
    profile = DeviceProfile.load(profile_copy, check_fingerprint=False)
    pred = profile.predictor("xgb")
    assert pred.source == "trained"
    meta_file = pred.save(profile_copy)
    meta = json.loads(meta_file.read_text())
    assert meta["library"] == "xgboost" and all((meta_file.parent / f).exists() for f in meta["files"])
    archs = _candidates(profile, "resnet56")
    here, _ = pred.predict_many(archs)
    widths = [list(a.width_tuple) for a in archs]
    code = (
        "import json, sys\n"
        "from latbench.device_profile import DeviceProfile\n"
        f"p = DeviceProfile.load({str(profile_copy)!r}, check_fingerprint=False)\n"
        "pred = p.predictor('xgb')\n"
        "base = p.family_archs['resnet56']\n"
        "archs = [base.with_widths(dict(enumerate(w))) for w in json.loads(sys.argv[1])]\n"
        "print(json.dumps({'source': pred.source, 'us': pred.predict_many(archs)[0].tolist()}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, json.dumps(widths)], capture_output=True, text=True, check=True)
    there = json.loads(out.stdout.strip().splitlines()[-1])
    assert there["source"] == "stored"
    np.testing.assert_allclose(there["us"], here, rtol=1e-6)


def test_a_model_stored_for_other_layer_samples_is_retrained(profile_copy):
    profile = DeviceProfile.load(profile_copy, check_fingerprint=False)
    profile.predictor("xgb").save(profile_copy)
    layers = profile.layers.copy()
    layers.loc[5, "median_us"] *= 1.5
    pred = XgbPredictor.from_profile(profile.meta, layers, profile_copy)
    assert pred.source == "trained"
    assert XgbPredictor.from_profile(profile.meta, profile.layers, profile_copy).source == "stored"


def test_a_corrupt_stored_model_is_one_clear_error(profile_copy, tmp_path):
    folder = tmp_path / "p"
    shutil.copytree(profile_copy, folder)
    profile = DeviceProfile.load(folder, check_fingerprint=False)
    profile.predictor("xgb").save(folder)
    (folder / "predictors" / "xgb-1.ubj").write_bytes(b"not a model")
    with pytest.raises(ProfileError, match="corrupt stored xgb model"):
        XgbPredictor.from_profile(profile.meta, profile.layers, folder)


def test_too_few_layer_samples_say_how_many_are_needed(profile_copy):
    profile = DeviceProfile.load(profile_copy, check_fingerprint=False)
    rows, target = training_rows(profile.layers.head(12), 0.0)
    with pytest.raises(ProfileError, match=f"at least {MIN_LAYER_SAMPLES} layer samples"):
        LearnedPredictor("rf", 0.0, 16).train(rows, target)


def test_an_op_without_layer_samples_is_named(profile_copy):
    profile = DeviceProfile.load(profile_copy, check_fingerprint=False)
    no_depthwise = profile.layers[profile.layers["op"] != "dwconv"].reset_index(drop=True)
    pred = RandomForestPredictor.from_profile(profile.meta, no_depthwise)
    with pytest.raises(OutOfProfileError, match="no layer samples of op dwconv"):
        pred.predict(profile.family_archs["mobilenetv2"])


def test_learned_layers_track_measured_layers(profile_copy):
    """Trained on every other layer sample, the model predicts the rest far better than FLOPs do."""
    profile = DeviceProfile.load(profile_copy, check_fingerprint=False)
    overhead = profile.meta["overhead_us"]
    rows, target = training_rows(profile.layers, overhead)
    test = np.arange(len(rows)) % 2 == 1
    pred = LearnedPredictor("xgb", overhead, 16)
    pred.train(rows[~test].reset_index(drop=True), target[~test])
    x = table_features(rows)
    got = np.exp(np.mean([m.predict(x[test]) for m in pred.members], axis=0)) + overhead
    measured = np.exp(target[test]) + overhead
    # baseline: per op, latency linear in FLOPs, fitted on the same training rows
    flops, ops = np.expm1(x[:, FEATURE_NAMES.index("log_flops")]), rows["op"].to_numpy()
    baseline = np.empty(test.sum())
    for op in set(ops[test]):
        fit, y = ~test & (ops == op), np.exp(target) + overhead
        a, b = np.polyfit(flops[fit], y[fit], 1) if np.ptp(flops[fit]) > 0 else (0.0, np.median(y[fit]))
        baseline[ops[test] == op] = a * flops[test & (ops == op)] + b
    learned_err = np.median(np.abs(got / measured - 1))
    flops_err = np.median(np.abs(baseline / measured - 1))
    assert learned_err < 0.12 and learned_err < 0.5 * flops_err, (learned_err, flops_err)


class _Synthetic(LayerSumPredictor):
    """Layer latency proportional to channels, no lookup: a known truth for the calibration."""

    name = "synthetic"

    def layer_latency(self, batch: CandidateBatch) -> LayerLookup:
        lat = (0.05 * batch.cin * batch.cout + 2.0) * batch.active
        zeros = np.zeros(lat.shape, dtype=bool)
        return LayerLookup(lat, np.zeros(lat.shape), zeros, zeros)


def test_stated_90_percent_intervals_cover_about_90_percent_under_known_noise():
    base = trace(build_model("smallconv"), torch.zeros(1, 3, 32, 32), "smallconv")
    rng = np.random.default_rng(0)

    def draw(n):
        archs = [base.with_widths({g.id: int(rng.integers(1, g.channels + 1)) for g in base.prunable_groups})
                 for _ in range(n)]
        truth = 40.0 + 1.3 * _Synthetic().layer_latency(CandidateBatch.of(archs)).latency.sum(axis=1)
        return archs, truth * np.exp(rng.normal(0.0, 0.05, n))

    pred = _Synthetic()
    pred.fit(*draw(120))
    archs, measured = draw(2000)
    mu, sigma = pred.predict_many(archs)
    low, high = interval(mu, sigma)
    coverage = np.mean((measured >= low) & (measured <= high))
    assert 0.85 <= coverage <= 0.95, coverage
    assert accuracy(mu, measured, sigma)["coverage_90"] == pytest.approx(coverage)


def test_accuracy_separates_a_wrong_level_from_a_wrong_spread():
    """Predictions 5% high, 5% high, 20% high and exact: by hand, the median signed error is (0.05 + 0.05) / 2 =
    0.05; the errors' mean is 0.075, their deviations -0.025, -0.025, 0.125, -0.075, so the standard deviation is
    sqrt(0.0225 / 4) = 0.075; three of four are within +-10%."""
    measured = np.array([100.0, 200.0, 50.0, 80.0])
    m = accuracy(measured * np.array([1.05, 1.05, 1.2, 1.0]), measured)
    assert m["median_error"] == pytest.approx(0.05)
    assert m["error_sd"] == pytest.approx(0.075)
    assert m["within_10pct"] == pytest.approx(0.75)


# --- calibration held toward a prior ----------------------------------------------------------------
def _calibration_case(seed: int = 0, n: int = 40):
    """Network features of 12 terms, a prior's coefficients, and a device 1.7x slower than the prior
    whose depthwise term (column 3) is a further 1.5x slower."""
    rng = np.random.default_rng(seed)
    features = rng.uniform(0.5, 2.0, (n, 12)) * rng.uniform(1, 100, 12)
    prior = rng.uniform(0.5, 2.0, 12) * (rng.uniform(size=12) > 0.3)
    truth = 1.7 * prior
    truth[3] *= 1.5
    return features, prior, truth


def test_a_calibration_held_toward_the_prior_needs_few_networks():
    from latbench.predictors.calibration import fit_relative, fit_toward

    features, prior, truth = _calibration_case()
    measured = features @ truth
    train, test = slice(0, 6), slice(6, None)  # 6 networks for 12 terms
    err = {}
    for name, coef in (("toward", fit_toward(features[train], measured[train], prior)),
                       ("free", fit_relative(features[train], measured[train], nonnegative=True)[0]),
                       ("prior", np.median(measured[train] / (features[train] @ prior)) * prior)):
        err[name] = np.sqrt(np.mean((features[test] @ coef / measured[test] - 1) ** 2))
    assert err["toward"] < 0.5 * err["free"] and err["toward"] < err["prior"], err


def test_a_device_that_only_differs_in_speed_keeps_the_priors_shape():
    from latbench.predictors.calibration import fit_toward, leave_one_out_spread

    features, prior, _ = _calibration_case(seed=1)
    measured = features[:5] @ (2.5 * prior)
    for strength in (1e-3, 0.03, 10.0):
        np.testing.assert_allclose(fit_toward(features[:5], measured, prior, strength), 2.5 * prior, rtol=1e-3,
                                   atol=1e-6)
    assert leave_one_out_spread(lambda f, m: fit_toward(f, m, prior), features[:5], measured) < 1e-3
    noisy = measured * np.random.default_rng(2).lognormal(0, 0.05, 5)
    assert 0.01 < leave_one_out_spread(lambda f, m: fit_toward(f, m, prior), features[:5], noisy) < 0.2
