"""Trace an ``nn.Module`` into an ``Arch`` with torch.fx.

The graph comes from ``torch.fx.symbolic_trace`` and tensor shapes from ``ShapeProp``. Channel
groups are found by union-find over the channel dimension: a conv or linear layer starts a new
group; batch norm, activations, pooling, dropout and reshapes pass their input's groups on; a
depthwise conv keeps its input's groups; an element-wise add or multiply unites its operands'
groups; a concatenation along channels composes them. Groups reaching the network's input or
output are fixed.

Batch norm and activations that directly follow a conv, linear or add (and are its only user)
are folded into that layer's ``epilogue``, as deployment engines fuse them. A residual block is
the module that encloses an add; it is removable when its shortcut is the block's own input
(identity) and the add's output has the input's shape.
"""

from __future__ import annotations

import contextlib
import io
import operator
from typing import Any

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from latbench.arch.arch import Arch, ArchBase, ArchError, Block, Group, Layer
from latbench.arch.spec import LayerSpec
from latbench.errors import first_line

ACTIVATIONS: dict[type, str] = {
    nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hardswish", nn.SiLU: "silu", nn.GELU: "gelu",
    nn.Sigmoid: "sigmoid", nn.Hardsigmoid: "hardsigmoid", nn.LeakyReLU: "leakyrelu", nn.Tanh: "tanh",
}
ACTIVATION_FUNCTIONS: dict[Any, str] = {
    torch.relu: "relu", nn.functional.relu: "relu", nn.functional.relu6: "relu6", torch.sigmoid: "sigmoid",
    nn.functional.hardswish: "hardswish", nn.functional.silu: "silu", nn.functional.gelu: "gelu",
    torch.tanh: "tanh", nn.functional.hardsigmoid: "hardsigmoid",
}
PASS_MODULES = (nn.Dropout, nn.Identity, nn.Flatten)
PASS_FUNCTIONS = {torch.flatten, nn.functional.dropout, torch.reshape}
PASS_METHODS = {"flatten", "view", "reshape", "contiguous", "relu", "clone"}
ADD_FUNCTIONS = {operator.add, operator.iadd, torch.add}
MUL_FUNCTIONS = {operator.mul, operator.imul, torch.mul}
CAT_FUNCTIONS = {torch.cat, torch.concat}
GAP_FUNCTIONS = {nn.functional.adaptive_avg_pool2d, torch.mean}
SUPPORTED = ("Conv2d (regular or depthwise), Linear, BatchNorm2d, " + ", ".join(t.__name__ for t in ACTIVATIONS)
             + ", MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), Dropout, Identity, Flatten; "
             "functions: add, mul, cat(dim=1), flatten/view/reshape, mean over H,W, relu-like activations")


class UnsupportedLayerError(ArchError):
    """A module or function the tracer cannot describe."""


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []
        self.channels: list[int] = []
        self.fixed: list[bool] = []
        self.first_layer: list[str] = []

    def new(self, channels: int, first_layer: str, fixed: bool = False) -> int:
        self.parent.append(len(self.parent))
        self.channels.append(channels)
        self.fixed.append(fixed)
        self.first_layer.append(first_layer)
        return len(self.parent) - 1

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = min(ra, rb), max(ra, rb)
            self.parent[hi] = lo
            self.fixed[lo] = self.fixed[lo] or self.fixed[hi]


class _Tracer:
    def __init__(self, module: nn.Module, example: torch.Tensor, name: str) -> None:
        self.name = name
        self.example = example
        self.modules = dict(module.named_modules())
        try:
            self.gm = fx.symbolic_trace(module)
        except Exception as exc:  # torch.fx raises many kinds; report one line
            raise UnsupportedLayerError(f"cannot trace {name} with torch.fx: {first_line(exc)}") from exc
        try:  # ShapeProp prints the traceback of a failing node and wraps the error: keep its cause, in one line
            with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
                ShapeProp(self.gm).propagate(example)
        except Exception as exc:
            cause = exc.__cause__ or exc
            raise ArchError(f"{name} does not run on input {list(example.shape)}: {first_line(cause)}") from exc
        self.uf = _UnionFind()
        self.chan: dict[fx.Node, tuple[int, ...]] = {}
        self.mult: dict[fx.Node, int] = {}
        self.producer: dict[fx.Node, int] = {}  # node -> index of the layer whose output it is
        self.sources: dict[fx.Node, tuple[int, ...]] = {}  # node -> layers whose outputs it carries (-1: input)
        self.layers: list[dict[str, Any]] = []
        self.adds: list[fx.Node] = []
        self.dtype = str(example.dtype).replace("torch.", "")

    # --- helpers -----------------------------------------------------------------------------
    def shape(self, node: fx.Node) -> tuple[int, ...]:
        meta = node.meta.get("tensor_meta")
        return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else ()

    def hw(self, node: fx.Node) -> tuple[int, int]:
        s = self.shape(node)
        return (int(s[2]), int(s[3])) if len(s) == 4 else (1, 1)

    def width(self, groups: tuple[int, ...]) -> int:
        return sum(self.uf.channels[g] for g in groups)

    def add_layer(self, node: fx.Node, name: str, spec_kwargs: dict[str, Any], in_groups: tuple[int, ...],
                  out_groups: tuple[int, ...]) -> None:
        batch = self.shape(node.args[0])[0] if node.args and isinstance(node.args[0], fx.Node) else 1
        inputs = tuple(dict.fromkeys(i for a in node.all_input_nodes for i in self.sources.get(a, ())))
        self.layers.append({"name": name, "node": node, "in_groups": in_groups, "out_groups": out_groups,
                            "inputs": inputs,
                            "spec": dict(spec_kwargs, batch=int(batch), dtype=self.dtype, epilogue=[])})
        self.producer[node] = len(self.layers) - 1
        self.sources[node] = (len(self.layers) - 1,)
        self.chan[node] = out_groups

    def fuse(self, node: fx.Node, src: fx.Node, what: str) -> bool:
        """Fold ``what`` into the layer producing ``src`` when ``node`` is its only consumer."""
        idx = self.producer.get(src)
        if idx is None or len(src.users) != 1:
            return False
        layer = self.layers[idx]
        if layer["spec"]["op"] not in ("conv", "dwconv", "linear", "add", "mul", "bn"):
            return False
        if what == "bn" and (layer["spec"]["op"] not in ("conv", "dwconv", "linear") or layer["spec"]["epilogue"]):
            return False
        layer["spec"]["epilogue"].append(what)
        self.producer[node] = idx
        self.sources[node] = (idx,)
        self.chan[node] = self.chan[src]
        self.mult[node] = self.mult.get(src, 1)
        return True

    def passthrough(self, node: fx.Node, src: fx.Node) -> None:
        self.chan[node] = self.chan[src]
        self.sources[node] = self.sources.get(src, ())
        self.mult[node] = self.mult.get(src, 1)

    def function_layer_name(self, node: fx.Node, op: str) -> str:
        """``layer1.0.add`` for an add inside module ``layer1.0``; fx's node name at the top level."""
        path = self.block_of(node)
        name = f"{path}.{op}" if path else node.name
        taken = {layer["name"] for layer in self.layers}
        return name if name not in taken else f"{name}_{sum(n.startswith(name) for n in taken)}"

    def unsupported(self, node: fx.Node, what: str) -> UnsupportedLayerError:
        where = node.target if node.op == "call_module" else node.name
        return UnsupportedLayerError(f"{self.name}: cannot describe {where!s} ({what}); supported: {SUPPORTED}")

    # --- per-node rules ----------------------------------------------------------------------
    def visit_module(self, node: fx.Node) -> None:
        path = str(node.target)
        mod = self.modules[path]
        src = node.args[0]
        if isinstance(mod, nn.Conv2d):
            self.conv(node, path, mod, src)
        elif isinstance(mod, nn.Linear):
            in_groups = self.chan[src]
            g = self.uf.new(mod.out_features, path)
            self.add_layer(node, path, {"op": "linear", "in_channels": self.width(in_groups),
                                        "out_channels": mod.out_features, "bias": mod.bias is not None,
                                        "in_mult": self.mult.get(src, 1)}, in_groups, (g,))
        elif isinstance(mod, nn.BatchNorm2d):
            if not self.fuse(node, src, "bn"):
                c = self.chan[src]
                self.add_layer(node, path, {"op": "bn", "in_channels": self.width(c), "out_channels": self.width(c),
                                            "in_hw": self.hw(src)}, c, c)
        elif type(mod) in ACTIVATIONS:
            self.activation(node, path, ACTIVATIONS[type(mod)], src)
        elif isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d)):
            op = "maxpool" if isinstance(mod, nn.MaxPool2d) else "avgpool"
            c = self.chan[src]
            self.add_layer(node, path, {"op": op, "in_channels": self.width(c), "out_channels": self.width(c),
                                        "kernel": _pair(mod.kernel_size),
                                        "stride": _pair(mod.stride or mod.kernel_size),
                                        "padding": _pair(mod.padding), "in_hw": self.hw(src)}, c, c)
        elif isinstance(mod, nn.AdaptiveAvgPool2d):
            if _pair(mod.output_size) != (1, 1):
                raise self.unsupported(node, f"AdaptiveAvgPool2d to {mod.output_size}, only global (1) pooling")
            self.gap(node, path, src)
        elif isinstance(mod, PASS_MODULES):
            self.passthrough(node, src)
            if isinstance(mod, nn.Flatten):
                self.flatten(node, src)
        else:
            raise self.unsupported(node, type(mod).__name__)

    def conv(self, node: fx.Node, path: str, mod: nn.Conv2d, src: fx.Node) -> None:
        in_groups = self.chan[src]
        depthwise = mod.groups > 1 and mod.groups == mod.in_channels == mod.out_channels
        if mod.groups > 1 and not depthwise:
            raise self.unsupported(node, f"grouped Conv2d with groups={mod.groups}; only regular and depthwise")
        out_groups = in_groups if depthwise else (self.uf.new(mod.out_channels, path),)
        self.add_layer(node, path, {
            "op": "dwconv" if depthwise else "conv", "in_channels": mod.in_channels, "out_channels": mod.out_channels,
            "kernel": _pair(mod.kernel_size), "stride": _pair(mod.stride), "padding": _pair(mod.padding),
            "groups": mod.groups, "dilation": _pair(mod.dilation), "in_hw": self.hw(src),
            "bias": mod.bias is not None}, in_groups, out_groups)

    def activation(self, node: fx.Node, name: str, act: str, src: fx.Node) -> None:
        if not self.fuse(node, src, act):
            c = self.chan[src]
            self.add_layer(node, name, {"op": "act", "in_channels": self.width(c), "out_channels": self.width(c),
                                        "in_hw": self.hw(src)}, c, c)
            self.layers[-1]["spec"]["epilogue"].append(act)

    def gap(self, node: fx.Node, name: str, src: fx.Node) -> None:
        c = self.chan[src]
        self.add_layer(node, name, {"op": "gap", "in_channels": self.width(c), "out_channels": self.width(c),
                                    "in_hw": self.hw(src)}, c, c)

    def flatten(self, node: fx.Node, src: fx.Node) -> None:
        h, w = self.hw(src)
        self.mult[node] = self.mult.get(src, 1) * h * w

    def visit_function(self, node: fx.Node) -> None:
        target = node.target
        tensors = [a for a in node.args if isinstance(a, fx.Node) and a in self.chan]
        if (node.op == "call_method" and target in PASS_METHODS) or target in PASS_FUNCTIONS:
            src = tensors[0]
            if target == "relu":
                self.activation(node, self.function_layer_name(node, "act"), "relu", src)
                return
            self.passthrough(node, src)
            if target in ("flatten", "view", "reshape", torch.flatten, torch.reshape):
                self.flatten(node, src)
            return
        if target in ACTIVATION_FUNCTIONS:
            self.activation(node, self.function_layer_name(node, "act"), ACTIVATION_FUNCTIONS[target], tensors[0])
        elif target in ADD_FUNCTIONS or target in MUL_FUNCTIONS:
            self.elementwise(node, tensors, "add" if target in ADD_FUNCTIONS else "mul")
        elif target in CAT_FUNCTIONS:
            dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
            if dim != 1:
                raise self.unsupported(node, f"cat along dim {dim}; only channels (dim=1)")
            self.chan[node] = tuple(g for t in node.args[0] for g in self.chan[t])
            self.sources[node] = tuple(dict.fromkeys(i for t in node.args[0] for i in self.sources.get(t, ())))
        elif target in GAP_FUNCTIONS or (node.op == "call_method" and target == "mean"):
            rank = len(self.shape(node))
            if rank not in (2, 4) or (rank == 4 and self.hw(node) != (1, 1)):
                raise self.unsupported(node, "pooling that does not reduce to 1x1")
            self.gap(node, self.function_layer_name(node, "gap"), tensors[0])
        elif target in (operator.getitem, getattr) or (node.op == "call_method" and target in ("size", "dim")):
            if tensors and self.shape(node):
                raise self.unsupported(node, "tensor indexing")
        else:
            what = getattr(target, "__name__", str(target))
            raise self.unsupported(node, f"function {what}")

    def elementwise(self, node: fx.Node, tensors: list[fx.Node], op: str) -> None:
        if len(tensors) == 1:  # tensor with a scalar
            self.passthrough(node, tensors[0])
            return
        a, b = tensors[:2]
        ca, cb = self.chan[a], self.chan[b]  # a broadcast (N, C, 1, 1) scale ties channels too
        if len(ca) != len(cb) or self.width(ca) != self.width(cb):
            raise self.unsupported(node, f"{op} of tensors with different channel layouts")
        for ga, gb in zip(ca, cb, strict=True):
            self.uf.union(ga, gb)
        name = self.function_layer_name(node, op)
        self.add_layer(node, name, {"op": op, "in_channels": self.width(ca), "out_channels": self.width(ca),
                                    "in_hw": self.hw(node)}, ca, ca)
        if op == "add":
            self.adds.append(node)

    # --- assembly ----------------------------------------------------------------------------
    def run(self) -> Arch:
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                shape = self.shape(node)
                self.chan[node] = (self.uf.new(int(shape[1]) if len(shape) > 1 else 1, "input", fixed=True),)
                self.sources[node] = (-1,)
            elif node.op == "call_module":
                self.visit_module(node)
            elif node.op in ("call_function", "call_method"):
                self.visit_function(node)
            elif node.op == "output":
                outs = node.args[0] if isinstance(node.args[0], (tuple, list)) else (node.args[0],)
                for out in outs:
                    for g in self.chan.get(out, ()):
                        self.uf.fixed[self.uf.find(g)] = True
        return self.assemble()

    def block_of(self, node: fx.Node) -> str | None:
        stack = node.meta.get("nn_module_stack") or {}
        return list(stack)[-1] if stack else None

    def blocks(self) -> tuple[dict[int, str], list[Block]]:
        layer_block: dict[int, str] = {}
        found: list[Block] = []
        for node in self.adds:
            path = self.block_of(node)
            if path is None or any(b.name == path for b in found):
                continue
            members = [i for i, layer in enumerate(self.layers)
                       if path in (layer["node"].meta.get("nn_module_stack") or {})]
            shortcut = [a for a in node.args if isinstance(a, fx.Node)
                        and path not in (a.meta.get("nn_module_stack") or {})]
            inputs = {a for i in members for a in self.layers[i]["node"].all_input_nodes
                      if path not in (a.meta.get("nn_module_stack") or {})}
            if len(shortcut) == 1 and inputs == set(shortcut) and self.shape(shortcut[0]) == self.shape(node):
                removable, reason = True, ""
            elif not shortcut:
                removable, reason = False, "projection shortcut: the block changes stride or width"
            else:
                removable, reason = False, "the block's output shape differs from its input"
            for i in members:
                layer_block[i] = path
            found.append(Block(path, tuple(self.layers[i]["name"] for i in members), removable, reason))
        return layer_block, found

    def assemble(self) -> Arch:
        uf = self.uf
        roots = sorted({uf.find(g) for g in range(len(uf.parent))})
        used = {uf.find(g) for layer in self.layers for g in (*layer["in_groups"], *layer["out_groups"])}
        roots = [r for r in roots if r in used]
        renum = {r: i for i, r in enumerate(roots)}

        def canon(groups: tuple[int, ...]) -> tuple[int, ...]:
            return tuple(renum[uf.find(g)] for g in groups)

        layer_block, blocks = self.blocks()
        layers = []
        for i, layer in enumerate(self.layers):
            spec = dict(layer["spec"])
            spec["epilogue"] = tuple(spec["epilogue"])
            layers.append(Layer(layer["name"], LayerSpec(**spec), canon(layer["in_groups"]),
                                canon(layer["out_groups"]), layer_block.get(i), layer["inputs"]))
        groups = []
        for r in roots:
            writers = tuple(layer.name for layer in layers if renum[r] in layer.out_groups
                            and layer.spec.op in ("conv", "dwconv", "linear"))
            groups.append(Group(renum[r], uf.first_layer[r], uf.channels[r], uf.fixed[r], writers))
        base = ArchBase(self.name, tuple(int(s) for s in self.example.shape), tuple(layers), tuple(groups),
                        tuple(blocks))
        return Arch.from_base(base)


def trace(module: nn.Module, example_input: torch.Tensor, name: str | None = None) -> Arch:
    """Describe ``module`` at ``example_input`` as an ``Arch`` (the module is put in eval mode)."""
    module = module.eval()
    return _Tracer(module, example_input, name or type(module).__name__).run()
