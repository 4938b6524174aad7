"""An ONNX file as a torch module, so that ``inspect``, ``predict`` and profiling trace it like any network.

The graph's nodes become modules and functions the tracer knows: ``Conv`` a ``Conv2d`` (depthwise when
its groups equal its channels), ``Gemm`` a ``Linear``, ``BatchNormalization``, the activations, pooling,
``Add``, ``Mul`` and ``Concat`` on channels, ``Flatten`` and a flattening ``Reshape``, with the file's
weights. A conv's bias becomes a batch norm that adds it (exact): exporters fold batch norms into conv
biases, engines fold them back, and profiles measure conv + batch norm, so an exported network is priced
by the same table as the module it came from. The input shape is the graph input's (a symbolic batch is
1), checked by ONNX shape inference. Any other op is refused in one line naming every unsupported op of
the file. Residual blocks are not recovered (a graph has no module hierarchy): widths can be changed,
blocks cannot be removed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from latbench.errors import ModelLoadError, first_line

#: ONNX op types this importer maps
SUPPORTED_OPS = ("Conv", "Gemm", "BatchNormalization", "Relu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
                 "LeakyRelu", "Add", "Mul", "Concat", "MaxPool", "AveragePool", "GlobalAveragePool", "ReduceMean",
                 "Flatten", "Reshape", "Identity", "Dropout", "Constant")
_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "Relu": nn.ReLU, "Sigmoid": nn.Sigmoid, "HardSigmoid": nn.Hardsigmoid, "HardSwish": nn.Hardswish,
    "Tanh": nn.Tanh}


def is_onnx(name: str) -> bool:
    return name.lower().endswith(".onnx")


def _load(path: str | Path):
    import onnx

    if not Path(path).is_file():
        raise ModelLoadError(f"no ONNX file {path}")
    try:
        model = onnx.load(str(path))
        return onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except Exception as exc:  # noqa: BLE001 - a corrupt or inconsistent file: one line
        raise ModelLoadError(f"{path}: not a readable ONNX model ({first_line(exc, 200)})") from None


def onnx_input_shape(path: str | Path) -> tuple[int, int, int]:
    """(C, H, W) of the file's one image input."""
    return _input_shape(_load(path), path)


def _input_shape(model, path) -> tuple[int, int, int]:
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelLoadError(f"{path}: needs exactly one input tensor, found {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4 or not all(d.HasField("dim_value") for d in dims[1:]):
        raise ModelLoadError(f"{path}: the input must be N x C x H x W with fixed C, H and W")
    return tuple(int(d.dim_value) for d in dims[1:])  # type: ignore[return-value]


def _attrs(node) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pads(node, attrs: dict[str, Any], path) -> tuple[int, int]:
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or pads[:2] != pads[2:]:
        raise ModelLoadError(f"{path}: node {node.name or node.op_type} pads asymmetrically; only symmetric padding "
                             f"is supported")
    return int(pads[0]), int(pads[1])


class OnnxNet(nn.Module):
    """The imported graph: ``layers`` holds one module per weighted or stateful node, ``forward`` runs the
    nodes in the file's (topological) order."""

    def __init__(self, steps: list[tuple[str, Callable[..., Any], list[str]]], layers: dict[str, nn.Module],
                 input_name: str, output_name: str) -> None:
        super().__init__()
        self.layers = nn.ModuleDict(layers)
        self._steps, self._input, self._output = steps, input_name, output_name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env = {self._input: x}
        for out, run, ins in self._steps:
            env[out] = run(self, *(env[i] for i in ins))
        return env[self._output]


def _with_shift(conv: nn.Conv2d, bias: torch.Tensor) -> nn.Module:
    """``conv`` followed by a batch norm that adds ``bias`` and nothing else: exactly the conv with its bias, in
    the form the profiles measure (a batch norm folded into a conv is what an exporter wrote)."""
    bn = nn.BatchNorm2d(conv.out_channels, eps=0.0)
    bn.weight.data.fill_(1.0)
    bn.bias.data = bias
    return nn.Sequential(conv, bn)


def _module_step(key: str) -> Callable[..., Any]:
    return lambda net, x: net.layers[key](x)


def module_from_onnx(path: str | Path) -> nn.Module:
    """The torch module of an ONNX file (eval mode); unsupported ops named in one ``ModelLoadError`` line."""
    from onnx import numpy_helper

    model = _load(path)
    graph = model.graph
    unsupported = sorted({n.op_type for n in graph.node if n.op_type not in SUPPORTED_OPS})
    if unsupported:
        raise ModelLoadError(f"{path}: unsupported ONNX op(s) {', '.join(unsupported)}; supported: "
                             f"{', '.join(SUPPORTED_OPS)}")
    _input_shape(model, path)
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:  # constants, and identities of constants (shared initializers), are weights
        if node.op_type == "Constant":
            consts[node.output[0]] = numpy_helper.to_array(_attrs(node)["value"])
        elif node.op_type == "Identity" and node.input[0] in consts:
            consts[node.output[0]] = consts[node.input[0]]
    inits = {i.name for i in graph.initializer}
    input_name = next(i.name for i in graph.input if i.name not in inits)
    steps: list[tuple[str, Callable[..., Any], list[str]]] = []
    layers: dict[str, nn.Module] = {}
    used: set[str] = set()

    def add_module(node, module: nn.Module, data_input: str) -> None:
        key = re.sub(r"\W+", "_", (node.name or f"{node.op_type}_{len(layers)}").strip("/")).strip("_") or "node"
        while key in used:
            key += "_"
        used.add(key)
        layers[key] = module
        steps.append((node.output[0], _module_step(key), [data_input]))

    def weight(name: str) -> torch.Tensor:
        return torch.from_numpy(np.array(consts[name], dtype=np.float32))

    for node in graph.node:
        op, attrs, ins = node.op_type, _attrs(node), list(node.input)
        if op == "Constant" or node.output[0] in consts:
            continue
        if op == "Conv":
            w = consts.get(ins[1])
            if w is None or w.ndim != 4:
                raise ModelLoadError(f"{path}: Conv {node.name} needs a 2-D kernel from an initializer")
            groups = int(attrs.get("group", 1))
            conv = nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]),
                             stride=tuple(attrs.get("strides", [1, 1])), padding=_pads(node, attrs, path),
                             dilation=tuple(attrs.get("dilations", [1, 1])), groups=groups, bias=False)
            conv.weight.data = weight(ins[1])
            add_module(node, _with_shift(conv, weight(ins[2])) if len(ins) > 2 and ins[2] else conv, ins[0])
        elif op == "Gemm":
            w = consts.get(ins[1])
            if w is None or attrs.get("transA", 0):
                raise ModelLoadError(f"{path}: Gemm {node.name} needs its weights (B) from an initializer")
            w = w if attrs.get("transB", 0) else w.T
            linear = nn.Linear(w.shape[1], w.shape[0], bias=len(ins) > 2 and bool(ins[2]))
            linear.weight.data = torch.from_numpy(np.array(w, dtype=np.float32))
            if linear.bias is not None:
                linear.bias.data = weight(ins[2])
            add_module(node, linear, ins[0])
        elif op == "BatchNormalization":
            scale = consts[ins[1]]
            bn = nn.BatchNorm2d(scale.shape[0], eps=float(attrs.get("epsilon", 1e-5)))
            bn.weight.data, bn.bias.data = weight(ins[1]), weight(ins[2])
            bn.running_mean.data, bn.running_var.data = weight(ins[3]), weight(ins[4])
            add_module(node, bn, ins[0])
        elif op in _ACTIVATIONS:
            add_module(node, _ACTIVATIONS[op](), ins[0])
        elif op == "LeakyRelu":
            add_module(node, nn.LeakyReLU(float(attrs.get("alpha", 0.01))), ins[0])
        elif op == "Clip":
            low = float(consts[ins[1]]) if len(ins) > 1 and ins[1] else attrs.get("min")
            high = float(consts[ins[2]]) if len(ins) > 2 and ins[2] else attrs.get("max")
            if (low, high) == (0.0, 6.0):
                add_module(node, nn.ReLU6(), ins[0])
            elif low == 0.0 and high is None:
                add_module(node, nn.ReLU(), ins[0])
            else:
                raise ModelLoadError(f"{path}: Clip {node.name} to [{low}, {high}] is not an activation latbench knows")
        elif op in ("MaxPool", "AveragePool"):
            kind = nn.MaxPool2d if op == "MaxPool" else nn.AvgPool2d
            add_module(node, kind(tuple(attrs["kernel_shape"]), stride=tuple(attrs.get("strides", [1, 1])),
                                  padding=_pads(node, attrs, path), ceil_mode=bool(attrs.get("ceil_mode", 0))),
                       ins[0])
        elif op == "GlobalAveragePool" or (op == "ReduceMean" and sorted(attrs.get("axes", [])) == [2, 3]):
            add_module(node, nn.AdaptiveAvgPool2d(1) if attrs.get("keepdims", 1) else nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Flatten()), ins[0])
        elif op == "Flatten":
            if int(attrs.get("axis", 1)) != 1:
                raise ModelLoadError(f"{path}: Flatten {node.name} must flatten from axis 1")
            add_module(node, nn.Flatten(), ins[0])
        elif op == "Reshape":
            shape = consts.get(ins[1])
            if shape is None or len(shape) != 2 or not (int(shape[0]) in (-1, 0, 1) or int(shape[1]) == -1):
                raise ModelLoadError(f"{path}: Reshape {node.name} is not a flatten to N x features")
            add_module(node, nn.Flatten(), ins[0])
        elif op in ("Identity", "Dropout"):
            steps.append((node.output[0], lambda net, x: x, [ins[0]]))
        elif op in ("Add", "Mul"):
            if any(i in consts for i in ins):
                raise ModelLoadError(f"{path}: {op} {node.name} with a constant operand is not supported")
            fn = torch.add if op == "Add" else torch.mul
            steps.append((node.output[0], lambda net, a, b, fn=fn: fn(a, b), ins[:2]))
        elif op == "Concat":
            if int(attrs.get("axis", 1)) != 1:
                raise ModelLoadError(f"{path}: Concat {node.name} must join channels (axis 1)")
            steps.append((node.output[0], lambda net, *xs: torch.cat(xs, dim=1), ins))
        else:  # ReduceMean over other axes
            raise ModelLoadError(f"{path}: {op} {node.name} over axes {attrs.get('axes')} is not supported")
    if len(graph.output) != 1:
        raise ModelLoadError(f"{path}: needs exactly one output, found {len(graph.output)}")
    return OnnxNet(steps, layers, input_name, graph.output[0].name).eval()
