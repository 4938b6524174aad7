"""Methods side by side at one measured latency: ``latbench prune METHOD --compare OTHERS``."""

from __future__ import annotations

import json

import pytest
import torch
from nets import seeded
from test_cli import run

pytestmark = pytest.mark.usefixtures("one_thread")


def _prune(capsys, shipped_profile, tmp_path, *extra):
    weights = tmp_path / "resnet20.pt"
    if not weights.exists():
        torch.save(seeded("resnet20").state_dict(), weights)
    return run(capsys, "prune", "layerprune", "--model", "resnet20", "--weights", str(weights),
               "--profile", str(shipped_profile()), "--finetune-epochs", "0", "--bn-images", "32",
               "--measure-budget", "1", "--quiet", "--out", str(tmp_path / "run"), *extra)


def test_the_others_are_pruned_to_the_latency_the_run_measured_with_its_criterion(capsys, shipped_profile, tmp_path):
    code, out, err = _prune(capsys, shipped_profile, tmp_path, "--latency-target", "0.8", "--oracle", "predict",
                            "--criterion", "l2", "--compare", "uniform", "global", "--compare-budget", "1")
    assert code == 0, err
    first = json.loads((tmp_path / "run" / "report.json").read_text())
    comparison = json.loads((tmp_path / "run" / "comparison.json").read_text())
    assert [r["method"] for r in comparison["rows"]] == ["layerprune", "uniform", "global"]
    assert comparison["reached"] == first["latency"]["measured_ratio"]
    for name in ("uniform", "global"):
        other = json.loads((tmp_path / "run" / "compare" / name / "report.json").read_text())
        assert other["settings"]["target"] == first["latency"]["measured_ratio"]
        assert other["settings"]["finetune"] == first["settings"]["finetune"]
    uniform = json.loads((tmp_path / "run" / "compare" / "uniform" / "report.json").read_text())
    assert uniform["settings"]["options"] == {"criterion": "l2"}  # the same criterion as the run's
    glob = json.loads((tmp_path / "run" / "compare" / "global" / "report.json").read_text())
    assert glob["settings"]["options"] == {}  # Torch-Pruning's magnitude takes no criterion
    for row in comparison["rows"]:
        j = row["side_by_side"]
        assert len(j["all"]) == 3 and j["low"] <= j["median"] <= j["high"]
        assert f"| {row['method']} | {j['median']:.3f} " in out


@pytest.mark.parametrize(("extra", "message"), [
    (("--compare", "layerprune"), "--compare names the run's own method 'layerprune'"),
    (("--compare", "uniform", "uniform"), "--compare names a method twice"),
    (("--compare", "nosuch"), "unknown pruning method 'nosuch'"),
    (("--compare", "uniform", "--compare-budget", "nan"), "--compare-budget: expected a number > 0, got 'nan'"),
])
def test_a_bad_comparison_is_refused_in_one_line_before_any_work(capsys, shipped_profile, tmp_path, extra, message):
    code, _out, err = _prune(capsys, shipped_profile, tmp_path, "--latency-target", "0.8", *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_comparison_at_a_flops_target_is_refused(capsys, shipped_profile, tmp_path):
    code, _out, err = _prune(capsys, shipped_profile, tmp_path, "--flops-target", "0.5", "--compare", "uniform")
    assert code == 2 and "equal measured latency" in err
