"""The GPU check's dry run on CPU, so that the script a rare GPU machine runs cannot rot."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from latbench.profiler.channel_step import PROBE

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.py"


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    done = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out), "--wheels", str(out),
                           "--profile-minutes", "0.1", "--network-seconds", "3",
                           "--stability-batches", "1", "--repeats", "3"],
                          capture_output=True, text=True, timeout=400)
    return out, done


def test_every_stage_runs_on_cpu(dry_run):
    out, done = dry_run
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert {k: v["status"] for k, v in summary["stages"].items()} == dict.fromkeys(
        ("wheels", "device", "pytest", "stability", "profile", "compiled"), "ok")
    assert "every stage ran" in (out / "log.txt").read_text()


def test_cuda_tests_are_collected_and_skip_cleanly(dry_run):
    out, _ = dry_run
    tests = json.loads((out / "summary.json").read_text())["stages"]["pytest"]
    assert tests["tests"] > 0 and tests["skipped"] == tests["tests"]
    assert tests["failures"] == tests["errors"] == 0 and (out / "pytest.xml").exists()


def test_stability_spread_is_the_range_of_repeated_medians(dry_run):
    out, _ = dry_run
    stage = json.loads((out / "summary.json").read_text())["stages"]["stability"]
    (config,) = stage["configs"]
    timer = config["timers"]["host clock"]
    medians = timer["medians_us"]
    assert len(medians) == 3 and min(medians) > 0
    assert timer["spread"] == pytest.approx((max(medians) - min(medians)) / np.median(medians), rel=1e-3)
    assert stage["worst_spread"] == pytest.approx(timer["spread"])


def test_profile_is_complete_and_sized_for_its_engine(dry_run):
    out, _ = dry_run
    stage = json.loads((out / "summary.json").read_text())["stages"]["profile"]
    (row,) = stage["profiles"]
    meta = json.loads((out / row["folder"] / "profile.json").read_text())
    assert meta["status"] == "complete" and meta["settings"]["backend"] == "torch"
    assert meta["reference_layer"] == PROBE.to_dict()  # the CPU probe; a GPU profile records the GPU one
    assert all(not g["off_layout"] for g in meta["plan"]["grids"])  # torch has no blocked layout to probe around
    assert row["validation"]["lut"]["n"] >= 1


def test_compiled_engine_computes_what_eager_does(dry_run):
    out, _ = dry_run
    (run,) = json.loads((out / "summary.json").read_text())["stages"]["compiled"]["runs"]
    assert set(run["median_us"]) == {"eager", "compiled"} and min(run["median_us"].values()) > 0
    assert run["max_rel_error_vs_eager"]["compiled"] < 1e-3
