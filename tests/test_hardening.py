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
    ["analyze", "--model", "resnet20", "--profile", "{profile}", "--out", "{file}"],
])
def test_unwritable_outputs_are_refused_before_any_work(capsys, tmp_path, argv, shipped_profile):
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way")
    # a copy with this machine's fingerprint: a profile from another machine adds a warning line
    code, _, err = run(capsys, *[a.replace("{file}", str(blocker)).replace("{profile}", str(shipped_profile()))
                                 for a in argv])
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


# --- corrupt profiles ---------------------------------------------------------------------------------------------
def _tamper(folder, change):
    """Apply ``change`` to a copy of a shipped profile; ``manifest=False`` also drops its digests, as a profile
    written before they were recorded (only the value checks can see the damage then)."""
    import csv

    from latbench.profile import read_meta, write_meta

    kind, manifest = change
    meta = read_meta(folder, require=())
    if not manifest:
        meta.pop("files")
    layers = folder / "layers.csv"
    rows = list(csv.DictReader(layers.open()))
    if kind == "layers x1000":
        for r in rows:
            r["median_us"] = str(float(r["median_us"]) * 1000)
    elif kind == "one median 1e300":
        rows[5]["median_us"] = "1e300"
    elif kind == "duplicated rows":
        rows += rows[:49]
    elif kind == "garbage kernel":
        rows[7]["kernel"] = "zz"
    elif kind == "garbage widths":
        models = list(csv.DictReader((folder / "models.csv").open()))
        models[3]["widths"] = "abc def"
        _write_rows(folder / "models.csv", models)
    elif kind == "plan.step -16":
        meta["plan"]["step"] = -16
    elif kind == "unknown family":
        models = list(csv.DictReader((folder / "models.csv").open()))
        models[0]["family"] = "nosuchnet"
        _write_rows(folder / "models.csv", models)
    elif kind == "xgb model deleted":
        (folder / "predictors" / "xgb-0.ubj").unlink()
    if kind in ("layers x1000", "one median 1e300", "duplicated rows", "garbage kernel"):
        _write_rows(layers, rows)
    write_meta(folder, meta)


def _write_rows(path, rows):
    import csv

    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@pytest.mark.parametrize(("change", "words"), [
    (("layers x1000", True), "layers.csv changed since the profile was completed"),
    (("duplicated rows", True), "layers.csv changed since the profile was completed"),
    (("xgb model deleted", True), "predictors/xgb-0.ubj is missing"),
    (("plan.step -16", True), "plan.step must be a positive integer, not -16"),
    (("one median 1e300", False), "median_us that is not a positive latency"),
    (("duplicated rows", False), "holds the key"),
    (("unknown family", False), "names families nosuchnet"),
    (("garbage kernel", False), "layers.csv row 9 does not parse"),
    (("garbage widths", False), "models.csv row 5 has widths 'abc def'"),
])
def test_a_corrupt_profile_is_refused_by_name_never_answered_from(capsys, tmp_path, shipped_profile, change, words):
    import shutil

    from latbench.device_profile import DeviceProfile, list_profiles
    from latbench.errors import ProfileError

    folder = tmp_path / "profiles" / "damaged"
    shutil.copytree(shipped_profile(), folder)
    DeviceProfile.load(folder, check_fingerprint=False)  # the copy is sound
    _tamper(folder, change)
    with pytest.raises(ProfileError, match=words.replace("(", r"\(")):
        DeviceProfile.load(folder, check_fingerprint=False)
    code, _, err = run(capsys, "predict", "--model", "resnet56", "--profile", str(folder))
    assert_one_line_error(code, err, words)
    (row,) = list_profiles(tmp_path / "profiles")
    if change[1] and change[0] != "plan.step -16":
        assert row["status"].startswith("corrupt: ")


def test_a_corrupt_profile_is_not_resumed_or_extended(tmp_path, shipped_profile):
    import shutil

    from latbench.errors import ProfileError
    from latbench.profile import read_meta
    from latbench.profiler.run import ProfileSettings, extension_settings, profile_device

    folder = tmp_path / "damaged"
    shutil.copytree(shipped_profile(), folder)
    _tamper(folder, ("layers x1000", True))
    meta = read_meta(folder, require=())
    with pytest.raises(ProfileError, match="it is corrupt"):
        profile_device(extension_settings(meta, ["resnet20"]), out=folder, progress=False, extend=True)
    fields = ProfileSettings.__dataclass_fields__
    settings = ProfileSettings(**{k: v for k, v in meta["settings"].items() if k in fields})
    with pytest.raises(ProfileError, match="it is corrupt"):
        profile_device(settings, out=folder, progress=False)


# --- one writer per folder ----------------------------------------------------------------------------------------
def _lock_of(folder, pid):
    import socket

    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".lock").write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "what": "latbench profile",
                                              "started": "2026-11-26T20:00:00+00:00"}))


def test_a_second_writer_is_refused_with_the_first_ones_pid_and_a_stale_lock_is_taken_over(capsys, tmp_path):
    import os
    import subprocess
    import sys

    from latbench.folder_lock import FolderBusyError, FolderLock

    busy = tmp_path / "busy"
    _lock_of(busy, os.getppid())  # a live process of this host: the first writer
    with pytest.raises(FolderBusyError, match=rf"being written by latbench profile \(PID {os.getppid()} on "):
        FolderLock(busy).acquire()
    code, _, err = run(capsys, "profile", "--models", "smallconv", "--out", str(busy), "--budget-min", "1")
    assert_one_line_error(code, err, f"PID {os.getppid()}")
    assert sorted(p.name for p in busy.iterdir()) == [".lock"]  # nothing was measured into it
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / "stale"
    _lock_of(stale, int(done.stdout))  # that process has exited
    with FolderLock(stale, "a test") as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        with pytest.raises(FolderBusyError, match="already locked by this process"):
            FolderLock(stale).acquire()
    assert not (stale / ".lock").exists()


def test_a_damaged_stored_xgboost_model_is_one_line_even_without_a_manifest(tmp_path, shipped_profile):
    import shutil

    from latbench.device_profile import DeviceProfile
    from latbench.errors import ProfileError
    from latbench.profile import read_meta, write_meta

    folder = tmp_path / "damaged"
    shutil.copytree(shipped_profile(), folder)
    meta = read_meta(folder, require=())
    meta.pop("files")
    write_meta(folder, meta)
    (folder / "predictors" / "xgb-1.ubj").write_bytes(b"\x00\x01 not a model")
    with pytest.raises(ProfileError) as info:
        DeviceProfile.load(folder, check_fingerprint=False).predictor("xgb")
    assert "corrupt stored xgb model" in str(info.value) and "\n" not in str(info.value)
