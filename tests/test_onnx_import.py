"""ONNX files as networks: the exported zoo networks come back with the same layers, outputs and predictions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from latbench.arch import trace
from latbench.backends.export import export_onnx
from latbench.cli import main
from latbench.errors import ModelLoadError
from latbench.models import build_model
from latbench.models.family import family
from latbench.models.onnx_import import module_from_onnx, onnx_input_shape

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))

pytestmark = pytest.mark.usefixtures("one_thread")


def _weighted(arch):
    return [(s.op, s.in_channels, s.out_channels, s.kernel, s.stride, s.padding, s.groups, s.in_hw)
            for _, s in arch.layer_specs() if s.op in ("conv", "dwconv", "linear")]


def _export(model: nn.Module, path) -> str:
    path.write_bytes(export_onnx(model.eval(), X[:1]))
    return str(path)


@pytest.mark.parametrize("name", ["resnet20", "mobilenetv2_cifar", "vgg16"])
def test_an_exported_network_comes_back_with_its_layers_outputs_and_groups(name, tmp_path):
    model = build_model(name)
    net = module_from_onnx(_export(model, tmp_path / f"{name}.onnx"))
    with torch.no_grad():
        torch.testing.assert_close(net(X), model(X), rtol=1e-4, atol=1e-5)
    got, want = trace(net, X[:1], name), trace(model, X[:1], name)
    assert _weighted(got) == _weighted(want)
    assert got.flops() == want.flops()
    assert [g.channels for g in got.prunable_groups] == [g.channels for g in want.prunable_groups]
    # a folded batch norm comes back as conv + batch norm: the same layer specs a profile measured
    assert [s.epilogue for _, s in got.layer_specs() if s.op == "conv"] == \
        [s.epilogue for _, s in want.layer_specs() if s.op == "conv"]


def test_an_onnx_network_is_a_family_with_its_input_shape_and_resizable(tmp_path):
    path = _export(build_model("resnet20"), tmp_path / "r.onnx")
    assert onnx_input_shape(path) == (3, 32, 32)
    fam = family(path)
    assert fam.kind == "onnx" and fam.input_shape == (3, 32, 32)
    arch = fam.trace()
    narrow = arch.with_widths({g.id: max(1, g.channels // 2) for g in arch.prunable_groups})
    built = fam.build(narrow)
    assert trace(built, X[:1], path).effective() == narrow.effective()


class Upsampling(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.norm = nn.LayerNorm([8, 64, 64])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(nn.functional.interpolate(self.conv(x), scale_factor=2.0))


def test_unsupported_ops_are_named_in_one_line(tmp_path):
    path = _export(Upsampling(), tmp_path / "u.onnx")
    with pytest.raises(ModelLoadError) as info:
        module_from_onnx(path)
    message = str(info.value)
    assert "Resize" in message and "LayerNormalization" in message and "\n" not in message
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="not a readable ONNX model"):
        module_from_onnx(tmp_path / "bad.onnx")


def test_inspect_and_predict_take_an_onnx_file_and_price_it_as_its_source(capsys, tmp_path, shipped_profile):
    path = _export(build_model("resnet56"), tmp_path / "resnet56.onnx")
    assert main(["inspect", path]) == 0
    assert "251.5" in capsys.readouterr().out  # ResNet-56's MFLOPs, as the zoo network has them
    profile = str(shipped_profile())
    assert main(["predict", "--model", path, "--profile", profile, "--predictor", "lut"]) == 0
    onnx_line = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("lut")]
    assert main(["predict", "--model", "resnet56", "--profile", profile, "--predictor", "lut"]) == 0
    zoo_line = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("lut")]
    assert onnx_line and onnx_line == zoo_line
