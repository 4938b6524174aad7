"""Pruning a network the user has (defined only in tests/user_net.py), with the user's fine-tuning and evaluation."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset
from user_net import factory, gray_factory, untraceable_factory, wide_factory

from latbench.device_profile import DeviceProfile
from pruners.errors import PruningError
from pruners.prune import prune_module

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(128, 3, 32, 32, generator=g), torch.randint(0, 10, (128,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0))


def test_a_user_network_is_pruned_with_the_users_callables(shipped_profile, data, tmp_path):
    profile = DeviceProfile.load(shipped_profile())
    calls: list[tuple] = []

    def finetune(module, epochs):
        calls.append(("finetune", epochs, sum(p.numel() for p in module.parameters())))

    def evaluate(module):
        calls.append(("evaluate",))
        return 42.0

    model = factory()
    result = prune_module(model, torch.randn(1, 3, 32, 32), profile, "uniform", 0.5, metric="flops",
                          train_loader=data, finetune=finetune, evaluate_fn=evaluate, out=tmp_path / "run",
                          name="usernet", predictor="xgb", mode="predict", measure_budget_s=1, progress=False,
                          finetune_epochs=3)
    pruned_params = sum(p.numel() for p in result.model.parameters())
    assert calls == [("evaluate",)] * 3 + [("finetune", 3, pruned_params), ("evaluate",)]
    assert result.accuracy["original"] == result.accuracy["finetuned"] == 42.0
    assert result.flops["ratio"] <= 0.5 * 1.05 and pruned_params < sum(p.numel() for p in model.parameters())
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["settings"]["model"] == "usernet" and report["settings"]["finetune"] == "user: 3 epochs"
    assert result.model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_without_loaders_or_callables_the_run_says_what_it_needs(shipped_profile):
    profile = DeviceProfile.load(shipped_profile())
    with pytest.raises(PruningError, match="needs a train_loader"):
        prune_module(factory(), torch.randn(1, 3, 32, 32), profile, "uniform", 0.5, metric="flops")
    with pytest.raises(PruningError, match="evaluate"):
        prune_module(factory(), torch.randn(1, 3, 32, 32), profile, "uniform", 0.5, metric="flops",
                     finetune=lambda m, e: None)


def test_the_command_prunes_a_network_from_a_factory_file(capsys, shipped_profile, tmp_path):
    from pathlib import Path

    from test_cli import assert_one_line_error, run

    spec = f"{Path(__file__).parent / 'user_net.py'}:factory"
    weights = tmp_path / "user.pt"
    torch.save(factory().state_dict(), weights)
    args = ("prune", "uniform", "--weights", str(weights), "--profile", str(shipped_profile()), "--flops-target",
            "0.5", "--predictor", "xgb", "--finetune-epochs", "0", "--measure-budget", "1", "--quiet")
    code, _, err = run(capsys, *args, "--model", spec, "--out", str(tmp_path / "run"))
    assert code == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["settings"]["model"] == spec and report["flops"]["ratio"] <= 0.5 * 1.05
    code, _, err = run(capsys, *args, "--model", spec.replace(":factory", ":nope"), "--out", str(tmp_path / "bad"))
    assert_one_line_error(code, err, "model factory", "has no attribute 'nope'")
    for factory_name, weights_of, expected in (
            ("gray_factory", gray_factory, "does not run on input [1, 3, 32, 32]: Given groups=1"),
            ("untraceable_factory", untraceable_factory, "cannot trace")):
        torch.save(weights_of().state_dict(), weights)
        code, _, err = run(capsys, *args, "--model", spec.replace(":factory", f":{factory_name}"),
                           "--out", str(tmp_path / factory_name))
        assert_one_line_error(code, err, expected)


def test_a_network_the_lut_cannot_price_is_priced_by_the_learned_predictor_with_a_note(shipped_profile, data,
                                                                                       tmp_path):
    profile = DeviceProfile.load(shipped_profile())
    result = prune_module(factory(), torch.randn(1, 3, 32, 32), profile, "uniform", 0.5, metric="flops",
                          train_loader=data, finetune=lambda m, e: None, evaluate_fn=lambda m: 0.0,
                          out=tmp_path / "run", name="usernet", predictor="lut", mode="predict",
                          measure_budget_s=1, progress=False)
    (note,) = result.oracle["notes"]
    assert "never measured" in note and "priced by the learned predictor xgb" in note
    assert result.oracle["predictor"] == "xgb" and f"Note: {note}." in result.summary()


def _check_latency_target(latency: dict, target_record: dict, target: float) -> None:
    """Within ±5% of the target, or the run says by how much it missed and why; always faster."""
    ratio = latency["measured_ratio"]
    missed = target_record.get("missed")
    assert (missed is None) == (abs(ratio / target - 1) <= 0.05)
    assert missed is None or (f"{ratio:.3f}" in missed and "try" in missed)
    assert ratio < 0.8 and latency["measured_ci"][0] <= ratio <= latency["measured_ci"][1]


def test_a_user_network_is_pruned_to_a_measured_latency_target(shipped_profile, data, tmp_path):
    profile = DeviceProfile.load(shipped_profile())
    evaluated: list[int] = []

    def evaluate(module):
        evaluated.append(sum(p.numel() for p in module.parameters()))
        return 50.0

    result = prune_module(wide_factory(), torch.randn(1, 3, 32, 32), profile, "uniform", 0.6, metric="latency",
                          train_loader=data, finetune=lambda m, e: None, evaluate_fn=evaluate,
                          out=tmp_path / "run", name="usernet", predictor="lut", mode="auto", measure_budget_s=3,
                          progress=False)
    _check_latency_target(result.latency, result.target, 0.6)
    assert result.oracle["predictor"] == "xgb"  # the LUT cannot price the user's depthwise layer
    assert evaluated[-1] < evaluated[0]  # the pruned network was evaluated, not the original


def test_the_command_prunes_a_user_network_to_a_latency_target(capsys, shipped_profile, tmp_path):
    from pathlib import Path

    from test_cli import run

    spec = f"{Path(__file__).parent / 'user_net.py'}:wide_factory"
    weights = tmp_path / "user.pt"
    torch.save(wide_factory().state_dict(), weights)
    code, out, err = run(capsys, "prune", "uniform", "--model", spec, "--weights", str(weights), "--profile",
                         str(shipped_profile()), "--latency-target", "0.6", "--finetune-epochs", "0",
                         "--measure-budget", "3", "--quiet", "--out", str(tmp_path / "run"))
    assert code == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    _check_latency_target(report["latency"], report["target"], 0.6)
    assert "priced by the learned predictor" in out
