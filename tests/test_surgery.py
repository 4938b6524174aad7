"""Surgery: a decision applied to a real module gives exactly the network its ``Arch`` describes."""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch
from nets import cifar_resnet_reference, randomized
from torch import nn

from latbench.arch import trace
from pruners.errors import SurgeryError
from pruners.groups import channel_groups
from pruners.surgery import Decision, apply

EXAMPLE = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(7))
BATCH = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(8))


pytestmark = pytest.mark.usefixtures("one_thread")


def traced(name: str, seed: int = 0):
    model = randomized(name, seed)
    return model, trace(model, EXAMPLE, name)


def random_decision(arch, rng: random.Random) -> Decision:
    """Random kept subsets (one channel and up) for ~70% of the prunable groups and a random subset of the
    removable blocks."""
    groups = rng.sample(arch.prunable_groups, round(0.7 * len(arch.prunable_groups)))
    keep = {}
    for g in groups:
        keep[g.id] = tuple(sorted(rng.sample(range(g.channels), rng.randint(1, g.channels))))
    removable = [b.name for b in arch.blocks if b.removable]
    blocks = rng.sample(removable, rng.randint(0, len(removable))) if removable else []
    return Decision(keep, tuple(blocks))


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert torch.equal(after[k], v), f"{k} changed"


# --- random decisions on the zoo ------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "n_decisions"),
                         [("resnet20", 3), ("resnet56", 2), ("vgg16", 2), ("mobilenetv2_cifar", 2)])
def test_random_decisions_match_their_arch(name, n_decisions):
    model, arch = traced(name)
    before = state_copy(model)
    original = copy.deepcopy(model)
    rng = random.Random(f"{name}-decisions")
    for _ in range(n_decisions):
        decision = random_decision(arch, rng)
        pruned, target = apply(model, arch, decision, EXAMPLE)
        with torch.no_grad():
            out = pruned(BATCH)
        assert out.shape == (2, 10)
        assert torch.isfinite(out).all()
        got = trace(copy.deepcopy(pruned), EXAMPLE, name)  # the module's own structure, traced afresh
        assert got.effective() == target.effective()
        # the widths the decision asked for are the widths the module has
        for gid, kept in decision.resolved(arch).items():
            assert target.width_tuple[gid] == len(kept)
        assert target.removed == frozenset(decision.remove_blocks)
        if decision.keep or decision.remove_blocks:
            assert target.flops() < arch.flops()
        # the original is untouched, weights and structure
        assert_same_state(model, before)
        assert trace(copy.deepcopy(model), EXAMPLE, name).effective() == arch.effective()
        assert all(type(a) is type(b) for a, b in zip(model.modules(), original.modules(), strict=True))


def test_random_resnet20_decisions_compute_what_the_original_weights_sliced_by_hand_compute():
    model, arch = traced("resnet20")
    rng = random.Random("resnet20-reference")
    writers = {"conv1": 16, "layer2.0.conv2": 32, "layer3.0.conv2": 64}
    writers |= {f"layer{s}.{b}.conv1": 16 * 2 ** (s - 1) for s in (1, 2, 3) for b in range(3)}
    removable = ["layer1.0", "layer1.1", "layer1.2", "layer2.1", "layer2.2", "layer3.1", "layer3.2"]
    assert removable == [b.name for b in arch.blocks if b.removable]
    for _ in range(3):
        keep = {w: sorted(rng.sample(range(n), rng.randint(1, n))) for w, n in writers.items()}
        removed = set(rng.sample(removable, rng.randint(0, 3)))
        pruned, _ = apply(model, arch, Decision(keep, tuple(sorted(removed))), EXAMPLE)
        with torch.no_grad():
            want, got, full = cifar_resnet_reference(model, keep, removed, BATCH), pruned(BATCH), model(BATCH)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(got, full, atol=1e-3)  # the reference is of the pruned network, not the original
    # the reference with every channel kept and no block removed is the original network
    with torch.no_grad():
        torch.testing.assert_close(cifar_resnet_reference(model, {w: list(range(n)) for w, n in writers.items()},
                                                           set(), BATCH), model(BATCH), rtol=1e-4, atol=1e-5)


def test_pruning_nothing_is_bit_identical():
    model, arch = traced("resnet20")
    pruned, target = apply(model, arch, Decision(), EXAMPLE)
    assert pruned is not model
    assert target.effective() == arch.effective()
    with torch.no_grad():
        assert torch.equal(pruned(BATCH), model(BATCH))
    # keeping every channel of a group, in any order and with repeats, is also no change
    full = Decision({2: (*reversed(range(16)), 3, 3)})
    assert full.resolved(arch) == {2: tuple(range(16))}
    pruned, _ = apply(model, arch, full, EXAMPLE)
    with torch.no_grad():
        assert torch.equal(pruned(BATCH), model(BATCH))


# --- exact copies ---------------------------------------------------------------------------------------------
def test_internal_group_weights_are_copied_exactly():
    model, arch = traced("resnet20")
    kept = [1, 4, 5, 9, 15]
    pruned, _ = apply(model, arch, Decision({"layer1.0.conv1": kept}), EXAMPLE)
    old, new = model.layer1[0], pruned.layer1[0]
    idx = torch.tensor(kept)
    assert new.conv1.weight.shape == (5, 16, 3, 3)
    assert torch.equal(new.conv1.weight, old.conv1.weight[idx])
    for attr in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(new.bn1, attr), getattr(old.bn1, attr)[idx]), attr
    assert new.bn1.num_features == 5
    assert torch.equal(new.conv2.weight, old.conv2.weight[:, idx])
    # everything outside the group is untouched
    assert torch.equal(new.bn2.running_mean, old.bn2.running_mean)
    assert torch.equal(pruned.layer1[1].conv1.weight, model.layer1[1].conv1.weight)


def test_residual_group_weights_are_copied_exactly():
    model, arch = traced("resnet20")
    kept = [0, 2, 3, 7, 8, 11, 14]
    idx = torch.tensor(kept)
    pruned, target = apply(model, arch, Decision({"conv1": kept}), EXAMPLE)
    assert torch.equal(pruned.conv1.weight, model.conv1.weight[idx])
    assert torch.equal(pruned.bn1.running_var, model.bn1.running_var[idx])
    for k in range(3):
        old, new = model.layer1[k], pruned.layer1[k]
        assert torch.equal(new.conv2.weight, old.conv2.weight[idx])
        assert torch.equal(new.bn2.bias, old.bn2.bias[idx])
        assert torch.equal(new.conv1.weight, old.conv1.weight[:, idx])
    assert torch.equal(pruned.layer2[0].conv1.weight, model.layer2[0].conv1.weight[:, idx])
    assert torch.equal(pruned.layer2[0].downsample[0].weight, model.layer2[0].downsample[0].weight[:, idx])
    assert target.width_tuple[1] == len(kept)


# --- pruning channels that contribute nothing changes nothing -------------------------------------------------
def _zero_channels(conv: nn.Conv2d, bn: nn.BatchNorm2d, channels: list[int]) -> None:
    with torch.no_grad():
        conv.weight[channels] = 0
        bn.weight[channels] = 0
        bn.bias[channels] = 0


def test_pruning_dead_internal_channels_keeps_resnet20_output():
    model, arch = traced("resnet20")
    dead = [0, 3, 6, 7, 12]
    block = model.layer2[1]  # group written by layer2.1.conv1 (32 channels), read by layer2.1.conv2 only
    _zero_channels(block.conv1, block.bn1, dead)
    kept = [c for c in range(32) if c not in dead]
    pruned, _ = apply(model, arch, Decision({"layer2.1.conv1": kept}), EXAMPLE)
    assert pruned.layer2[1].conv1.out_channels == len(kept)
    with torch.no_grad():
        ref, out = model(BATCH), pruned(BATCH)
    assert torch.allclose(out, ref, atol=1e-5)
    # pruning live channels instead does change the output (the check above can fail)
    live = [c for c in range(32) if c not in (1, 2, 4, 5, 8)]
    other, _ = apply(model, arch, Decision({"layer2.1.conv1": live}), EXAMPLE)
    with torch.no_grad():
        assert not torch.allclose(other(BATCH), ref, atol=1e-5)


def test_pruning_dead_expansion_channels_keeps_mobilenetv2_output():
    model, arch = traced("mobilenetv2_cifar")
    block = model.features[4].conv  # expansion 1x1 (32 -> 144), depthwise 3x3, projection 1x1 (144 -> 32)
    expand, expand_bn = block[0][0], block[0][1]
    dw, dw_bn = block[1][0], block[1][1]
    dead = [1, 10, 50, 51, 100, 143]
    _zero_channels(expand, expand_bn, dead)
    # the depthwise conv now sees zeros, its BN would still add (0 - mean) * gamma / std + beta: zero gamma and
    # beta there too, so the channel that reaches the projection is ReLU6(0) = 0
    _zero_channels(dw, dw_bn, dead)
    gid = arch.base.group_by_key["features.4.conv.0.0"]
    assert set(arch.groups[gid].layers) == {"features.4.conv.0.0", "features.4.conv.1.0"}
    kept = [c for c in range(expand.out_channels) if c not in dead]
    pruned, target = apply(model, arch, Decision({"features.4.conv.0.0": kept}), EXAMPLE)
    new = pruned.features[4].conv
    assert new[0][0].out_channels == new[1][0].out_channels == new[1][0].groups == new[2].in_channels == len(kept)
    assert torch.equal(new[1][0].weight, dw.weight[torch.tensor(kept)])
    assert target.width_tuple[gid] == len(kept)
    with torch.no_grad():
        assert torch.allclose(pruned(BATCH), model(BATCH), atol=1e-5)


# --- removing blocks ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("block", ["layer1.1", "layer3.2"])
def test_removing_a_block_is_replacing_it_by_identity(block):
    model, arch = traced("resnet20")
    pruned, target = apply(model, arch, Decision(remove_blocks=(block,)), EXAMPLE)
    ref = copy.deepcopy(model)
    ref.set_submodule(block, nn.Identity())
    assert isinstance(pruned.get_submodule(block), nn.Identity)
    with torch.no_grad():
        out, want, full = pruned(BATCH), ref.eval()(BATCH), model(BATCH)
    assert torch.equal(out, want)
    assert not torch.allclose(out, full)
    assert target.removed == {block}
    assert all(not name.startswith(block + ".") for name, _ in target.effective())


# --- bad input ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("decision", "words"), [
    (Decision({"no.such.layer": [0]}), "no channel group or layer named"),
    (Decision({"layer1.0.conv1": [0, 16]}), "out of range"),
    (Decision({"layer1.0.conv1": [-1, 3]}), "out of range"),
    (Decision({"layer1.0.conv1": []}), "keep no channel"),
    (Decision({"fc": [0, 1, 2]}), "cannot be pruned"),
    (Decision({2: [0, 1], "layer1.0.conv1": [0, 2]}), "different channels"),
    (Decision(remove_blocks=("layer2.0",)), "cannot be removed"),
    (Decision(remove_blocks=("layer9.9",)), "no block named"),
])
def test_bad_decisions_raise_one_line(decision, words):
    model, arch = traced("resnet20")
    before = state_copy(model)
    with pytest.raises(SurgeryError) as info:
        apply(model, arch, decision, EXAMPLE)
    message = str(info.value)
    assert words in message
    assert "\n" not in message
    assert message.startswith("resnet20:")
    assert_same_state(model, before)


def test_keeping_every_output_channel_of_a_fixed_group_is_allowed():
    _, arch = traced("resnet20")
    assert Decision({"fc": list(range(10))}).arch(arch).effective() == arch.effective()


# --- serialisation --------------------------------------------------------------------------------------------
def test_decision_dict_round_trip():
    _, arch = traced("resnet20")
    d = Decision({"2": (0, 3, 5), "layer2.1.conv1": (1, 2), "conv1": tuple(range(8))}, ("layer1.1", "layer3.2"))
    data = json.loads(json.dumps(d.to_dict()))
    back = Decision.from_dict(data)
    assert back == d
    assert back.to_dict() == d.to_dict()
    assert back.arch(arch) == d.arch(arch)
    # integer keys come back as their string form and name the same groups
    numeric = Decision({2: [5, 0, 3]}, ("layer1.1",))
    again = Decision.from_dict(numeric.to_dict())
    assert again.resolved(arch) == numeric.resolved(arch) == {2: (0, 3, 5)}
    assert again.remove_blocks == ("layer1.1",)
    assert Decision.from_dict({}) == Decision()


# --- channel groups -------------------------------------------------------------------------------------------
def test_channel_groups_of_resnet20():
    model, arch = traced("resnet20")
    groups = {g.name: g for g in channel_groups(model, arch, EXAMPLE)}
    assert len(groups) == len(arch.prunable_groups)
    stage1 = groups["conv1"]
    assert stage1.root == "conv1"
    assert set(stage1.writers) == {"conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"}
    assert {"bn1", "layer1.0.bn2", "layer1.1.bn2", "layer1.2.bn2"} <= set(stage1.norms)
    assert {"layer2.0.conv1", "layer2.0.downsample.0", "layer1.0.conv1"} <= set(stage1.readers)
    assert "layer2.0.conv2" not in stage1.readers + stage1.writers
    internal = groups["layer1.0.conv1"]
    assert (internal.writers, internal.norms, internal.readers) == (("layer1.0.conv1",), ("layer1.0.bn1",),
                                                                    ("layer1.0.conv2",))
    stage2 = groups["layer2.0.conv2"]
    assert set(stage2.writers) == {"layer2.0.conv2", "layer2.0.downsample.0", "layer2.1.conv2", "layer2.2.conv2"}
    assert "layer2.0.downsample.1" in stage2.norms


def test_depthwise_group_pruned_to_one_channel():
    """One channel left: the depthwise conv is a plain 1->1 conv, in the module and in the Arch alike."""
    model, arch = traced("mobilenetv2_cifar")
    pruned, target = apply(model, arch, Decision({"features.2.conv.0.0": [5]}), EXAMPLE)
    assert pruned.features[2].conv[1][0].out_channels == 1
    assert target.width_tuple[arch.base.group_by_key["features.2.conv.0.0"]] == 1
    assert dict(target.effective())["features.2.conv.1.0"].op == "conv"
