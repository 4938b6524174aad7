"""The built-in trainer under torchrun: two gloo processes train as one does, and resume from a checkpoint."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

JOB = str(Path(__file__).parent / "ddp_job.py")


def train(out: Path, epochs: int, processes: int, keep_at: int | None = None) -> dict:
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] \
        if processes > 1 else [sys.executable]
    args = [*launch, JOB, str(out), str(epochs), *([str(keep_at)] if keep_at else [])]
    env = {**os.environ, "OMP_NUM_THREADS": str(2 // processes or 1)}  # the two cores, however many processes
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads([ln for ln in done.stdout.splitlines() if ln.startswith("{")][-1])


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    return out, train(out, 12, 2, keep_at=5)


def test_two_processes_reach_the_accuracy_of_one(two_processes, tmp_path):
    _, two_processes = two_processes
    one = train(tmp_path / "one", 12, 1)
    # the global batch and schedule are the same, the batches differ: equal within a few test images of 360
    assert one["test"] > 88 and two_processes["test"] > 88
    assert abs(two_processes["test"] - one["test"]) <= 3.0
    # one history, as one process writes it: steps per epoch of the split data, metrics over both halves
    assert [e["epoch"] for e in two_processes["epochs"]] == list(range(1, 13))


def test_an_interrupted_two_process_run_resumes_to_the_same_network(two_processes, tmp_path):
    """A run stopped after epoch 5 leaves the checkpoint of epoch 5 (kept aside by the full run as it passed);
    two processes resume from it and end as the run that was never stopped."""
    full_out, full = two_processes
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(full_out / "checkpoint-5.pt", out / "checkpoint.pt")
    resumed = train(out, 12, 2)
    # the first five epochs come from the checkpoint; the rest are trained as the uninterrupted run trained them
    assert [e["val_acc"] for e in resumed["epochs"]] == [e["val_acc"] for e in full["epochs"]]
    assert resumed["weights"] == pytest.approx(full["weights"], rel=1e-9)
    assert resumed["test"] == full["test"]


def test_prune_fine_tunes_on_two_processes_and_keeps_what_they_trained(capsys, shipped_profile, tmp_path):
    import torch
    from test_cli import run

    from latbench.models import build_model
    from pruners.train import read_weights

    torch.manual_seed(0)
    torch.save(build_model("smallconv", num_classes=10).state_dict(), tmp_path / "w.pt")
    out = tmp_path / "run"
    code, _, err = run(capsys, "prune", "uniform", "--model", "smallconv", "--weights", str(tmp_path / "w.pt"),
                       "--profile", str(shipped_profile()), "--latency-target", "0.7", "--oracle", "predict",
                       "--finetune-epochs", "2", "--measure-budget", "1", "--nproc", "2", "--out", str(out), "--quiet")
    assert code == 0, err
    job = json.loads((out / "finetune" / "job.json").read_text())
    assert job["recipe"]["model"] == "smallconv" and job["config"]["epochs"] == 2
    checkpoint = torch.load(out / "finetune" / "checkpoint.pt", weights_only=True)
    assert checkpoint["epoch"] == 2 and len(checkpoint["history"]) == 2
    report = json.loads((out / "report.json").read_text())
    assert [e["val_acc"] for e in report["finetune"]] == [e["val_acc"] for e in checkpoint["history"]]
    # the run's network is the one the two processes trained, not a retrained one
    final = read_weights(out / "pruned.pt")
    assert all(torch.equal(final[k], v) for k, v in checkpoint["model"].items())
