"""The replayed NCHWc layout conversions against ONNX Runtime's own optimised graphs."""

import numpy as np
import pytest
import torch

from latbench.arch import LayerSpec, trace
from latbench.models import REGISTRY, build_candidate, build_model
from latbench.predictors.batch import CandidateBatch
from latbench.predictors.layout import conversions
from latbench.profiler.microbench import build_layer

ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def optimised_ops(module: torch.nn.Module, x: torch.Tensor, tmp_path) -> list[tuple[str, list[int] | None]]:
    """(op type, first weight dims) of every node ONNX Runtime runs for ``module``."""
    from latbench.backends.export import onnx_source

    _, model_bytes, _ = onnx_source(module.eval(), x)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(tmp_path / "optimised.onnx")).graph
    dims = {t.name: list(t.dims) for t in graph.initializer}
    return [(n.op_type, dims.get(n.input[1]) if len(n.input) > 1 else None) for n in graph.node]


def count_conversions(ops) -> int:
    return sum(op in ("ReorderInput", "ReorderOutput") for op, _ in ops)


@pytest.fixture(scope="module")
def block(tmp_path_factory) -> int:
    """The engine's NCHWc block on this CPU: a 3 -> 8 conv's filters are padded to it."""
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
    ops = optimised_ops(net, torch.zeros(1, 3, 8, 8), tmp_path_factory.mktemp("probe"))
    padded = [w[0] for op, w in ops if op == "Conv" and w]
    if not padded or (padded[0] == 8 and not count_conversions(ops)):
        pytest.skip("ONNX Runtime uses no blocked layout on this CPU")
    return padded[0]


def variants(name: str, rng: np.random.Generator, n: int):
    base = trace(build_model(name), torch.zeros(1, *REGISTRY[name].input_shape), name=name)
    for i in range(n):
        widths = {}
        for g in base.prunable_groups:
            if i % 3 == 0:
                widths[g.id] = int(rng.integers(1, g.channels + 1))  # anything, odd widths included
            elif i % 3 == 1:
                widths[g.id] = int(rng.choice([4, 8, 12, 16, 20, 24, 32, 48]))
            else:
                widths[g.id] = max(4, int(g.channels * rng.uniform(0.2, 1.0)) // 4 * 4)
        removed = [b.name for b in base.blocks if b.removable and rng.random() < 0.25]
        yield base.with_widths(widths).without_blocks(removed)


@pytest.mark.parametrize("name", ["resnet20", "vgg16", "mobilenetv2_cifar"])
def test_replayed_conversions_match_the_engine(name, block, tmp_path):
    rng = np.random.default_rng(7)
    archs = list(variants(name, rng, 9))
    replayed = conversions(CandidateBatch.of(archs), block).count
    shape = (1, *REGISTRY[name].input_shape)
    for arch, count in zip(archs, replayed, strict=True):
        real = count_conversions(optimised_ops(build_candidate(name, arch), torch.randn(*shape), tmp_path))
        assert count == real, f"{name} widths {arch.width_tuple} removed {sorted(arch.removed)}"


@pytest.mark.parametrize(("op", "cin"), [("conv", 3), ("conv", 12), ("conv", 20), ("conv", 30), ("conv", 64),
                                         ("dwconv", 8), ("dwconv", 30), ("maxpool", 16), ("maxpool", 20),
                                         ("gap", 32), ("gap", 20)])
def test_an_isolated_layer_pays_what_its_sample_paid(op, cin, block, tmp_path):
    """A one-layer network converts exactly as its profiling sample did."""
    kernel = (2, 2) if op == "maxpool" else (1, 1) if op == "gap" else (3, 3)
    spec = LayerSpec(op=op, in_channels=cin, out_channels=32 if op == "conv" else cin, kernel=kernel,
                     stride=kernel if op == "maxpool" else (1, 1), padding=(1, 1) if kernel == (3, 3) else (0, 0),
                     groups=cin if op == "dwconv" else 1, in_hw=(8, 8),
                     epilogue=("bn", "relu") if "conv" in op else ())
    module, x = build_layer(spec)
    arch = trace(module, x, name=f"{op}{cin}")
    replayed = conversions(CandidateBatch.of([arch]), block)
    real = count_conversions(optimised_ops(module, x, tmp_path))
    assert replayed.count[0] == replayed.isolated_count[0] == real
    assert replayed.elements[0] == pytest.approx(replayed.isolated_elements[0])


def test_a_network_without_dataflow_replays_nothing():
    base = trace(build_model("resnet20"), torch.zeros(1, 3, 32, 32), name="resnet20").base
    from dataclasses import replace

    from latbench.arch import Arch

    blind = replace(base, layers=tuple(replace(layer, inputs=()) for layer in base.layers))
    assert not conversions(CandidateBatch.of([Arch.from_base(blind)]), 16).count.any()
