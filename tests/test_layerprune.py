"""LayerPrune: block and layer importance, removal order, valid shapes, targets and the floor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from nets import seeded, with_groups
from torch.utils.data import DataLoader, TensorDataset

from latbench.device_profile import DeviceProfile
from latbench.measure import MeasureSettings
from pruners.errors import PruningError
from pruners.layerprune import layerprune, removable_units, unit_importance
from pruners.method import Problem
from pruners.oracle import LatencyOracle
from pruners.surgery import Decision, apply
from pruners.train import TrainConfig

EXAMPLE = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def profile(shipped_profile):
    return DeviceProfile.load(shipped_profile())


def _problem(name, profile, target, mode="auto", metric="latency"):
    model, arch, groups = with_groups(seeded(name), EXAMPLE, name)
    oracle = LatencyOracle(profile, model, arch, EXAMPLE, mode=mode,
                           settings=MeasureSettings(target_rel_ci=0.02, budget_s=2.0))
    g = torch.Generator().manual_seed(0)
    data = DataLoader(TensorDataset(torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g)),
                      batch_size=16)
    return Problem(model, arch, groups, EXAMPLE, oracle, target, metric, data, data, TrainConfig(epochs=0))


def test_block_importance_is_the_mean_of_its_writers_per_weight_l1_over_the_networks_mean(profile):
    problem = _problem("resnet20", profile, 0.8)
    kind, names = removable_units(problem.arch)
    assert kind == "blocks" and names and {"layer2.0", "layer3.0"}.isdisjoint(names)  # stride and width change
    modules = dict(problem.model.named_modules())
    unit = {}
    for g in problem.groups:
        for p in g.writers:
            w = modules[p].weight.detach()
            unit[p] = float(w.abs().reshape(w.shape[0], -1).sum(1).mean()) / w[0].numel()
    net = np.mean(list(unit.values()))
    expected = {b.name: np.mean([unit[p] for p in b.layers if p in unit]) / net
                for b in problem.arch.blocks if b.name in names}
    got = unit_importance(problem, kind, names)
    assert got == pytest.approx(expected)
    assert unit_importance(problem, kind, names, aggregate="max")[names[0]] >= got[names[0]]


def test_the_least_important_blocks_go_first_and_the_target_is_met(profile):
    problem = _problem("resnet20", profile, 0.8, mode="predict")
    found = layerprune(problem)
    importance = unit_importance(problem, *removable_units(problem.arch))
    removed = set(found.decision.remove_blocks)
    assert removed and max(importance[b] for b in removed) <= min(importance[b] for b in importance if b not in removed)
    assert problem.oracle.predict(found.arch).ratio <= 0.8
    fewer = found.decision.remove_blocks[:-1]
    assert problem.oracle.predict(Decision(remove_blocks=fewer).arch(problem.arch)).ratio > 0.8  # no block too many


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2_cifar", "vgg16"])
def test_shapes_stay_valid(profile, name):
    problem = _problem(name, profile, 0.7 if name != "vgg16" else 0.8, mode="predict", metric="flops")
    found = layerprune(problem)
    pruned, arch = apply(problem.model, problem.arch, found.decision, EXAMPLE)
    assert pruned(EXAMPLE).shape == (1, 10)
    assert arch.flops() / problem.arch.flops() <= (0.7 if name != "vgg16" else 0.8)
    kind = "layers" if name == "vgg16" else "blocks"
    assert removable_units(problem.arch)[0] == kind
    assert (found.decision.remove_layers if kind == "layers" else found.decision.remove_blocks)


def test_measured_latency_lands_near_the_target_or_says_why(profile):
    problem = _problem("resnet20", profile, 0.8)
    found = layerprune(problem)
    measured = [h for h in found.history if "measured" in h]
    assert measured and problem.oracle.counts.measurements == len(measured)
    best = min(measured, key=lambda h: abs(h["measured"] / 0.8 - 1))
    assert best["removed"] == found.history[-1]["chosen_removed"]


def test_a_target_below_the_floor_is_refused_with_the_floor(profile):
    problem = _problem("resnet20", profile, 0.05, mode="predict")
    with pytest.raises(PruningError, match=r"below the depth-pruning floor \d\.\d{3} of resnet20 \(all \d+ removable"):
        layerprune(problem)


def test_latbench_prune_layerprune_end_to_end(capsys, shipped_profile, tmp_path):
    import json

    from test_cli import run

    weights = tmp_path / "resnet20.pt"
    torch.save(seeded("resnet20").state_dict(), weights)
    code, out, err = run(capsys, "prune", "layerprune", "--model", "resnet20", "--weights", str(weights),
                         "--profile", str(shipped_profile()), "--latency-target", "0.8", "--aggregate", "max",
                         "--finetune-epochs", "0", "--bn-images", "64", "--measure-budget", "2", "--quiet",
                         "--out", str(tmp_path / "run"))
    assert code == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["removed_blocks"] and report["settings"]["options"] == {"aggregate": "max"}
    assert "Removed blocks: " + ", ".join(report["removed_blocks"]) in out
