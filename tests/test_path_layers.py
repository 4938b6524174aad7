"""Removing single-path conv layers (VGG): which layers qualify, exactness, and channel reconciliation."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from latbench.arch import trace
from latbench.models import build_model
from pruners.errors import SurgeryError
from pruners.path_layers import path_layers
from pruners.surgery import Decision, apply


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    model = build_model("vgg16")
    x = torch.randn(2, 3, 32, 32)
    return model, trace(model, x[:1], "vgg16"), x


def test_candidates_are_the_stride_one_convs(vgg):
    model, arch, _ = vgg
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert path_layers(arch) == convs  # VGG: every conv keeps the size; pools do the downsampling
    resnet = build_model("resnet20")
    r_arch = trace(resnet, torch.zeros(1, 3, 32, 32), "resnet20")
    assert path_layers(r_arch) == []  # the stem writes the residual stage; the rest sit in blocks


def test_removing_an_identity_layer_changes_nothing(vgg):
    model, arch, x = vgg
    model = copy.deepcopy(model).eval()
    conv, bn = model.features[3], model.features[4]
    with torch.no_grad():  # features.3 computes the identity on its (non-negative, post-ReLU) input
        conv.weight.zero_()
        for c in range(conv.out_channels):
            conv.weight[c, c, 1, 1] = 1.0
        bn.weight.fill_(1.0)
        bn.bias.zero_()
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
    pruned, pruned_arch = apply(model, arch, Decision(remove_layers=("features.3",)), x[:1])
    assert torch.allclose(pruned(x), model(x), atol=1e-5)
    assert "features.3" not in {layer.name for layer in pruned_arch.base.layers}
    assert len(pruned_arch.base.layers) == len(arch.base.layers) - 1


def test_readers_take_the_removed_layers_input_width(vgg):
    model, arch, x = vgg
    narrow = Decision({"features.3": range(20)}, (), ("features.7",))  # 20 channels reach features.10 (was 128)
    pruned, _ = apply(model, arch, narrow, x[:1])
    reader = pruned.features[10]
    assert reader.in_channels == 20 and reader.weight.shape[1] == 20
    norms = model.features[10].weight.abs().sum((0, 2, 3))
    kept = torch.sort(torch.topk(norms, 20).indices).values
    assert torch.equal(reader.weight, model.features[10].weight[:, kept])  # the strongest input slices
    wide = apply(model, arch, Decision(remove_layers=("features.0",)), x[:1])[0]
    first = wide.features[3]  # now reads the 3 image channels: its 3 strongest input slices of 64
    top3 = torch.sort(torch.topk(model.features[3].weight.abs().sum((0, 2, 3)), 3).indices).values
    assert first.in_channels == 3 and torch.equal(first.weight, model.features[3].weight[:, top3])


def test_adjacent_layers_and_padding(vgg):
    model, arch, x = vgg
    d = Decision({"features.7": range(50)}, (), ("features.14", "features.10"))
    pruned, pruned_arch = apply(model, arch, d, x[:1])
    assert {"features.10", "features.14"}.isdisjoint(layer.name for layer in pruned_arch.base.layers)
    assert pruned.features[17].in_channels == 50
    assert pruned(x).shape == (2, 10)
    grow = Decision({"features.7": range(20)}, (), ("features.7",))  # 64 channels reach a reader of 20
    reader = apply(model, arch, grow, x[:1])[0].features[10]
    assert reader.in_channels == 64
    assert torch.equal(reader.weight[:, :20], model.features[10].weight[:, :20])
    assert not reader.weight[:, 20:].any()  # new input slices start at zero


def test_refuses_layers_that_are_not_on_a_single_path(vgg):
    model, arch, x = vgg
    with pytest.raises(SurgeryError, match="cannot be removed"):
        apply(model, arch, Decision(remove_layers=("classifier",)), x[:1])
    resnet = build_model("resnet20")
    r_arch = trace(resnet, x[:1], "resnet20")
    with pytest.raises(SurgeryError, match=r"layer1\.0\.conv1"):
        apply(resnet, r_arch, Decision(remove_layers=("layer1.0.conv1",)), x[:1])
