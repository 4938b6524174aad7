"""The command line: readable output on success, one line and exit code 2 on bad input."""

import pytest
import torch

from latbench import models
from latbench.backends.export import export_onnx
from latbench.cli import main
from latbench.errors import ExportError
from latbench.measure import Measurement


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *needles):
    assert code == 2
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0]


def test_measure_prints_a_table_and_writes_json(capsys, tmp_path):
    out_json = tmp_path / "new" / "folder" / "m.json"
    code, out, _ = run(capsys, "measure", "--model", "smallconv", "--threads", "1", "--budget", "2",
                       "--target-ci", "0.05", "--json", str(out_json))
    assert code == 0
    assert "median" in out and "95% CI of median" in out and "onnxruntime" in out
    m = Measurement.from_json(out_json)
    assert m.conditions["backend"] == "onnxruntime" and m.conditions["threads"] == 1 and m.median_us > 0


def test_measure_an_onnx_file_with_layer_table(capsys, tmp_path):
    path = tmp_path / "net.onnx"
    path.write_bytes(export_onnx(models.build_model("smallconv"), torch.randn(1, 3, 32, 32)))
    code, out, _ = run(capsys, "measure", "--onnx", str(path), "--budget", "1", "--target-ci", "0.05", "--layers", "3")
    assert code == 0 and "per-layer times" in out and "Conv" in out


def test_backends_json_lists_every_backend(capsys):
    import json

    code, out, _ = run(capsys, "backends", "--json")
    assert code == 0
    names = {r["backend"] for r in json.loads(out)}
    assert names == {"onnxruntime", "torch", "tensorrt"}


def test_unknown_backend(capsys):
    code, _, err = run(capsys, "measure", "--backend", "tvm")
    assert_one_line_error(code, err, "unknown backend 'tvm'", "onnxruntime")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_backend_says_what_is_missing(capsys):
    code, _, err = run(capsys, "measure", "--backend", "tensorrt")
    assert_one_line_error(code, err, "unavailable", "CUDA")
    code, _, err = run(capsys, "measure", "--backend", "torch", "--device", "cuda")
    assert_one_line_error(code, err, "unavailable", "CUDA")


@pytest.mark.parametrize("shape", ["3xax32", "0x32x32", "3x32", "", "1x2x3x4x5x6"])
def test_malformed_input_shape(capsys, shape):
    code, _, err = run(capsys, "measure", "--input-shape", shape, "--budget", "1")
    assert code == 2 and "Traceback" not in err and "shape" in err


def test_input_shape_that_contradicts_batch(capsys):
    code, _, err = run(capsys, "measure", "--input-shape", "2x3x32x32", "--batch", "4")
    assert_one_line_error(code, err, "--batch 4 contradicts")


def test_input_shape_the_network_cannot_take(capsys):
    code, _, err = run(capsys, "measure", "--input-shape", "5x32x32", "--budget", "1")
    assert_one_line_error(code, err, "SmallConvNet does not run on input [1, 5, 32, 32]")


def test_missing_and_corrupt_onnx_files(capsys, tmp_path):
    code, _, err = run(capsys, "measure", "--onnx", str(tmp_path / "nope.onnx"))
    assert_one_line_error(code, err, "not found", "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00not an onnx model at all")
    code, _, err = run(capsys, "measure", "--onnx", str(bad))
    assert_one_line_error(code, err, "cannot read ONNX file", "bad.onnx")


def test_onnx_file_with_wrong_input_shape(capsys, tmp_path):
    path = tmp_path / "net.onnx"
    path.write_bytes(export_onnx(models.build_model("smallconv"), torch.randn(1, 3, 32, 32)))
    code, _, err = run(capsys, "measure", "--onnx", str(path), "--input-shape", "1x3x64x64")
    assert_one_line_error(code, err, "does not match the model's input")


class Unexportable(torch.nn.Module):
    def forward(self, x):
        return torch.special.bessel_j0(x)  # no ONNX translation exists


def test_network_whose_export_fails(capfd, monkeypatch):
    with pytest.raises(ExportError, match="cannot export Unexportable to ONNX"):
        export_onnx(Unexportable(), torch.randn(1, 3, 8, 8))
    entry = models.ModelEntry(lambda: Unexportable(), (3, 8, 8), "test")
    monkeypatch.setitem(models.REGISTRY, "unexportable", entry)
    code = main(["measure", "--model", "unexportable"])
    out, err = capfd.readouterr()  # file-descriptor level: native prints would show here
    assert_one_line_error(code, err, "cannot export Unexportable to ONNX", "bessel_j0")
    assert "graph" not in out


def test_unknown_model_lists_the_registry(capsys):
    code, _, err = run(capsys, "measure", "--model", "resnet9000")
    assert_one_line_error(code, err, "unknown model 'resnet9000'", "smallconv")


def test_bad_backend_options_are_one_line(capsys):
    code, _, err = run(capsys, "measure", "--precision", "int3")
    assert_one_line_error(code, err, "supports precisions fp32, not 'int3'")
    code, _, err = run(capsys, "measure", "--threads", "0")
    assert_one_line_error(code, err, "--threads: expected an integer >= 1, got '0'")
    code, _, err = run(capsys, "measure", "--cuda-graph")
    assert_one_line_error(code, err, "'onnxruntime' does not support option(s): cuda_graph")
    code, _, err = run(capsys, "measure", "--device", "gpu")
    assert_one_line_error(code, err, "unknown device 'gpu'")
    code, _, err = run(capsys, "measure", "--compile")
    assert_one_line_error(code, err, "'onnxruntime' does not support option(s): compile")
    code, _, err = run(capsys, "measure", "--backend", "torch", "--compile", "--layers", "3")
    assert_one_line_error(code, err, "--layers needs an eager engine")


def test_unwritable_json_is_refused_before_measuring(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code, out, err = run(capsys, "measure", "--json", str(blocker / "m.json"))
    assert_one_line_error(code, err, "cannot write", "m.json")
    assert "median" not in out  # refused up front, not after minutes of measuring


@pytest.mark.parametrize(("option", "value"), [("--budget", "-1"), ("--target-ci", "0"), ("--target-ci", "2")])
def test_out_of_range_measure_options(capsys, option, value):
    code, _, err = run(capsys, "measure", option, value)
    assert_one_line_error(code, err, option)


def test_refused_json_path_leaves_no_file(capsys, tmp_path):
    code, _, err = run(capsys, "measure", "--json", str(tmp_path), "--budget", "1")
    assert_one_line_error(code, err, "cannot write")
    code, _, _ = run(capsys, "measure", "--json", str(tmp_path / "out.json"), "--backend", "tvm")
    assert code == 2 and not (tmp_path / "out.json").exists()


def test_inspect_prints_the_layer_table_and_writes_csv_and_json(capsys, tmp_path):
    import pandas as pd

    from latbench.arch import Arch

    widths = tmp_path / "w.json"
    widths.write_text('{"layer1.0.conv1": 8}')
    code, out, _ = run(capsys, "inspect", "resnet20", "--widths", str(widths), "--remove-blocks", "layer3.2",
                       "--csv", str(tmp_path / "t.csv"), "--json", str(tmp_path / "a.json"))
    assert code == 0
    assert "MFLOPs" in out and "resnet20" in out and "272,474" not in out
    arch = Arch.from_json(tmp_path / "a.json")
    assert arch.removed == {"layer3.2"} and arch.channels()["layer1.0.conv1"] == 8
    table = pd.read_csv(tmp_path / "t.csv")
    assert len(table) == len(arch.active_layers()) and table["flops"].sum() == arch.flops()
    assert f"{arch.params():,} parameters" in " ".join(out.split())


def test_inspect_bad_input_is_one_line(capsys, tmp_path):
    code, _, err = run(capsys, "inspect", "resnet999")
    assert_one_line_error(code, err, "unknown model 'resnet999'", "resnet56")
    conflict = tmp_path / "w.json"
    conflict.write_text('{"layer1.0.conv2": 8, "layer1.1.conv2": 9}')
    code, _, err = run(capsys, "inspect", "resnet20", "--widths", str(conflict))
    assert_one_line_error(code, err, "breaks a coupling")
    conflict.write_text('{"layer1.0.conv1": -2}')
    code, _, err = run(capsys, "inspect", "resnet20", "--widths", str(conflict))
    assert_one_line_error(code, err, "positive integer")
    conflict.write_text("[1, 2")
    code, _, err = run(capsys, "inspect", "resnet20", "--widths", str(conflict))
    assert_one_line_error(code, err, "cannot read widths file")
    code, _, err = run(capsys, "inspect", "resnet20", "--remove-blocks", "layer2.0")
    assert_one_line_error(code, err, "cannot be removed", "projection")
