"""The model zoo: shapes, FX traceability, layer conventions, parameter counts, per-layer widths, name resolution."""

from __future__ import annotations

import operator
import sys
from functools import cache

import pytest
import torch
import torch.fx
from torch import nn

from latbench.errors import UnknownModelError
from latbench.models import REGISTRY, ModelEntry, build_model, get_entry, model_names, resolve_model

NAMES = model_names()
EXPECTED = {"smallconv", "resnet20", "resnet32", "resnet56", "resnet110", "vgg16", "vgg19", "mobilenetv1",
            "mobilenetv1_cifar", "mobilenetv2", "mobilenetv2_cifar", "resnet18", "resnet50"}


@cache
def _model(name: str) -> nn.Module:
    torch.manual_seed(0)
    return build_model(name)


def _test_shape(entry: ModelEntry, batch: int = 2) -> tuple[int, ...]:
    """The registered shape, or 64x64 for ImageNet nets (they end with adaptive pooling) to keep the suite fast."""
    c, h, w = entry.input_shape
    return (batch, c, min(h, 64), min(w, 64))


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _conv(model: nn.Module, path: str) -> nn.Conv2d:
    module = model.get_submodule(path)
    assert isinstance(module, nn.Conv2d)
    return module


def _free_convs(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups == 1]


def test_registry_holds_every_model():
    assert set(REGISTRY) == EXPECTED
    for name in NAMES:
        entry = get_entry(name)
        assert len(entry.input_shape) == 3 and entry.num_classes in (10, 1000) and entry.description
        assert "\n" not in entry.description
    assert get_entry("resnet18").input_shape == (3, 224, 224) and get_entry("resnet18").num_classes == 1000
    assert get_entry("resnet56").input_shape == (3, 32, 32) and get_entry("resnet56").num_classes == 10


@pytest.mark.parametrize("name", NAMES)
def test_forward_gives_batch_by_classes(name):
    entry = get_entry(name)
    model = _model(name)
    assert not model.training
    with torch.no_grad():
        out = model(torch.randn(*_test_shape(entry)))
    assert out.shape == (2, entry.num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_fx_trace_and_layer_conventions(name):
    model = _model(name)
    gm = torch.fx.symbolic_trace(model)
    modules = dict(gm.named_modules())
    x = torch.randn(*_test_shape(get_entry(name)))
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x))
    convs = 0
    for node in gm.graph.nodes:
        if node.op == "call_function":
            assert node.target not in (torch.relu, nn.functional.relu, nn.functional.relu6), node.format_node()
        if node.op == "call_module" and isinstance(modules[node.target], nn.Conv2d):
            convs += 1
            conv = modules[node.target]
            assert conv.bias is None, node.target
            users = list(node.users)
            assert len(users) == 1 and users[0].op == "call_module", node.target
            bn = modules[users[0].target]
            assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == conv.out_channels, node.target
    assert convs == sum(isinstance(m, nn.Conv2d) for m in model.modules())
    adds = [n for n in gm.graph.nodes if n.op == "call_function" and n.target is operator.add]
    if name.startswith(("resnet", "mobilenetv2")):
        assert adds, "residual adds should appear as operator.add"


def _pooled_shape(name: str, size: int) -> tuple[int, ...]:
    """The shape of the feature map that reaches global pooling (for VGG: the output of ``features``)."""
    model, seen = _model(name), []
    if name.startswith("vgg"):
        hook = model.features.register_forward_hook(lambda _m, _inp, out: seen.append(tuple(out.shape)))
    else:
        hook = model.avgpool.register_forward_pre_hook(lambda _m, inp: seen.append(tuple(inp[0].shape)))
    try:
        with torch.no_grad():
            model(torch.randn(1, 3, size, size))
    finally:
        hook.remove()
    return seen[0]


@pytest.mark.parametrize(("name", "size", "shape"), [
    ("resnet18", 224, (1, 512, 7, 7)),
    ("resnet50", 224, (1, 2048, 7, 7)),
    ("mobilenetv1", 224, (1, 1024, 7, 7)),
    ("mobilenetv2", 224, (1, 1280, 7, 7)),
    ("mobilenetv1_cifar", 32, (1, 1024, 8, 8)),
    ("mobilenetv2_cifar", 32, (1, 1280, 4, 4)),
    ("resnet56", 32, (1, 64, 8, 8)),
    ("vgg16", 32, (1, 512, 1, 1)),
    ("vgg19", 32, (1, 512, 1, 1)),
])
def test_final_feature_map(name, size, shape):
    assert _pooled_shape(name, size) == shape


def _cifar_resnet_params(depth: int, num_classes: int = 10) -> int:
    """Option-B CIFAR ResNet parameter count, from the architecture."""
    n = (depth - 2) // 6
    total = 3 * 16 * 9 + 2 * 16  # stem conv + BN
    c_in = 16
    for i, c in enumerate((16, 32, 64)):
        for j in range(n):
            cin = c_in if j == 0 else c
            total += cin * c * 9 + 2 * c + c * c * 9 + 2 * c
            if j == 0 and (i > 0 or c_in != c):
                total += c_in * c + 2 * c  # 1x1 projection + BN
        c_in = c
    return total + 64 * num_classes + num_classes


def _vgg_params(cfg: list[int | str], num_classes: int = 10) -> int:
    total, c = 0, 3
    for v in cfg:
        if v != "M":
            total += c * int(v) * 9 + 2 * int(v)  # bias-free conv + BN
            c = int(v)
    return total + c * num_classes + num_classes


def _mobilenetv1_params(num_classes: int = 1000) -> int:
    """Stem 3x3 conv (32) + BN, 13 depthwise 3x3 + BN / pointwise 1x1 + BN pairs (Howard et al. 2017, table 1),
    linear head with bias."""
    pointwise = [64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    total, c = 3 * 32 * 9 + 2 * 32, 32
    for out in pointwise:
        total += c * 9 + 2 * c + c * out + 2 * out
        c = out
    return total + c * num_classes + num_classes


def test_parameter_counts():
    assert _params(_model("resnet18")) == 11_689_512
    assert _params(_model("resnet50")) == 25_557_032
    assert _params(_model("mobilenetv2")) == 3_504_872
    assert _mobilenetv1_params() == 4_231_976  # the paper's 4.2M; Keras' MobileNet(alpha=1) trainable count
    assert _params(_model("mobilenetv1")) == 4_231_976
    assert _mobilenetv1_params(10) == 3_217_226  # the same body (strides add no parameter), a 10-class head
    assert _params(_model("mobilenetv1_cifar")) == 3_217_226
    vgg16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    assert _vgg_params(vgg16) == 14_724_042
    assert _params(_model("vgg16")) == _vgg_params(vgg16)
    assert _cifar_resnet_params(56) == 855_770
    assert _params(_model("resnet56")) == _cifar_resnet_params(56)
    for depth in (20, 32, 110):
        assert _params(_model(f"resnet{depth}")) == _cifar_resnet_params(depth)


def test_option_b_shortcuts():
    model = _model("resnet56")
    assert model.layer1[0].downsample is None
    for stage in (model.layer2, model.layer3):
        down = stage[0].downsample
        assert isinstance(down, nn.Sequential) and len(down) == 2
        assert isinstance(down[0], nn.Conv2d) and isinstance(down[1], nn.BatchNorm2d)
        assert down[0].kernel_size == (1, 1) and down[0].stride == (2, 2)
        assert all(block.downsample is None for block in stage[1:])


def test_torchvision_module_names():
    names = dict(_model("resnet50").named_modules())
    for path in ("conv1", "bn1", "relu", "maxpool", "avgpool", "fc", "layer1.0.conv3", "layer1.0.bn3",
                 "layer1.0.downsample.0", "layer1.0.downsample.1", "layer4.2.relu"):
        assert path in names, path
    assert _conv(_model("resnet50"), "layer2.0.conv2").stride == (2, 2)  # v1.5
    assert _conv(_model("resnet50"), "layer2.0.conv1").stride == (1, 1)
    assert "layer1.0.downsample" not in dict(_model("resnet18").named_modules())


def test_channels_override_resnet56():
    model = build_model("resnet56", channels={"layer1.0.conv1": 7})
    assert _conv(model, "layer1.0.conv1").out_channels == 7
    assert model.layer1[0].bn1.num_features == 7
    assert _conv(model, "layer1.0.conv2").in_channels == 7
    assert _conv(model, "layer1.0.conv2").out_channels == 16
    assert _params(model) < _params(_model("resnet56"))
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_channels_override_mobilenetv2_keeps_depthwise_tied():
    model = build_model("mobilenetv2", channels={"features.2.conv.0.0": 50})
    assert _conv(model, "features.2.conv.0.0").out_channels == 50
    dw = _conv(model, "features.2.conv.1.0")
    assert dw.groups == dw.in_channels == dw.out_channels == 50
    assert model.get_submodule("features.2.conv.1.1").num_features == 50
    assert _conv(model, "features.2.conv.2").in_channels == 50
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_channels_override_feeds_following_layers():
    vgg = build_model("vgg16", channels={"features.0": 10, "features.40": 100})
    assert _conv(vgg, "features.3").in_channels == 10
    assert vgg.classifier.in_features == 100
    r18 = build_model("resnet18", channels={"conv1": 32, "layer1.0.conv2": 32, "layer1.1.conv2": 32,
                                            "layer2.0.downsample.0": 96, "layer2.0.conv2": 96, "layer2.1.conv2": 96})
    assert _conv(r18, "layer1.0.conv1").in_channels == 32
    assert _conv(r18, "layer2.0.conv1").in_channels == 32
    assert _conv(r18, "layer2.0.downsample.0").in_channels == 32
    assert _conv(r18, "layer2.1.conv1").in_channels == 96
    assert _conv(r18, "layer3.0.conv1").in_channels == _conv(r18, "layer3.0.downsample.0").in_channels == 96
    with torch.no_grad():
        assert r18(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
    mv2 = build_model("mobilenetv2", channels={"features.18.0": 640})
    assert mv2.classifier[1].in_features == 640


@pytest.mark.parametrize("name", NAMES)
def test_every_free_conv_is_a_key(name):
    """Setting every non-depthwise conv to one width builds, runs, and ties depthwise convs and BNs to it."""
    free = _free_convs(_model(name))
    model = build_model(name, channels=dict.fromkeys(free, 4))
    for path, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            assert m.out_channels == 4, path
            assert m.in_channels == (3 if path in ("conv1", "features.0", "features.0.0") else 4), path
        if isinstance(m, nn.BatchNorm2d):
            assert m.num_features == 4, path
    with torch.no_grad():
        assert model(torch.randn(*_test_shape(get_entry(name), batch=1))).shape == (1, get_entry(name).num_classes)


def test_bad_channel_keys_are_rejected():
    with pytest.raises(ValueError, match=r"layer9\.0\.conv1"):
        build_model("resnet20", channels={"layer9.0.conv1": 8})
    with pytest.raises(ValueError, match=r"features\.1\.dw\.0"):
        build_model("mobilenetv1", channels={"features.1.dw.0": 8})  # depthwise convs follow their input
    with pytest.raises(ValueError, match="at least 1"):
        build_model("vgg16", channels={"features.0": 0})
    with pytest.raises(ValueError, match="integer"):
        build_model("vgg16", channels={"features.0": 2.5})


def test_num_classes_is_passed_through():
    with torch.no_grad():
        assert build_model("resnet18", num_classes=7)(torch.randn(1, 3, 64, 64)).shape == (1, 7)
        assert build_model("vgg19", num_classes=100)(torch.randn(1, 3, 32, 32)).shape == (1, 100)


def test_resolve_model():
    assert isinstance(resolve_model("resnet20"), nn.Module)
    with pytest.raises(UnknownModelError) as info:
        resolve_model("resnet9000")
    message = str(info.value)
    assert "unknown model 'resnet9000'" in message and all(n in message for n in NAMES)


def test_torchvision_missing_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # as if not installed, whatever this machine has
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(UnknownModelError, match="torchvision is not installed") as info:
        resolve_model("torchvision:resnet18")
    assert "\n" not in str(info.value)
