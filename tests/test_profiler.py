"""Profiling runs, device profiles on disk, and the LUT / FLOPs predictors."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from latbench.arch import trace
from latbench.arch.spec import LayerSpec
from latbench.device_profile import DeviceProfile, ProfileError, ProfileMismatchWarning
from latbench.models import build_candidate, build_model
from latbench.predictors import PREDICTORS, OutOfProfileError
from latbench.predictors.batch import CandidateBatch
from latbench.predictors.lut import LutPredictor, _Grid
from latbench.profile.grid import ONE_D_OPS
from latbench.profiler import layer_group
from latbench.profiler.channel_step import FALLBACK_STEP, detect_step
from latbench.profiler.journal import Journal
from latbench.profiler.plan import axis_values, layer_grids, layer_samples
from latbench.profiler.run import ProfileSettings, profile_device

TINY = dict(families=["smallconv"], threads=1, budget_min=5, networks_per_family=8, min_networks_per_family=8,
            passes=2, step=16, refine=False, network_seconds=6)


@pytest.fixture(scope="module")
def tiny_profile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("profiles") / "tiny"
    profile_device(ProfileSettings(**TINY), out=folder, progress=False)
    return folder


# --- staircase and interpolation ---------------------------------------------------------------
@pytest.mark.parametrize("period", [8, 16])
def test_detects_the_period_of_a_staircase(period):
    rng = np.random.default_rng(period)
    lat = {c: 20.0 + 7.0 * ((c - 1) // period) + rng.normal(0, 0.2) for c in range(1, 65)}
    step, scores, found = detect_step(lat)
    assert found and step == period
    assert scores[2 * period] < scores[period] if 2 * period in scores else True


def test_one_noisy_bump_does_not_hide_the_staircase():
    lat = {c: 20.0 + 7.0 * ((c - 1) // 16) for c in range(1, 65)}
    for c in (40, 41, 42, 43):  # a burst of interference, as seen in a real sweep
        lat[c] += 11.0
    assert detect_step(lat)[0] == 16


def test_no_staircase_falls_back():
    rng = np.random.default_rng(0)
    step, _, found = detect_step({c: 20.0 + 0.3 * c + rng.normal(0, 0.2) for c in range(1, 65)})
    assert not found and step == FALLBACK_STEP


def test_axis_values_are_step_multiples_with_the_full_width_and_nested_passes():
    vals = axis_values(576, 16, fixed=False, passes=3)
    chans = [c for c, _ in vals]
    assert chans[-1] == 576 and all(c % 16 == 0 for c in chans) and chans == sorted(set(chans))
    assert {c for c, p in vals if p == 1} == {chans[0], 576}
    assert axis_values(3, 16, fixed=True) == [(3, 1)]
    assert axis_values(1000, 16, fixed=True) == [(1000, 1)]


def _staircase_lut() -> tuple[LutPredictor, callable]:
    """A synthetic 1-D staircase: latency = 10 us per started block of 8 channels."""
    def true_latency(c):
        return 10.0 * np.ceil(c / 8)

    values = np.array([8, 16, 32, 64])
    grid = _Grid(values, np.array([0]), true_latency(values)[:, None], one_d=True)
    spec = LayerSpec("dwconv", 64, 64, (3, 3), (1, 1), (1, 1), groups=64, in_hw=(8, 8))
    from latbench.profile import shape_key

    return LutPredictor({shape_key(spec): [grid]}, step=8, overhead_us=0.0), true_latency


def test_interpolation_is_exact_at_measured_points_and_flat_within_a_step():
    lut, true_latency = _staircase_lut()
    arch = trace(torch.nn.Sequential(torch.nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False)),
                 torch.zeros(1, 64, 8, 8))
    widths = [8, 16, 32, 64, 9, 15, 17, 33, 40]
    batch = CandidateBatch(arch.base, np.array(widths)[:, None], np.array(widths)[:, None],
                           np.ones((len(widths), 1), dtype=bool))
    lat, unc, _, _ = lut.layer_latency(batch)
    got = dict(zip(widths, lat[:, 0], strict=True))
    for c in (8, 16, 32, 64):
        assert got[c] == pytest.approx(true_latency(c)) and unc[widths.index(c), 0] == 0.0
    assert got[9] == got[15] == pytest.approx(20.0)  # rounded up to the block the engine computes
    assert got[17] == pytest.approx(30.0)  # 17 -> 24: halfway between the measured 16 (20 us) and 32 (40 us)
    assert got[33] == got[40] == pytest.approx(50.0)  # 33 -> 40: a quarter from 32 (40 us) to 64 (80 us)


def test_off_layout_channels_use_the_table_of_their_unit_without_rounding():
    lut, true_latency = _staircase_lut()
    grid = next(iter(lut.grids.values()))[0]
    grid.off_layout = ((4, _Grid(np.array([12, 28, 60]), np.array([0]), np.array([[60.0], [80.0], [120.0]]), True)),
                       (1, _Grid(np.array([15, 31, 63]), np.array([0]), np.array([[100.0], [200.0], [400.0]]), True)))
    arch = trace(torch.nn.Sequential(torch.nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False)),
                 torch.zeros(1, 64, 8, 8))
    widths = [16, 32, 15, 23, 47, 20]
    batch = CandidateBatch(arch.base, np.array(widths)[:, None], np.array(widths)[:, None],
                           np.ones((len(widths), 1), dtype=bool))
    found = lut.layer_latency(batch)
    got = dict(zip(widths, found.latency[:, 0], strict=True))
    assert got[16] == pytest.approx(true_latency(16)) and got[32] == pytest.approx(true_latency(32))
    assert got[15] == pytest.approx(100.0) and got[23] == pytest.approx(150.0) and got[47] == pytest.approx(300.0)
    assert got[20] == pytest.approx(70.0)  # a multiple of 4: the unit-4 table, halfway from 12 to 28
    assert found.off_layout[:, 0].tolist() == [False, False, True, True, True, True]


# --- journal -----------------------------------------------------------------------------------
def test_journal_drops_a_torn_line_and_never_duplicates(tmp_path):
    path = tmp_path / "j.csv"
    j = Journal(path, ["key", "value"])
    j.append({"key": "a", "value": 1})
    j.append({"key": "b", "value": 2})
    j.append({"key": "a", "value": 99})
    with open(path, "a") as f:
        f.write("c,3")  # a write cut off by kill -9
    j2 = Journal(path, ["key", "value"])
    assert [r["key"] for r in j2.rows] == ["a", "b"] and j2.rows[0]["value"] == "1"
    j2.append({"key": "c", "value": 3})
    assert path.read_text() == "key,value\na,1\nb,2\nc,3\n"


def test_resuming_a_journal_with_other_columns_is_one_profile_error(tmp_path):
    path = tmp_path / "layers.csv"
    path.write_text("key,something_else\na,1\n")
    with pytest.raises(ProfileError, match=r"cannot resume: .*layers.csv has columns \['key', 'something_else'\]"):
        Journal(path, ["key", "value"])


def test_bad_values_for_the_python_api_are_one_line_errors_and_still_value_errors():
    from latbench.errors import LatbenchError
    from latbench.measure import MeasureSettings

    for bad in ({"budget_s": 0}, {"target_rel_ci": 2.0}):
        with pytest.raises(LatbenchError) as caught:
            MeasureSettings(**bad)
        assert isinstance(caught.value, ValueError) and "\n" not in str(caught.value)


# --- profiling runs ------------------------------------------------------------------------------
def _rows(folder: Path) -> tuple[list[str], list[str]]:
    def keys(name: str) -> list[str]:
        path = folder / name
        return pd.read_csv(path, dtype={"key": str})["key"].tolist() if path.exists() else []

    return keys("layers.csv"), keys("models.csv")


def test_killed_and_resumed_run_has_the_same_rows(tiny_profile, tmp_path):
    folder = tmp_path / "killed"
    code = ("from latbench.profiler.run import ProfileSettings, profile_device;"
            f"profile_device(ProfileSettings(**{TINY!r}), out={str(folder)!r}, progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parent.parent)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill -9 once a few layer rows are on disk
        layers = folder / "layers.csv"
        if layers.exists() and layers.read_text().count("\n") >= 4:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial_layers, _ = _rows(folder)
    assert len(partial_layers) >= 3
    killed_s = json.loads((folder / "profile.json").read_text())["timings_s"]["total"]
    assert killed_s > 0  # the killed run recorded the time it had spent before its first layer sample
    started = time.perf_counter()
    profile_device(ProfileSettings(**TINY), out=folder, progress=False)
    resumed_s = time.perf_counter() - started
    layers, models = _rows(folder)
    ref_layers, ref_models = _rows(tiny_profile)
    assert sorted(layers) == sorted(ref_layers) and len(set(layers)) == len(layers)
    assert sorted(models) == sorted(ref_models) and len(set(models)) == len(models)
    assert layers[: len(partial_layers)] == partial_layers  # nothing measured before the kill was redone
    meta = json.loads((folder / "profile.json").read_text())
    assert meta["status"] == "complete"
    assert meta["timings_s"]["total"] >= killed_s + 0.5 * resumed_s  # both runs' time counts (less the validation)


def test_network_seconds_bounds_each_interleaved_run_of_networks(tiny_profile):
    from latbench.profiler.run import NETWORK_SETTINGS, network_budget_s

    rows = pd.read_csv(tiny_profile / "models.csv")
    assert len(rows) == 8 and (rows["wall_s"] <= 1.25 * TINY["network_seconds"]).all()  # default: 40 s or more
    assert network_budget_s(9) == NETWORK_SETTINGS.budget_s == 40.0 and network_budget_s(40) == 60.0


def test_resuming_with_other_settings_is_refused(tiny_profile):
    with pytest.raises(ProfileError, match="other settings"):
        profile_device(ProfileSettings(**{**TINY, "passes": 3}), out=tiny_profile, progress=False)


def test_refinement_inserts_grid_values_measures_them_and_resumes(tiny_profile, tmp_path):
    folder = _copy(tiny_profile, tmp_path / "refined")
    before = json.loads((folder / "profile.json").read_text())
    rows_before = len(pd.read_csv(folder / "layers.csv"))
    settings = ProfileSettings(**{**TINY, "refine": True, "refine_target": 1.0, "budget_min": 30})
    profile_device(settings, out=folder, progress=False)
    meta = json.loads((folder / "profile.json").read_text())
    rounds, inserted = meta["refine"]["rounds"], meta["refine"]["inserted"]
    assert len(rounds) == 1 and inserted and all(r["round"] == 1 for r in inserted)
    layers = pd.read_csv(folder / "layers.csv")
    new = layers[layers["pass"] == 1001]
    assert set(layers["pass"]) - {0, 1, 2} == {1001}  # measured in one round
    # the round's held-out error, recomputed from layers.csv: each new point against the straight line between
    # its neighbours on the grid as planned
    errors = [e for rec in inserted for e in _held_out_errors(before["plan"]["grids"][rec["grid"]], rec, layers)]
    assert rounds[0]["measured"] == len(errors) > 0
    assert rounds[0]["held_out"]["median_ape"] == pytest.approx(np.median(errors), abs=1e-4)
    assert len(layers) > rows_before and len(new) >= rounds[0]["measured"] > 0
    for rec in inserted:  # every inserted value is on its grid now, and its points were measured
        grid = meta["plan"]["grids"][rec["grid"]]
        assert [rec["value"], 1001] in grid[f"{rec['axis']}_values"]
        assert rec["value"] in set(new["in_channels" if rec["axis"] == "in" else "out_channels"])
    assert len(meta["plan"]["grids"]) == len(before["plan"]["grids"])
    profile_device(settings, out=folder, progress=False)  # resumed: nothing more to do
    assert len(pd.read_csv(folder / "layers.csv")) == len(layers)
    assert json.loads((folder / "profile.json").read_text())["refine"]["inserted"] == inserted


def _held_out_errors(grid: dict, rec: dict, layers: pd.DataFrame) -> list[float]:
    """|interpolated / measured - 1| at the points of the grid value ``rec`` inserted, the interpolation being
    linear between the neighbouring values of that axis, at every value of the other axis where both were
    measured (all from ``grid`` as it was before that round, and the medians in ``layers``)."""
    before = lambda values: sorted(c for c, p in values if p < 1000 + rec["round"])  # noqa: E731
    axis = before(grid[f"{rec['axis']}_values"])
    v = rec["value"]
    a, b = max(c for c in axis if c < v), min(c for c in axis if c > v)
    rows = layers[layers["shape_key"] == grid["key"]]
    lat = {(int(r.in_channels), int(r.out_channels)): float(r.median_us) for r in rows.itertuples()}
    one_d = grid["template"]["op"] in ONE_D_OPS  # in = out channels: one axis
    others = [None] if one_d else before(grid["out_values" if rec["axis"] == "in" else "in_values"])
    out = []
    for o in others:
        def key(c, o=o):
            return (c, c) if one_d else (c, o) if rec["axis"] == "in" else (o, c)

        if key(a) in lat and key(b) in lat:  # a point with both neighbours measured (the grid is not a full product)
            lo, hi = lat[key(a)], lat[key(b)]
            out.append(abs((lo + (v - a) / (b - a) * (hi - lo)) / lat[key(v)] - 1))
    return out


def test_refinement_stops_at_its_target_and_not_before(tiny_profile, tmp_path, monkeypatch):
    """One grid value per round (a batch of one sample): a target the first round meets stops refining after it;
    one no round can meet goes on until no interval is left to split (three here: the step-16 grids' values
    16, 32, 64 each get 48 once)."""
    import functools

    from latbench.profiler import run
    from latbench.profiler.refine import RefineSettings

    monkeypatch.setattr(run, "RefineSettings", functools.partial(RefineSettings, batch=1))
    passes = {}
    for name, target in (("met", 10.0), ("never", -1.0)):
        folder = _copy(tiny_profile, tmp_path / name)
        settings = ProfileSettings(**{**TINY, "refine": True, "refine_target": target, "budget_min": 30})
        profile_device(settings, out=folder, progress=False)
        meta, layers = json.loads((folder / "profile.json").read_text()), pd.read_csv(folder / "layers.csv")
        passes[name] = sorted(set(layers["pass"]) - {0, 1, 2})
        inserted, rounds = meta["refine"]["inserted"], meta["refine"]["rounds"]
        assert [1000 + r["round"] for r in inserted] == passes[name] and len(rounds) == len(passes[name])
        for rec, record in zip(inserted, rounds, strict=True):  # each round's error, recomputed from the table
            errors = _held_out_errors(meta["plan"]["grids"][rec["grid"]], rec, layers)
            assert record["measured"] == len(errors) > 0
            assert record["held_out"]["median_ape"] == pytest.approx(np.median(errors), abs=1e-4)
    assert passes == {"met": [1001], "never": [1001, 1002, 1003]}


def test_profile_records_plan_timings_and_validation(tiny_profile):
    meta = json.loads((tiny_profile / "profile.json").read_text())
    assert meta["plan"]["step"] == 16 and meta["overhead_us"] > 0
    assert meta["timings_s"]["total"] > 0 and meta["fingerprint"]["backend"] == "onnxruntime"
    assert set(meta["validation"]) == set(PREDICTORS) and meta["validation"]["lut"]["n"] >= 1
    trained = "skipped" not in meta["validation"]["xgb"]
    assert trained and (tiny_profile / "predictors" / "xgb.json").exists()  # stored in its own format
    assert meta["layers_complete_through_pass"] == 2


# --- predictors ----------------------------------------------------------------------------------
def test_predictions_are_positive_ordered_and_batched_consistently(tiny_profile):
    profile = DeviceProfile.load(tiny_profile)
    base = trace(build_model("smallconv"), torch.zeros(1, 3, 32, 32), "smallconv")
    small = base.with_widths({g.id: max(1, g.channels // 4) for g in base.prunable_groups})
    for kind in PREDICTORS:
        pred = profile.predictor(kind)
        one = pred.predict(base)
        assert one.low_us < one.latency_us < one.high_us
        assert pred.predict(small).latency_us < one.latency_us
        many, sig = pred.predict_many([small, base, small])
        assert many[1] == pytest.approx(one.latency_us) and many[0] == pytest.approx(many[2])
        assert (sig > 0).all()


@pytest.mark.timing
def test_lut_predicts_a_pruned_networks_latency_ratio_measured_in_the_same_run(tiny_profile):
    """The LUT's predicted ratio of a pruned network to the full one against the ratio measured now, both
    networks interleaved with the profile's anchors in one run: a ratio does not move with the machine's
    speed, an absolute latency does (by more than the target, on this VM)."""
    profile = DeviceProfile.load(tiny_profile)
    base = trace(build_model("smallconv"), torch.zeros(1, 3, 32, 32), "smallconv")
    cand = base.with_widths({g.id: max(1, int(g.channels * 0.4)) for g in base.prunable_groups})
    x = torch.randn(1, 3, 32, 32)
    backend = profile.backend()
    extra = {"full": backend.deploy(build_candidate("smallconv", base), x),
             "candidate": backend.deploy(build_candidate("smallconv", cand), x)}
    runs = [profile.reanchor(2.0, extra=extra, save=False).extra_us for _ in range(3)]
    measured = float(np.median([r["candidate"] / r["full"] for r in runs]))  # one run alone swung 0.38-0.60
    lut = profile.predictor("lut")
    predicted = lut.predict(cand).latency_us / lut.predict(base).latency_us
    # the cut runs off the engine's blocked layout (widths 6, 12, 25): measured 0.38-0.60 of the full network on an
    # AMD EPYC host, 0.64-0.76 on an Intel Xeon one
    assert measured < 0.8, measured  # measurably faster
    assert predicted < 0.9, predicted  # and the LUT sees the cut: a predictor blind to widths answers 1
    assert abs(predicted / measured - 1) < 0.35, (predicted, measured)


def test_rescaled_predictor_follows_a_reference_measured_now(tiny_profile):
    from latbench.predictors import Rescaled

    profile = DeviceProfile.load(tiny_profile)
    lut = profile.predictor("lut")
    base = trace(build_model("smallconv"), torch.zeros(1, 3, 32, 32), "smallconv")
    small = base.with_widths({g.id: max(1, g.channels // 2) for g in base.prunable_groups})
    full_now = 1.3 * lut.predict(base).latency_us  # the machine is 30% slower than when profiled
    rescaled = Rescaled(lut, [(base, full_now)])
    assert rescaled.predict(base).latency_us == pytest.approx(full_now)
    assert rescaled.predict(small).latency_us == pytest.approx(1.3 * lut.predict(small).latency_us)
    other = trace(build_model("smallconv", width=8), torch.zeros(1, 3, 32, 32), "smallconv-8")
    assert rescaled._factor([other])[0] == 1.0  # no reference for that base: unchanged


def test_unprofiled_layers_are_named(tiny_profile):
    profile = DeviceProfile.load(tiny_profile)
    arch = trace(build_model("resnet20"), torch.zeros(1, 3, 32, 32), "resnet20")
    with pytest.raises(OutOfProfileError, match=r"resnet20: \d+ layer\(s\) have shapes this profile never measured"):
        profile.predictor("lut").predict(arch)


# --- bad profiles ----------------------------------------------------------------------------------
def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_corrupt_profiles_are_one_line_errors(tiny_profile, tmp_path):
    with pytest.raises(ProfileError, match=r"no profile\.json"):
        DeviceProfile.load(tmp_path)
    p = _copy(tiny_profile, tmp_path / "schema")
    meta = json.loads((p / "profile.json").read_text())
    (p / "profile.json").write_text(json.dumps({**meta, "schema": "latbench.profile/0"}))
    with pytest.raises(ProfileError, match="schema"):
        DeviceProfile.load(p)
    p = _copy(tiny_profile, tmp_path / "json")
    (p / "profile.json").write_text("{not json")
    with pytest.raises(ProfileError, match=r"corrupt JSON"):
        DeviceProfile.load(p)
    p = _copy(tiny_profile, tmp_path / "column")
    df = pd.read_csv(p / "layers.csv", dtype=str, keep_default_na=False)
    df.drop(columns=["median_us"]).to_csv(p / "layers.csv", index=False)
    with pytest.raises(ProfileError, match=r"missing column.*median_us"):
        DeviceProfile.load(p)
    p = _copy(tiny_profile, tmp_path / "nan")
    df = pd.read_csv(p / "layers.csv", dtype=str, keep_default_na=False)
    df.loc[2, "median_us"] = "nan"
    df.to_csv(p / "layers.csv", index=False)
    with pytest.raises(ProfileError, match=r"median_us .* at data row 3"):
        DeviceProfile.load(p)
    p = _copy(tiny_profile, tmp_path / "missing")
    (p / "models.csv").unlink()
    with pytest.raises(ProfileError, match=r"missing models\.csv"):
        DeviceProfile.load(p)


def test_fingerprint_mismatch_warns_and_strict_refuses(tiny_profile, tmp_path):
    p = _copy(tiny_profile, tmp_path / "other")
    meta = json.loads((p / "profile.json").read_text())
    meta["fingerprint"]["cpu"] = "Some Other CPU"
    (p / "profile.json").write_text(json.dumps(meta))
    with pytest.warns(ProfileMismatchWarning, match="cpu: profile 'Some Other CPU'"):
        DeviceProfile.load(p)
    with pytest.raises(ProfileError, match="differs from this machine"):
        DeviceProfile.load(p, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DeviceProfile.load(tiny_profile)  # this machine: no warning


# --- plan ------------------------------------------------------------------------------------------
def test_narrow_layers_get_off_layout_points_below_one_step():
    arch = trace(build_model("resnet20"), torch.zeros(1, 3, 32, 32), "resnet20")
    stage1 = next(g for g in layer_grids([arch], step=16) if g.template.in_channels == 16
                  and g.template.op == "conv" and g.template.in_hw == (32, 32) and g.template.out_channels == 16)
    units = dict(stage1.off_layout)
    assert [c for c, _ in units[4]] == [4, 8] and [c for c, _ in units[1]] == [7, 15]
    assert stage1.in_values == ((16, 1),)


def test_every_third_variant_sits_on_step_multiples():
    from latbench.profiler.plan import network_variants

    base = trace(build_model("resnet20"), torch.zeros(1, 3, 32, 32), "resnet20")
    variants = network_variants("resnet20", base, 12, align=16)
    prunable = [g.id for g in base.prunable_groups]
    for i, v in enumerate(variants[1:], start=1):
        on_steps = all(v.widths[g] % 16 == 0 for g in prunable)
        assert on_steps if i % 3 == 2 else True
    assert sum(all(v.widths[g] % 16 == 0 for g in prunable) for v in variants[1:]) >= 3


def test_plan_covers_every_layer_of_the_families():
    archs = [trace(build_model(n), torch.zeros(1, 3, 32, 32), n) for n in ("resnet20", "vgg16")]
    grids = layer_grids(archs, step=16)
    samples = layer_samples(grids)
    from latbench.profile import shape_key, spec_key

    keys = {spec_key(s) for s, _ in samples}
    assert len(keys) == len(samples)
    shapes = {g.key for g in grids}
    assert all(shape_key(layer.spec) in shapes for a in archs for layer in a.base.layers)
    full = {spec_key(layer.spec) for a in archs for layer in a.base.layers}
    assert full <= keys  # every layer at full width is measured exactly


def test_few_calibration_networks_fit_few_terms(tiny_profile):
    lut = DeviceProfile.load(tiny_profile).predictor("lut")
    cal = lut.calibration
    assert cal["n"] < 4 * 6 and cal["terms"] == 2  # intercept and one scale shared by every kind
    kinds = {cal["coefficients"][k] for k in ("conv", "pointwise", "depthwise", "eltwise", "other")}
    assert len(kinds) == 1 and kinds.pop() > 0
    assert cal["coefficients"]["conversion_us"] == cal["coefficients"]["us_per_kweight"] == 0.0


# --- adaptation from another profile ---------------------------------------------------------------
def _three_times_slower(folder: Path, out: Path) -> Path:
    """A copy of the profile ``folder`` whose every measured latency is tripled (another, slower device)."""
    from latbench.profile.integrity import MANIFEST, manifest

    out = _copy(folder, out)
    for name, extra in (("layers.csv", []), ("models.csv", ["anchor_us"])):
        rows = pd.read_csv(out / name, dtype={"key": str})
        rows[["median_us", "ci_low_us", "ci_high_us", "p90_us", *extra]] *= 3.0
        rows.to_csv(out / name, index=False)
    meta = json.loads((out / "profile.json").read_text())
    meta[MANIFEST] = manifest(out)
    (out / "profile.json").write_text(json.dumps(meta))
    return out


def test_adapting_a_prior_from_a_three_times_slower_device_lands_on_this_machine(tiny_profile, tmp_path):
    """A prior from a device three times slower (far more than this machine's speed moves between the prior's
    measurements and these), adapted here: the networks measured here set the level, the
    prior keeps the structure (its layers and stored models, its calibration as the prior of the new one)."""
    from latbench.profiler.adapt import adapt_profile

    prior_folder = _three_times_slower(tiny_profile, tmp_path / "slow")
    folder = adapt_profile(prior_folder, ProfileSettings(families=[], threads=1, network_seconds=6), samples=6,
                           out=tmp_path / "adapted", progress=False)
    profile, prior = DeviceProfile.load(folder), DeviceProfile.load(prior_folder)
    a = profile.meta["adapted_from"]
    assert profile.meta["status"] == "complete" and a["profile"] == prior.name
    assert a["networks"] == 6 and len(profile.models) == 6 and (profile.models["split"] == "calib").all()
    assert (folder / "layers.csv").read_bytes() == (prior_folder / "layers.csv").read_bytes()
    stored = sorted(p.relative_to(prior_folder) for p in (prior_folder / "predictors").rglob("*") if p.is_file())
    assert stored and all((folder / p).read_bytes() == (prior_folder / p).read_bytes() for p in stored)
    for kind in ("lut", "xgb"):
        cal = profile.meta["calibration"][kind]
        assert cal["prior"] == prior.predictor(kind).calibration["coefficients"] == a["calibration_prior"][kind]
        assert cal["n"] == 6 and 0 < cal["rel_sigma"] < 1

    archs, measured = profile.network_samples("calib")  # measured here, in one interleaved run
    before = prior.predictor("lut").predict_many(archs)[0] / measured
    assert np.median(before) > 1.5  # the prior's level is the slower device's
    for kind in ("lut", "xgb"):
        predicted = profile.predictor(kind).predict_many(archs)[0]
        assert 0.85 < np.median(predicted / measured) < 1.18, (kind, predicted / measured)
    # the LUT keeps the prior's structure, not a constant at the right level: its scale to the prior's
    # predictions spreads less than those predictions do (a constant would spread exactly as much; six
    # networks measured on a loaded VM move the fitted structure by up to a quarter)
    everything = archs + prior.network_samples("valid")[0]
    lut, lut_prior = (p.predictor("lut").predict_many(everything)[0] for p in (profile, prior))
    span = lut_prior.max() / lut_prior.min()  # 1.29-1.35 over the tiny profiles built here
    assert span > 1.15
    scale = lut / lut_prior
    assert scale.max() / scale.min() < span, (scale, span)


def test_incompatible_priors_are_refused_with_a_reason(tiny_profile, tmp_path):
    from latbench.profiler.adapt import adapt_profile

    def prior_with(**settings):
        folder = _copy(tiny_profile, tmp_path / f"prior{len(list(tmp_path.iterdir()))}")
        meta = json.loads((folder / "profile.json").read_text())
        meta["settings"].update(settings)
        (folder / "profile.json").write_text(json.dumps(meta))
        return folder

    cases = [(prior_with(backend="tensorrt", device="cuda"), r"made on cuda \(tensorrt\).*device types"),
             (prior_with(precision="fp16"), r"precision 'fp16', this profile 'fp32'"),
             (prior_with(batch=8), r"batch 8, this profile 1")]
    for prior, message in cases:
        with pytest.raises(ProfileError, match=message):
            adapt_profile(prior, ProfileSettings(families=[], threads=1), samples=8, out=tmp_path / "x",
                          progress=False)
    with pytest.raises(ProfileError, match="no samples of resnet20"):
        adapt_profile(tiny_profile, ProfileSettings(families=["resnet20"], threads=1), samples=8,
                      out=tmp_path / "x", progress=False)
    with pytest.raises(ProfileError, match=r"--samples 1 is too few.*at least 2 networks"):
        adapt_profile(tiny_profile, ProfileSettings(families=[], threads=1), samples=1, out=tmp_path / "x",
                      progress=False)
    assert not (tmp_path / "x").exists()  # refused before measuring or writing anything


def test_the_first_pass_floor_counts_only_first_pass_samples_not_yet_measured():
    from latbench.measure import MeasureSettings
    from latbench.profile import spec_key
    from latbench.profiler.run import first_pass_floor_s

    specs = [LayerSpec("conv", c, c, kernel=(3, 3), in_hw=(8, 8)) for c in (8, 16, 24, 32)]
    samples = [(specs[0], 1), (specs[1], 1), (specs[2], 1), (specs[3], 2)]  # three of the first pass, one later
    settings = MeasureSettings(warmup_min_s=0.05, min_time_s=0.15)
    assert first_pass_floor_s(samples, set(), settings) == pytest.approx(3 * 0.2)
    assert first_pass_floor_s(samples, {spec_key(specs[1])}, settings) == pytest.approx(2 * 0.2)  # one measured
    assert first_pass_floor_s(samples, {spec_key(s) for s in specs[:3]}, settings) == 0.0


def test_a_profiles_layer_rows_come_in_groups_between_two_equal_reference_rows(tiny_profile):
    layers = pd.read_csv(tiny_profile / "layers.csv")
    is_ref = (layers["shape_key"] == "reference").to_numpy()
    runs, i = [], 0
    while i < len(layers):
        assert is_ref[i], f"row {i} starts a group without the reference layer"
        j = i + 1
        while not is_ref[j]:
            j += 1
        group = layers.iloc[i + 1:j]
        assert 1 <= len(group) <= layer_group.GROUP_SIZE and group["pass"].nunique() == 1
        assert layers["median_us"].iloc[i] == layers["median_us"].iloc[j]  # the one measurement it was paired with
        runs.append(len(group))
        i = j + 1
    assert sum(runs) == int((~is_ref).sum())
