"""``latbench train`` and ``latbench prune`` end to end on digits, with the shipped CPU profile."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch
from test_cli import assert_one_line_error, run

from latbench.arch import Arch, trace
from latbench.models import build_model
from pruners.method import Method, Problem, Search, option
from pruners.methods import METHODS, register_method
from pruners.prune import prune
from pruners.surgery import Decision
from pruners.train import TrainConfig, read_weights


@pytest.fixture(scope="module")
def profile(shipped_profile) -> str:
    """The shipped CPU profile, with this machine's fingerprint (no warning line on stderr)."""
    return str(shipped_profile())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from latbench.cli import main

    out = tmp_path_factory.mktemp("train") / "smallconv"
    argv = ["train", "smallconv", "--epochs", "3", "--lr", "0.2", "--batch-size", "32", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    return out


def test_train_writes_weights_arch_and_report(trained):
    report = json.loads((trained / "train.json").read_text())
    assert report["test_accuracy"] > 50  # three epochs on digits: far above the 10% of chance
    assert len(report["history"]) == 3
    model = build_model("smallconv")
    model.load_state_dict(read_weights(trained / "weights.pt"))
    assert Arch.from_json(trained / "arch.json").flops() > 0


def prune_args(trained, profile, out, *extra):
    return ("prune", "uniform", "--model", "smallconv", "--weights", str(trained), "--profile", profile,
            "--finetune-epochs", "1", "--oracle", "predict", "--measure-budget", "1", "--out", str(out), "--quiet",
            *extra)


def test_prune_writes_a_consistent_run_and_resumes(capsys, trained, profile, tmp_path):
    out = tmp_path / "run"
    code, printed, _ = run(capsys, *prune_args(trained, profile, out, "--latency-target", "0.7"))
    assert code == 0 and "uniform on smallconv" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["latency"]["predicted_ratio"] <= 0.7 * 1.05
    lat = report["latency"]
    assert lat["backend"] == "onnxruntime"
    # measured interleaved with the original (paired blocks: the machine's drift cancels), a cut predicted at 0.7
    # is clearly faster (seen: 0.64), and by less than its FLOPs shrank (seen: 0.29; fixed costs do not shrink)
    low, high = lat["measured_ci"]
    assert report["flops"]["ratio"] < 0.5 and lat["predicted_ratio"] > 0.5
    assert report["flops"]["ratio"] - 0.05 < lat["measured_ratio"] < 0.9, (lat, report["flops"])
    assert low <= lat["measured_ratio"] <= high
    assert f"Measured latency ratio {lat['measured_ratio']:.2f} (95% CI {low:.2f}–{high:.2f})" in \
        (out / "summary.md").read_text()
    assert report["flops"]["ratio"] < 1 and report["oracle"]["counts"]["measurements"] == 0  # predict mode
    assert report["oracle"]["counts"]["predictions"] > 10
    assert len(report["finetune"]) == 1 and report["accuracy"]["original"] > 50
    assert report["accuracy"]["recalibration_images"] == 512 and report["accuracy"]["pruned_before_recalibration"] >= 0
    arch = Arch.from_json(out / "arch.json")
    rebuilt = build_model("smallconv", channels=arch.channels())  # the saved weights fit the saved arch
    rebuilt.load_state_dict(read_weights(out / "pruned.pt"))
    x = torch.randn(2, 3, 32, 32)
    assert rebuilt.eval()(x).shape == (2, 10)
    assert (out / "summary.md").read_text().startswith("# uniform on smallconv")
    search = (out / "search.json").read_text()
    code, _, _ = run(capsys, *prune_args(trained, profile, out, "--latency-target", "0.7"))  # rerun: search and
    assert code == 0 and (out / "search.json").read_text() == search  # fine-tune reused from the folder
    again = json.loads((out / "report.json").read_text())
    assert again["widths"] == report["widths"]
    cost = json.loads(search)["cost"]  # what the search spent is the first run's, also in the resumed report
    assert cost["predictions"] == report["oracle"]["counts"]["predictions"] and cost["search_s"] > 0
    assert again["oracle"]["search_cost"] == {**cost, "resumed": True}
    code, _, err = run(capsys, *prune_args(trained, profile, out, "--latency-target", "0.6"))
    assert_one_line_error(code, err, "other settings")


def test_prune_bad_input_is_one_line(capsys, trained, profile, tmp_path):
    code, _, err = run(capsys, *prune_args(trained, profile, tmp_path / "a", "--latency-target", "0.01"))
    assert_one_line_error(code, err, "floor")
    code, _, err = run(capsys, "prune", "uniform", "--model", "resnet20", "--weights", str(trained),
                       "--profile", profile, "--latency-target", "0.5", "--out", str(tmp_path / "b"))
    assert_one_line_error(code, err, "do not match the model")
    code, _, err = run(capsys, *prune_args(trained, profile, tmp_path / "c", "--latency-target", "0.5", "--dataset",
                                           "cifar10", "--data-root", str(tmp_path)))
    assert_one_line_error(code, err, "data_batch_1")
    code, _, err = run(capsys, *prune_args(trained, profile, tmp_path / "d"))
    assert_one_line_error(code, err, "--latency-target")
    code, _, err = run(capsys, "prune", "nosuch", "--model", "smallconv", "--weights", str(trained), "--profile",
                       profile, "--latency-target", "0.5")
    assert_one_line_error(code, err, "unknown pruning method")


def splamp_args(trained, profile, out, *extra):
    args = list(prune_args(trained, profile, out, "--latency-target", "0.6", *extra))
    args[1] = "splamp"
    return args


def test_prune_splamp_one_shot_and_iterative_resume(capsys, trained, profile, tmp_path):
    out = tmp_path / "one"
    code, printed, _ = run(capsys, *splamp_args(trained, profile, out, "--group-size", "4"))
    assert code == 0 and "splamp on smallconv" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["latency"]["predicted_ratio"] <= 0.6
    assert report["settings"]["options"] == {"group_size": 4}
    assert not (out / "search.pt").exists()  # one-shot: the decision alone rebuilds the network
    out = tmp_path / "steps"
    code, _, _ = run(capsys, *splamp_args(trained, profile, out, "--steps", "2", "--step-epochs", "1"))
    assert code == 0 and (out / "search.pt").exists() and (out / "steps" / "1").is_dir()
    report = json.loads((out / "report.json").read_text())
    assert report["latency"]["predicted_ratio"] <= 0.6
    assert next(h["step"] for h in report["search"] if "rounds" in h) == 1
    search, weights = (out / "search.json").read_text(), (out / "search.pt").read_bytes()
    code, _, _ = run(capsys, *splamp_args(trained, profile, out, "--steps", "2", "--step-epochs", "1"))
    assert code == 0 and (out / "search.json").read_text() == search and (out / "search.pt").read_bytes() == weights
    assert json.loads((out / "report.json").read_text())["accuracy"] == report["accuracy"]  # same weights, resumed


def test_prune_method_options_are_checked(capsys, trained, profile, tmp_path):
    code, _, err = run(capsys, *prune_args(trained, profile, tmp_path / "u", "--latency-target", "0.6", "--steps", "2"))
    assert_one_line_error(code, err, "uniform takes no option steps")
    code, _, err = run(capsys, *splamp_args(trained, profile, tmp_path / "f", "--steps", "0"))
    assert_one_line_error(code, err, "--steps: expected an integer >= 1, got '0'")


# --- a method registered from this file alone ------------------------------------------------------
@dataclass(frozen=True)
class FirstChannelsOptions:
    share: float = option(0.5, "share of every group's channels to keep (the first ones)")


def first_channels(problem: Problem, options: FirstChannelsOptions) -> Search:
    keep = {g.id: tuple(range(max(1, round(options.share * g.channels)))) for g in problem.groups}
    decision = Decision(keep)
    arch = decision.arch(problem.arch)
    checks = [problem.quick_accuracy(problem.build(decision), arch.signature()) for _ in range(2)]  # cached
    return Search(options.share, decision, arch, [{"share": options.share, "quick_accuracy": checks}])


@pytest.fixture
def toy_method():
    register_method(Method("firstchannels", "keep the first channels of every group", FirstChannelsOptions,
                           first_channels))
    yield
    METHODS.pop("firstchannels")


def test_a_method_registered_from_a_test_file_runs_through_prune_and_the_cli(capsys, trained, profile, tmp_path,
                                                                             toy_method):
    from latbench.device_profile import DeviceProfile

    loaded = DeviceProfile.load(profile)
    result = prune("firstchannels", "smallconv", trained, loaded, 0.9, out=tmp_path / "api", mode="predict",
                   finetune=TrainConfig(epochs=0), measure_budget_s=1, progress=False, options={"share": 0.25})
    original = trace(build_model("smallconv"), torch.zeros(1, 3, 32, 32), "smallconv")
    assert {g.id: result.arch.widths[g.id] for g in original.prunable_groups} == \
        {g.id: max(1, round(0.25 * g.channels)) for g in original.prunable_groups}
    (entry,) = result.search
    assert entry["share"] == 0.25 and entry["quick_accuracy"][0] == entry["quick_accuracy"][1]
    assert 0 <= entry["quick_accuracy"][0] <= 100 and result.accuracy["quick_accuracy_checks"] == 1
    code, out, _ = run(capsys, "prune", "--help")
    assert code == 0 and "firstchannels options" in out
    code, _, err = run(capsys, "prune", "firstchannels", "--model", "smallconv", "--weights", str(trained),
                             "--profile", profile, "--latency-target", "0.9", "--oracle", "predict",
                             "--finetune-epochs", "0", "--measure-budget", "1", "--share", "0.5",
                             "--out", str(tmp_path / "cli"), "--quiet")
    assert code == 0, err
    assert json.loads((tmp_path / "cli" / "report.json").read_text())["settings"]["options"] == {"share": 0.5}


def test_a_truncated_search_record_is_named_not_mistaken_for_other_settings(capsys, trained, profile, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "search.json").write_text('{"settings": {"method": "uni')  # a write cut off mid-file
    code, _, err = run(capsys, "prune", "uniform", "--model", "smallconv", "--weights", str(trained), "--profile",
                       profile, "--latency-target", "0.8", "--oracle", "predict", "--finetune-epochs", "0",
                       "--out", str(out), "--quiet")
    assert_one_line_error(code, err, "search.json is unreadable or truncated")
