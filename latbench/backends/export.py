"""Export a torch module to ONNX and map ONNX nodes back to the modules they came from."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from latbench.errors import ExportError, InputShapeError, ModelLoadError, first_line

OPSET = 17


@contextlib.contextmanager
def _quiet_native_output():
    """Silence file descriptors 1 and 2 (torch's exporter prints graph dumps from C++ on failure)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


def export_onnx(module, example_input, opset: int = OPSET) -> bytes:
    """ONNX bytes of ``module`` traced at ``example_input`` (eval mode, constants folded).

    Uses TorchScript-based export where torch still has it (fast, and node names carry the
    module scope); otherwise torch's default exporter. Any failure becomes one ``ExportError``.
    """
    import torch

    buf = io.BytesIO()
    module = module.eval()
    check_forward(module, example_input)
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad(), _quiet_native_output():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(module, (example_input,), buf, dynamo=False, opset_version=opset,
                                  input_names=["input"], output_names=["output"], do_constant_folding=True)
            except TypeError as exc:  # a torch without the TorchScript exporter
                if "dynamo" not in str(exc):
                    raise
                torch.onnx.export(module, (example_input,), buf, input_names=["input"], output_names=["output"])
    except Exception as exc:
        raise ExportError(f"cannot export {type(module).__name__} to ONNX: {first_line(exc)}") from exc
    return buf.getvalue()


def check_forward(module, example_input) -> None:
    """Run ``module`` once on ``example_input``; a failure is the user's input, said in one line."""
    import torch

    try:
        with torch.inference_mode():
            module(example_input)
    except Exception as exc:
        raise InputShapeError(f"{type(module).__name__} does not run on input {list(example_input.shape)}: "
                              f"{first_line(exc)}") from exc


def onnx_source(model, example_input):
    """(ONNX model, its bytes, torch module names) for an ``nn.Module`` or an ONNX file path."""
    import onnx

    if isinstance(model, (str, Path)):
        onnx_model = load_onnx(str(model))
        return onnx_model, onnx_model.SerializeToString(), set()
    model_bytes = export_onnx(model, example_input)
    return onnx.load_from_string(model_bytes), model_bytes, {name for name, _ in model.named_modules()}


def load_onnx(path: str):
    """Load and check an ONNX file; any problem is one ``ModelLoadError`` naming the file."""
    import onnx

    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except FileNotFoundError as exc:
        raise ModelLoadError(f"ONNX file not found: {path}") from exc
    except Exception as exc:
        raise ModelLoadError(f"cannot read ONNX file {path}: {first_line(exc)}") from exc
    return model


@dataclass(frozen=True)
class NodeSource:
    """Where an engine node came from: the ONNX node, its op type and the torch module path."""

    onnx_node: str
    op_type: str
    module: str


_SCOPE_RE = re.compile(r"^/(.*)/[^/]+$")


def _module_from_scope(node_name: str, module_names: set[str]) -> str:
    """Module path from a TorchScript-export node name such as ``/layer1/layer1.0/conv1/Conv``.

    A scope part names a child by its parent's part plus the child's own name (``/features/
    features.1/conv/conv.0/conv.0.2/Clip`` is ``features.1.conv.0.2``).
    """
    m = _SCOPE_RE.match(node_name)
    if not m:
        return ""
    path = parent = ""
    for part in m.group(1).split("/"):
        child = part[len(parent) + 1:] if parent and part.startswith(parent + ".") else part
        nested = f"{path}.{child}" if path else child
        if not module_names or nested in module_names:
            path = nested
        elif part in module_names:
            path = part
        parent = part
    return path


def _module_from_metadata(node) -> str | None:
    """Module path from the ``namespace`` metadata the dynamo exporter writes."""
    for prop in node.metadata_props:
        if prop.key == "namespace":
            parts = [p.split(":")[0].strip() for p in prop.value.split("/")]
            names = [p for p in parts[1:-1] if p]
            return names[-1] if names else ""
    return None


class OnnxNodeMap:
    """Resolves names an engine reports (node names, or output tensor names of fused nodes)."""

    def __init__(self, model, module_names: set[str] | None = None) -> None:
        module_names = module_names or set()
        self._nodes = {n.name: n for n in model.graph.node}
        self._producer = {out: n for n in model.graph.node for out in n.output}
        self._module = {}
        for n in model.graph.node:
            meta = _module_from_metadata(n)
            self._module[n.name] = meta if meta is not None else _module_from_scope(n.name, module_names)

    def resolve(self, engine_name: str, engine_op: str | None = None) -> NodeSource | None:
        """Source of an engine node; for fused nodes, walk back to the node of ``engine_op``.

        An engine node that keeps its ONNX node's name is that node (ONNX Runtime's ``FusedConv``
        keeps the conv's name); one named after a tensor is walked back from that tensor's producer.
        """
        node = self._nodes.get(engine_name)
        if node is not None:
            return NodeSource(node.name, node.op_type, self._module.get(node.name, ""))
        node = self._producer.get(engine_name)
        if node is None:
            for suffix in ("_nchwc", "_token", "_fused"):
                base = engine_name.split(suffix)[0]
                node = self._nodes.get(base) or self._producer.get(base)
                if node is not None:
                    break
        if node is None:
            return None
        op = engine_op.removeprefix("Fused") if engine_op else None
        seen = 0
        while op and node.op_type != op and node.input and seen < 8:
            prev = self._producer.get(node.input[0])
            if prev is None:
                break
            node, seen = prev, seen + 1
        return NodeSource(node.name, node.op_type, self._module.get(node.name, ""))
