"""Bad input, as a hostile new user gives it: one line on stderr, exit code 2, before any work is done."""

from __future__ import annotations

import json

import pytest
from test_cli import assert_one_line_error, run

PROFILE = "amd-epyc-1t-onnxruntime-fp32-bs1"


@pytest.mark.parametrize(("argv", "words"), [
    (["measure", "--model", "resnet20", "--batch", "1000000000"], "--batch: expected an integer in [1, 4096]"),
    (["measure", "--model", "resnet20", "--budget", "nan"], "--budget: expected a number > 0, got 'nan'"),
    (["measure", "--model", "resnet20", "--layers", "-1"], "--layers: expected an integer >= 0"),
    (["measure", "--model", "resnet20", "--target-ci", "0"], "--target-ci: expected a number in (0, 1]"),
    (["inspect", "resnet20", "--batch", "-2"], "--batch: expected an integer in [1, 4096]"),
    (["inspect", "resnet20", "--batch", "0"], "--batch: expected an integer in [1, 4096]"),
    (["profile", "--models", "smallconv", "--step", "0"], "--step: expected an integer >= 1"),
    (["profile", "--models", "smallconv", "--networks", "-1"], "--networks: expected an integer >= 1"),
    (["profile", "--models", "smallconv", "--budget-min", "nan"], "--budget-min: expected a number > 0"),
    (["profile", "--models", "smallconv", "--batch", "0"], "--batch: expected an integer in [1, 4096]"),
    (["analyze", "--model", "resnet20", "--profile", PROFILE, "--staircase-layers", "-1"],
     "--staircase-layers: expected an integer >= 1"),
    (["predict", "--model", "resnet20", "--profile", PROFILE, "--keep", "1.5"], "--keep: expected a number in (0, 1]"),
    (["train", "smallconv", "--batch-size", "0"], "--batch-size: expected an integer in [1, 4096]"),
    (["train", "smallconv", "--epochs", "-1"], "--epochs: expected an integer >= 1"),
    (["train", "smallconv", "--lr", "nan"], "--lr: expected a number > 0, got 'nan'"),
    (["prune", "uniform", "--model", "smallconv", "--weights", "w", "--profile", PROFILE, "--latency-target", "0.5",
      "--measure-budget", "-1"], "--measure-budget: expected a number > 0"),
    (["prune", "uniform", "--model", "smallconv", "--weights", "w", "--profile", PROFILE, "--latency-target", "0.5",
      "--finetune-epochs", "-1"], "--finetune-epochs: expected an integer >= 0"),
    (["prune", "uniform", "--model", "smallconv", "--weights", "w", "--profile", PROFILE, "--latency-target", "0.5",
      "--distill", "nan"], "--distill: expected a number in [0, 1]"),
    (["prune", "splamp", "--model", "smallconv", "--weights", "w", "--profile", PROFILE, "--latency-target", "0.5",
      "--group-size", "0"], "--group-size: expected an integer >= 1"),
    (["prune", "lap", "--model", "smallconv", "--weights", "w", "--profile", PROFILE, "--latency-target", "0.5",
      "--min-keep", "0"], "--min-keep: expected a number in (0, 1]"),
    (["prune", "uniform", "--model", "smallconv", "--weights", "w", "--profile", PROFILE, "--latency-target", "inf"],
     "--latency-target: expected a number in (0, 1]"),
])
def test_bad_values_are_refused_in_one_line_before_any_work(capsys, argv, words):
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err, words)


@pytest.mark.parametrize("argv", [
    ["measure", "--model", "smallconv", "--json", "/proc/latbench/x.json"],
    ["inspect", "resnet20", "--csv", "/proc/latbench/x.csv"],
    ["inspect", "resnet20", "--json", "/proc/latbench/x.json"],
    ["profile", "--models", "smallconv", "--out", "/proc/latbench"],
    ["profile", "--models", "smallconv", "--out", "{file}"],
    ["train", "smallconv", "--out", "{file}"],
    ["prune", "uniform", "--model", "smallconv", "--weights", "w", "--profile", PROFILE, "--latency-target", "0.5",
     "--out", "/proc/latbench"],
    ["analyze", "--model", "resnet20", "--profile", PROFILE, "--out", "{file}"],
])
def test_unwritable_outputs_are_refused_before_any_work(capsys, tmp_path, argv):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    code, _, err = run(capsys, *[a.replace("{file}", str(blocker)) for a in argv])
    assert_one_line_error(code, err, "cannot write")
    assert blocker.read_text() == "in the way"


def test_a_method_option_out_of_range_is_refused_by_the_python_api_too():
    from pruners.errors import PruningError
    from pruners.methods import METHODS

    with pytest.raises(PruningError, match="splamp option --group-size: expected an integer >= 1, got '0'"):
        METHODS["splamp"].options({"group_size": 0})
    with pytest.raises(PruningError, match="lap option --regrow-fraction: expected a number in \\[0, 1\\]"):
        METHODS["lap"].options({"regrow_fraction": float("nan")})
    assert METHODS["lap"].options({"min_keep": 1.0}).min_keep == 1.0


def test_widths_far_beyond_the_profile_get_no_prediction_rather_than_a_negative_one(capsys, tmp_path,
                                                                                      shipped_profile):
    widths = tmp_path / "w.json"
    widths.write_text(json.dumps({"layer1.0.conv1": 10**9}))
    code, out, err = run(capsys, "predict", "--model", "resnet20", "--profile", str(shipped_profile()),
                         "--widths", str(widths))
    assert code == 0, err
    lines = [ln for ln in out.splitlines() if ln.strip().split(" ")[0] in ("lut", "xgb", "rf")]
    assert len(lines) == 3 and all("no prediction" in ln for ln in lines)
    assert "-" not in "".join(ln.split("(")[0] for ln in out.splitlines() if ln.strip().startswith("flops"))
    code, _, err = run(capsys, "predict", "--model", "resnet20", "--profile", str(shipped_profile()),
                       "--widths", str(widths), "--predictor", "xgb")
    assert_one_line_error(code, err, "gives no usable latency")
