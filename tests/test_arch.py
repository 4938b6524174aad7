"""Tracing, channel groups, blocks, candidates, FLOPs/params accounting and JSON of ``Arch``."""

import random

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from latbench.arch import Arch, ArchError, UnsupportedLayerError, trace
from latbench.arch.table import layer_table
from latbench.models import REGISTRY, build_model

ZOO = sorted(REGISTRY)


def example(name, batch=1):
    return torch.randn(batch, *REGISTRY[name].input_shape, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def traced():
    cache = {}

    def get(name):
        if name not in cache:
            model = build_model(name)
            cache[name] = (model, trace(model, example(name), name))
        return cache[name]

    return get


@pytest.mark.parametrize("name", ZOO)
def test_flops_and_params_match_torch(traced, name):
    model, arch = traced(name)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(example(name))
    assert arch.flops() == counter.get_total_flops()
    assert arch.macs() * 2 == arch.flops()
    assert arch.params() == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ZOO)
def test_rebuilt_from_widths_runs_and_traces_to_the_described_arch(traced, name):
    _, arch = traced(name)
    rng = random.Random(name)
    widths = {g.id: max(1, int(g.channels * rng.uniform(0.3, 1.0))) for g in arch.prunable_groups}
    candidate = arch.with_widths(widths)
    rebuilt = build_model(name, channels=candidate.channels())
    x = example(name)
    with torch.no_grad():
        assert rebuilt(x).shape == (1, REGISTRY[name].num_classes)
    assert trace(rebuilt, x, name).effective() == candidate.effective()


@pytest.mark.parametrize("name", ["resnet20", "resnet56", "resnet18", "resnet50"])
def test_residual_stage_is_one_group_and_projection_blocks_are_fixed(traced, name):
    _, arch = traced(name)
    out_group = {layer.name: layer.out_groups for layer in arch.base.layers}
    blocks = {b.name: b for b in arch.blocks}
    last_conv = "conv3" if name == "resnet50" else "conv2"
    for stage in ("layer2", "layer3"):
        members = [n for n in out_group if n.startswith(f"{stage}.") and n.endswith(last_conv)]
        members.append(f"{stage}.0.downsample.0")
        assert len({out_group[n] for n in members}) == 1, members
        assert not blocks[f"{stage}.0"].removable and "projection" in blocks[f"{stage}.0"].reason
        assert blocks[f"{stage}.1"].removable
    inner = {out_group[f"layer2.{i}.conv1"] for i in range(2)}
    assert len(inner) == 2  # each block's inner width is its own group


@pytest.mark.parametrize("name", ["mobilenetv1", "mobilenetv2", "mobilenetv2_cifar"])
def test_depthwise_convs_are_tied_to_their_input(traced, name):
    _, arch = traced(name)
    layers = arch.base.layers
    dws = [i for i, layer in enumerate(layers) if layer.spec.op == "dwconv"]
    assert dws
    for i in dws:
        dw = layers[i]
        assert dw.in_groups == dw.out_groups
        producer = next(p for p in reversed(layers[:i]) if p.spec.op in ("conv", "dwconv"))
        assert producer.out_groups == dw.in_groups
    # pruning the group halves the depthwise conv and keeps it depthwise
    g = layers[dws[1]].in_groups[0]
    small = arch.with_widths({g: 8})
    spec = small.spec(layers[dws[1]])
    assert spec.in_channels == spec.out_channels == spec.groups == 8


def test_mobilenetv2_blocks_with_skip_are_removable(traced):
    _, arch = traced("mobilenetv2")
    removable = [b for b in arch.blocks if b.removable]
    assert len(removable) == 10  # 17 inverted residuals, 10 of them with stride 1 and equal widths


def test_fused_epilogues(traced):
    _, arch = traced("resnet20")
    by_name = {layer.name: layer.spec for layer in arch.base.layers}
    assert by_name["layer1.0.conv1"].epilogue == ("bn", "relu")
    assert by_name["layer1.0.conv2"].epilogue == ("bn",)
    assert by_name["layer2.0.add"].op == "add"
    adds = [s for s in by_name.values() if s.op == "add"]
    assert len(adds) == 9 and all(s.epilogue == ("relu",) for s in adds)
    assert not any(s.op in ("bn", "act") for s in by_name.values())


def test_candidates_and_their_errors(traced):
    _, arch = traced("resnet56")
    g = arch.base.group_by_key["layer1.0.conv1"]
    small = arch.with_widths({"layer1.0.conv1": 8})
    assert small.widths[g] == 8 and arch.widths[g] == 16  # values, not views
    assert small.flops() < arch.flops() and small.signature() != arch.signature()
    assert arch.with_widths({g: 16}).signature() == arch.signature()
    with pytest.raises(ArchError, match="no channel group or layer named 'nope'"):
        arch.with_widths({"nope": 3})
    with pytest.raises(ArchError, match="positive integer"):
        arch.with_widths({g: 0})
    with pytest.raises(ArchError, match="breaks a coupling"):
        arch.with_widths({"layer1.0.conv2": 8, "layer1.1.conv2": 12})
    fixed = next(gr for gr in arch.groups if gr.fixed and gr.name != "input")
    with pytest.raises(ArchError, match="fixed"):
        arch.with_widths({fixed.id: fixed.channels + 1})


def test_removing_blocks(traced):
    _, arch = traced("resnet56")
    shorter = arch.without_blocks(["layer1.3", "layer3.5"])
    gone = {layer.name for layer in arch.active_layers()} - {layer.name for layer in shorter.active_layers()}
    assert gone == {"layer1.3.conv1", "layer1.3.conv2", "layer3.5.conv1", "layer3.5.conv2"} | {
        layer.name for layer in arch.base.layers if layer.block in ("layer1.3", "layer3.5") and layer.spec.op == "add"}
    assert shorter.flops() < arch.flops()
    with pytest.raises(ArchError, match="cannot be removed"):
        arch.without_blocks(["layer2.0"])
    with pytest.raises(ArchError, match="no block named"):
        arch.without_blocks(["layer9.9"])


@pytest.mark.parametrize("name", ["resnet56", "mobilenetv2"])
def test_json_round_trip(traced, name, tmp_path):
    _, arch = traced(name)
    candidate = arch.with_widths({g.id: max(1, g.channels // 2) for g in arch.prunable_groups[:5]})
    if any(b.removable for b in arch.blocks):
        candidate = candidate.without_blocks([next(b.name for b in arch.blocks if b.removable)])
    path = tmp_path / "arch.json"
    candidate.to_json(path)
    back = Arch.from_json(path)
    assert back == candidate
    assert back.signature() == candidate.signature()
    assert back.effective() == candidate.effective()


def test_signature_is_stable_across_traces():
    a = trace(build_model("resnet20"), example("resnet20"), "resnet20")
    b = trace(build_model("resnet20"), example("resnet20"), "resnet20")
    assert a.signature() == b.signature()


def test_layer_table_shares(traced):
    _, arch = traced("vgg16")
    df = layer_table(arch)
    assert df["flops_share"].sum() == pytest.approx(1.0)
    assert df["flops_cum_share"].iloc[-1] == pytest.approx(1.0)
    assert df["params"].sum() == arch.params()
    assert (df["flops_cum_share"].diff().dropna() >= 0).all()
    assert df.loc[df["op"] == "maxpool", "flops"].eq(0).all()


class Branchy(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 4, 1)
        self.merge = nn.Conv2d(12, 6, 1)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x):
        y = self.merge(torch.cat([self.a(x), self.b(x)], dim=1))
        return self.fc(torch.flatten(y, 1))


def test_concatenation_composes_groups_and_flatten_scales_linear():
    arch = trace(Branchy(), torch.randn(1, 3, 4, 4))
    merge = next(layer for layer in arch.base.layers if layer.name == "merge")
    assert len(merge.in_groups) == 2
    smaller = arch.with_widths({"a": 3})
    assert smaller.spec(merge).in_channels == 7
    fc = next(layer for layer in arch.base.layers if layer.name == "fc")
    assert fc.spec.in_mult == 16 and fc.spec.params() == 6 * 16 * 5 + 5


class WithLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Upsample(scale_factor=2))

    def forward(self, x):
        return self.body(x)


def test_unsupported_module_is_named_with_the_supported_list():
    with pytest.raises(UnsupportedLayerError) as err:
        trace(WithLSTM(), torch.randn(1, 3, 8, 8))
    msg = str(err.value)
    assert "body.1" in msg and "Upsample" in msg and "supported:" in msg and "\n" not in msg


class Dynamic(nn.Module):
    def forward(self, x):
        if x.sum() > 0:
            return x
        return -x


def test_untraceable_module_is_one_line():
    with pytest.raises(UnsupportedLayerError, match=r"cannot trace Dynamic with torch\.fx"):
        trace(Dynamic(), torch.randn(1, 3, 8, 8))
