from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from nets import seeded, with_groups
from torch import nn

from pruners.errors import PruningError
from pruners.groups import ChannelGroup
from pruners.importance import (
    CRITERIA,
    FilterDynamics,
    block_scores,
    keep_top,
    lamp_transform,
    score,
    writer_importance,
    writer_scores,
)


class Tiny(nn.Module):
    """Two 1x2 convs adding into one 3-channel group (a coupled group), a BN over it and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, (1, 2), bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.side = nn.Conv2d(1, 3, (1, 2), bias=False)
        self.fc = nn.Linear(3, 2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -2.0], [3.0, 0.0]]).view(3, 1, 1, 2))
            self.side.weight.copy_(torch.tensor([[1.0, -1.0], [0.0, 0.0], [0.5, 0.5]]).view(3, 1, 1, 2))
            self.bn.weight.copy_(torch.tensor([0.5, -2.0, 1.0]))
            self.fc.weight.copy_(torch.tensor([[1.0, -1.0, 2.0], [0.0, 3.0, 0.0]]))
            self.fc.bias.copy_(torch.tensor([0.1, -0.2]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.conv(x)) + self.side(x))
        return self.fc(y.mean((2, 3)))


CONV = ChannelGroup(1, "conv", 3, ("conv",), ("bn",), ("fc",))
COUPLED = ChannelGroup(2, "conv", 3, ("conv", "side"), ("bn",), ("fc",))
LINEAR = ChannelGroup(3, "fc", 2, ("fc",), (), ())


def _batches(n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(4, 1, 3, 3, generator=g), torch.randint(0, 2, (4,), generator=g)) for _ in range(n)]


@pytest.fixture(scope="module")
def resnet():
    return with_groups(seeded("resnet20"), torch.randn(1, 3, 32, 32), "resnet20")


@pytest.fixture(scope="module")
def mobilenet():
    return with_groups(seeded("mobilenetv2_cifar"), torch.randn(1, 3, 32, 32), "mobilenetv2_cifar")


@contextmanager
def zeroed(tensors: list[torch.Tensor]) -> Iterator[None]:
    """Zero (views of) weights for the duration of the block, then put them back."""
    saved = [t.detach().clone() for t in tensors]
    with torch.no_grad():
        for t in tensors:
            t.zero_()
    try:
        yield
    finally:
        with torch.no_grad():
            for t, old in zip(tensors, saved, strict=True):
                t.copy_(old)


def _close(a: torch.Tensor, b) -> None:
    assert a.dtype == torch.float64 and a.device.type == "cpu"
    torch.testing.assert_close(a, torch.as_tensor(b, dtype=torch.float64), rtol=1e-12, atol=1e-12)


# --- hand computations ------------------------------------------------------------------------------------------
def test_l1_l2_fpgm_lamp_by_hand():
    m = Tiny()
    _close(score(m, [CONV], "l1")[1], [1, 2, 3])
    _close(score(m, [CONV], "l2")[1], [1, 2, 3])
    s5, s13 = math.sqrt(5), math.sqrt(13)  # |F0-F1|, |F1-F2|; |F0-F2| = 2
    _close(score(m, [CONV], "fpgm")[1], [s5 + 2, s5 + s13, 2 + s13])
    _close(score(m, [CONV], "lamp")[1], [1 / 14, 4 / 13, 1])
    # a linear's filters are its rows
    _close(score(m, [LINEAR], "l1")[3], [4, 3])
    _close(score(m, [LINEAR], "l2")[3], [math.sqrt(6), 3])


def test_side_writer_l1_differs_from_l2():
    w = writer_scores(Tiny(), [COUPLED], "l2")
    _close(w["side"], [math.sqrt(2), 0, math.sqrt(0.5)])
    _close(writer_scores(Tiny(), [COUPLED], "l1")["side"], [2, 0, 1])


def test_coupled_group_means_writers_and_lamp_sums_energy():
    m = Tiny()
    _close(score(m, [COUPLED], "l1")[2], [(1 + 2) / 2, (2 + 0) / 2, (3 + 1) / 2])
    r2, r5, r13, rh, r25 = (math.sqrt(v) for v in (2, 5, 13, 0.5, 2.5))
    conv_fpgm = [r5 + 2, r5 + r13, 2 + r13]
    side_fpgm = [r2 + r25, r2 + rh, r25 + rh]  # side filters (1,-1), (0,0), (.5,.5)
    _close(score(m, [COUPLED], "fpgm")[2], [(a + b) / 2 for a, b in zip(conv_fpgm, side_fpgm, strict=True)])
    energy = torch.tensor([1 + 2, 4 + 0, 9 + 0.5], dtype=torch.float64)  # [3, 4, 9.5]
    _close(score(m, [COUPLED], "lamp")[2], [3 / 16.5, 4 / 13.5, 1])
    _close(score(m, [COUPLED], "lamp")[2], lamp_transform(energy))


def test_lamp_transform_values_ties_and_zeros():
    _close(lamp_transform(torch.tensor([9.0, 1.0, 4.0])), [1, 1 / 14, 4 / 13])
    _close(lamp_transform(torch.tensor([2.0, 2.0])), [1, 0.5])  # tie: the lower index ranks higher
    _close(lamp_transform(torch.zeros(3)), [1, 0, 0])
    _close(lamp_transform(torch.tensor([0.0, 5.0])), [0, 1])
    with pytest.raises(PruningError):
        lamp_transform(torch.tensor([1.0, -1.0]))


def test_bn_scale_reads_gammas_and_falls_back_to_l1():
    m = Tiny()
    _close(score(m, [CONV], "bn_scale")[1], [0.5, 2, 1])
    _close(score(m, [LINEAR], "bn_scale")[3], [4, 3])  # no norm over the head: l1
    w = writer_scores(m, [COUPLED], "bn_scale")
    _close(w["conv"], [0.5, 2, 1])  # conv's own norm
    _close(w["side"], [2, 0, 1])  # side has no norm right after it: l1


def test_taylor_matches_autograd_and_leaves_no_grad():
    m = Tiny().train()
    m.side.weight.requires_grad_(False)
    batches = _batches(3)
    running = m.bn.running_mean.clone()
    got = score(m, [COUPLED], "taylor", batches=batches, max_batches=2)[2]

    ref = Tiny().eval()
    expect = {"conv": torch.zeros(3, dtype=torch.float64), "side": torch.zeros(3, dtype=torch.float64)}
    for x, y in batches[:2]:
        loss = F.cross_entropy(ref(x), y)
        gc, gs = torch.autograd.grad(loss, [ref.conv.weight, ref.side.weight])
        expect["conv"] += (ref.conv.weight * gc).sum((1, 2, 3)).abs().double()
        expect["side"] += (ref.side.weight * gs).sum((1, 2, 3)).abs().double()
    torch.testing.assert_close(got, (expect["conv"] + expect["side"]) / 2, rtol=1e-6, atol=1e-9)
    assert got.abs().sum() > 0

    assert all(p.grad is None for p in m.parameters())
    assert m.training and m.bn.training
    assert not m.side.weight.requires_grad and m.conv.weight.requires_grad
    torch.testing.assert_close(m.bn.running_mean, running)


def test_taylor_needs_batches():
    with pytest.raises(PruningError, match="batches"):
        score(Tiny(), [CONV], "taylor")
    with pytest.raises(PruningError, match="batch"):
        score(Tiny(), [CONV], "taylor", batches=[])


def test_unknown_criterion_lists_names():
    with pytest.raises(PruningError) as err:
        score(Tiny(), [CONV], "magic")
    for name in CRITERIA:
        assert name in str(err.value)
    with pytest.raises(PruningError):
        writer_scores(Tiny(), [CONV], "magic")


# --- real networks ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("net", ["resnet", "mobilenet"])
def test_lamp_top_channel_scores_one_in_every_group(net, request):
    m, _, groups = request.getfixturevalue(net)
    scores = score(m, groups, "lamp")
    assert set(scores) == {g.id for g in groups}
    energy = writer_scores(m, groups, "lamp")
    for g in groups:
        s = scores[g.id]
        assert s.shape == (g.channels,)
        total = sum(energy[w] for w in g.writers)
        assert s[int(total.argmax())] == 1.0
        assert s.max() == 1.0 and (s[s != 1.0] < 1).all()


def test_resnet_stage_group_aggregates_its_writers(resnet):
    m, _, groups = resnet
    stage = next(g for g in groups if len(g.writers) > 1)
    assert stage.writers == ("conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2")
    mods = dict(m.named_modules())
    l1 = torch.stack([mods[w].weight.detach().double().abs().sum((1, 2, 3)) for w in stage.writers]).mean(0)
    _close(score(m, [stage], "l1")[stage.id], l1)
    energy = sum(mods[w].weight.detach().double().pow(2).sum((1, 2, 3)) for w in stage.writers)
    _close(score(m, [stage], "lamp")[stage.id], lamp_transform(energy))
    gammas = torch.stack([mods[n].weight.detach().double().abs() for n in stage.norms]).mean(0)
    _close(score(m, [stage], "bn_scale")[stage.id], gammas)
    assert writer_scores(m, [stage], "bn_scale")["layer1.1.conv2"].equal(mods["layer1.1.bn2"].weight.detach().double())


@pytest.mark.parametrize("criterion", ["l1", "l2", "lamp"])
def test_zeroed_filter_scores_lowest(criterion, resnet):
    m, _, groups = resnet
    stage = next(g for g in groups if len(g.writers) > 1)
    mods = dict(m.named_modules())
    with zeroed([mods[w].weight[5] for w in stage.writers]):
        s = score(m, [stage], criterion)[stage.id]
        assert s[5] == 0 and int(s.argmin()) == 5 and (s[torch.arange(len(s)) != 5] > 0).all()


def test_block_scores_removable_only_and_zeroed_block_last(resnet):
    m, arch, groups = resnet
    base = block_scores(m, arch, groups, "l1")
    assert set(base) == {b.name for b in arch.blocks if b.removable}
    assert "layer2.0" not in base and all(isinstance(v, float) for v in base.values())

    mods = dict(m.named_modules())
    per = writer_scores(m, groups, "l1")
    unit = {w: float(s.mean()) / mods[w].weight[0].numel() for w, s in per.items()}
    net = sum(unit.values()) / len(unit)
    assert base["layer1.0"] == pytest.approx((unit["layer1.0.conv1"] + unit["layer1.0.conv2"]) / 2 / net)

    with zeroed([mods[n].weight for n in ("layer3.1.conv1", "layer3.1.conv2")]):
        for crit in ("l1", "l2", "lamp", "fpgm"):
            blocks = block_scores(m, arch, groups, crit)
            assert min(blocks, key=blocks.get) == "layer3.1" and blocks["layer3.1"] == 0


class Inverted(nn.Module):
    """MobileNet-V2's pattern in miniature: a 1x1 expansion (2 -> 3) and a depthwise 1x2 conv write one group."""

    def __init__(self) -> None:
        super().__init__()
        self.pw = nn.Conv2d(2, 3, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(3)
        self.dw = nn.Conv2d(3, 3, (1, 2), groups=3, bias=False)
        self.bn2 = nn.BatchNorm2d(3)
        self.proj = nn.Conv2d(3, 2, 1)
        with torch.no_grad():
            self.pw.weight.copy_(torch.tensor([[3.0, 4.0], [0.0, -1.0], [-1.0, 0.0]]).view(3, 2, 1, 1))
            self.dw.weight.copy_(torch.tensor([[1.0, -1.0], [2.0, 0.0], [0.0, 0.5]]).view(3, 1, 1, 2))
            self.bn1.weight.copy_(torch.tensor([0.5, -1.0, 2.0]))
            self.bn2.weight.copy_(torch.tensor([1.0, 3.0, -0.5]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.relu(self.bn2(self.dw(torch.relu(self.bn1(self.pw(x)))))))


def test_depthwise_writer_scores_by_hand():
    m, _, groups = with_groups(Inverted().eval(), torch.randn(1, 2, 3, 3), "inverted")
    (g,) = groups
    assert g.writers == ("pw", "dw") and g.norms == ("bn1", "bn2")  # the depthwise conv writes the group too
    # filters: pw (3, 4), (0, -1), (-1, 0); dw (its one input channel by 1x2) (1, -1), (2, 0), (0, .5)
    w = writer_scores(m, groups, "l1")
    _close(w["pw"], [7, 1, 1])
    _close(w["dw"], [2, 2, 0.5])
    _close(score(m, groups, "l1")[g.id], [(7 + 2) / 2, (1 + 2) / 2, (1 + 0.5) / 2])
    _close(score(m, groups, "l2")[g.id], [(5 + math.sqrt(2)) / 2, (1 + 2) / 2, (1 + 0.5) / 2])
    # fpgm: pw distances |F0-F1| = |(3, 5)|, |F0-F2| = |(4, 4)|, |F1-F2| = |(1, -1)|;
    # dw: |(-1, -1)|, |(1, -1.5)|, |(2, -.5)|
    r34, r32, r2 = math.sqrt(34), math.sqrt(32), math.sqrt(2)
    d01, d02, d12 = math.sqrt(2), math.sqrt(3.25), math.sqrt(4.25)
    pw_fpgm, dw_fpgm = [r34 + r32, r34 + r2, r32 + r2], [d01 + d02, d01 + d12, d02 + d12]
    _close(score(m, groups, "fpgm")[g.id], [(a + b) / 2 for a, b in zip(pw_fpgm, dw_fpgm, strict=True)])
    # lamp: energies pw (25, 1, 1) + dw (2, 4, .25) = (27, 5, 1.25); ascending 1.25, 5, 27 over tails 33.25, 32, 27
    _close(score(m, groups, "lamp")[g.id], [1, 5 / 32, 1.25 / 33.25])
    _close(score(m, groups, "bn_scale")[g.id], [(0.5 + 1) / 2, (1 + 3) / 2, (2 + 0.5) / 2])
    _close(writer_scores(m, groups, "bn_scale")["dw"], [1, 3, 0.5])  # the depthwise conv's own norm, bn2
    # per weight: a depthwise filter has 1 * 1 * 2 = 2 weights, as a 1x1 filter over 2 inputs does:
    # l1 means 9/3 = 3 (pw) and 4.5/3 = 1.5 (dw), per weight 1.5 and .75, over their mean 1.125
    unit = writer_importance(m, groups, "l1")
    assert unit["pw"] == pytest.approx(1.5 / 1.125, rel=1e-12) and unit["dw"] == pytest.approx(0.75 / 1.125, rel=1e-12)
    # fpgm divides by (C - 1) * sqrt(n) = 2 * sqrt(2) for both writers
    fpgm_unit = {"pw": sum(pw_fpgm) / 3 / (2 * r2), "dw": sum(dw_fpgm) / 3 / (2 * r2)}
    mean = sum(fpgm_unit.values()) / 2
    got = writer_importance(m, groups, "fpgm")
    assert got == pytest.approx({k: v / mean for k, v in fpgm_unit.items()}, rel=1e-12)


def test_mobilenet_scores_cover_depthwise_writers(mobilenet):
    m, arch, groups = mobilenet
    mods = dict(m.named_modules())
    expansion = next(g for g in groups if len(g.writers) == 2 and mods[g.writers[0]].kernel_size == (1, 1)
                     and mods[g.writers[1]].groups > 1)  # an inverted residual's expansion and depthwise convs
    pw, dw = (mods[w] for w in expansion.writers)
    assert dw.groups == dw.in_channels == dw.out_channels == expansion.channels
    pw_l1 = pw.weight.detach().double().abs().sum((1, 2, 3))  # (C, C_in, 1, 1) filters
    dw_l1 = dw.weight.detach().double().abs().sum((1, 2, 3))  # (C, 1, 3, 3) filters: 9 weights each
    _close(score(m, [expansion], "l1")[expansion.id], (pw_l1 + dw_l1) / 2)
    _close(writer_scores(m, [expansion], "l2")[expansion.writers[1]],
           dw.weight.detach().double().flatten(1).norm(dim=1))
    blocks = block_scores(m, arch, groups, "l2")
    assert set(blocks) == {b.name for b in arch.blocks if b.removable}


# --- dynamic -----------------------------------------------------------------------------------------------------
def test_dynamic_turning_filter_beats_fixed_one():
    conv = nn.Conv2d(1, 4, (1, 4), bias=False)
    model = nn.Sequential(conv)
    group = ChannelGroup(0, "0", 4, ("0",), (), ())
    dyn = FilterDynamics()
    with torch.no_grad():
        conv.weight.copy_(torch.eye(4).view(4, 1, 1, 4))
    dyn.record(model)
    with pytest.raises(PruningError, match="2"):
        dyn.scores([group])
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = -1.0  # filter 0 turns; filters 1-3 stay
    dyn.record(model)
    s = dyn.scores([group])[0]
    # centred: filter 0 goes (.75,-.25,-.25,-.25) -> (-.75,-.25,-.25,-.25): acs = -0.5; filter 1: acs = 0.625/0.75
    _close(s, [1 + 1.5 / 2, 1 + (1 - 0.625 / 0.75) / 2, 1 + (1 - 0.625 / 0.75) / 2, 1 + (1 - 0.625 / 0.75) / 2])
    assert int(s.argmax()) == 0


def test_dynamic_dead_filter_scores_zero_and_still_filters_keep_magnitude():
    conv = nn.Conv2d(1, 3, (1, 2), bias=False)
    model = nn.Sequential(conv)
    group = ChannelGroup(0, "0", 3, ("0",), (), ())
    dyn = FilterDynamics()
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]]).view(3, 1, 1, 2))
    for _ in range(3):
        dyn.record(model)  # no change: acs = 1, score = relative final norm
    norms = torch.tensor([math.sqrt(5), math.sqrt(10), math.sqrt(0.5)], dtype=torch.float64)
    _close(dyn.scores([group])[0], norms / norms.mean())
    with torch.no_grad():
        conv.weight[2].zero_()
    dyn.record(model)
    s = dyn.scores([group])[0]
    assert s[2] == 0 and int(s.argmin()) == 2


# --- selection -----------------------------------------------------------------------------------------------------
def test_keep_top_order_and_ties():
    s = torch.tensor([0.5, 2.0, 2.0, 1.0, 3.0])
    assert keep_top(s, 3) == [1, 2, 4]
    assert keep_top(s, 2) == [1, 4]  # tie between 1 and 2: the lower index wins
    assert keep_top(s, 0) == []
    assert keep_top(s, 5) == [0, 1, 2, 3, 4]
    with pytest.raises(PruningError):
        keep_top(s, 6)


def test_a_registered_criterion_scores_through_score_and_block_scores():
    from pruners.importance import CRITERIA, Criterion, register_criterion

    class LastFirst(Criterion):
        """Later filters matter less: filter c of n scores n - c."""

        name = "last_first"

        def filter_scores(self, filters: torch.Tensor) -> torch.Tensor:
            return torch.arange(filters.shape[0], 0, -1, dtype=torch.float64)

    register_criterion(LastFirst())
    try:
        _close(score(Tiny(), [COUPLED], "last_first")[2], [3, 2, 1])  # the mean of two writers' identical scores
        assert keep_top(score(Tiny(), [COUPLED], "last_first")[2], 1) == [0]
    finally:
        CRITERIA.pop("last_first")
    with pytest.raises(PruningError, match="unknown importance criterion 'last_first'"):
        score(Tiny(), [COUPLED], "last_first")
