"""PyTorch on CPU or CUDA, under ``torch.inference_mode``: eager or compiled (``torch.compile``,
inductor), with optional CUDA graph replay."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

from latbench.backends.base import Backend, Runnable, engine_layer_table
from latbench.backends.export import check_forward
from latbench.backends.fingerprint import cuda_fingerprint, host_fingerprint
from latbench.errors import InputShapeError, ModelLoadError
from latbench.measure.timers import CudaEventTimer, HostTimer

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class TorchBackend(Backend):
    """PyTorch eager, or compiled. On CUDA, samples are timed with CUDA events; ``cuda_graph=True``
    captures the forward pass once and times graph replays (no per-kernel launch cost).

    ``compile=True`` runs the module through ``torch.compile`` (inductor), which fuses
    convolution epilogues and elementwise chains as deployment engines do; with ``cuda_graph``
    it uses inductor's own CUDA graphs (mode ``reduce-overhead``). Compiling takes seconds to
    minutes per network, so profiles measure layers eagerly and the compiled engine is for
    whole networks. A compiled module has no per-layer times (its kernels span layers).
    """

    name = "torch"
    description = "PyTorch eager or torch.compile, torch.inference_mode"
    precisions = ("fp32", "fp16", "bf16")

    def __init__(self, device: str = "cpu", threads: int | None = None, precision: str = "fp32",
                 cuda_graph: bool = False, compile: bool = False) -> None:
        super().__init__(device, threads, precision)
        self.cuda_graph = cuda_graph
        self.compile = compile

    def unavailable_reason(self) -> str | None:
        try:
            import torch
        except ImportError:
            return "the torch package is not installed"
        if self.device not in ("cpu", "cuda"):
            return f"unknown device {self.device!r} for torch (choose from cpu, cuda)"
        if self.device == "cuda" and not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            return f"torch sees no CUDA device (torch {torch.__version__}, {build})"
        if self.device == "cpu" and self.cuda_graph:
            return "CUDA graphs need device cuda"
        if self.device == "cpu" and self.precision != "fp32":
            return f"{self.precision} is only measured on cuda with the torch backend"
        return None

    def fingerprint(self) -> dict[str, Any]:
        import torch

        fp = dict(host_fingerprint())
        fp.update({"backend": self.name, "device": self.device, "precision": self.precision,
                   "torch": torch.__version__, "cuda_graph": self.cuda_graph,
                   "compiled": "inductor" if self.compile else None,
                   "threads": (self.threads or torch.get_num_threads()) if self.device == "cpu" else None})
        if self.device == "cuda":
            fp.update(cuda_fingerprint())
        return fp

    def deploy(self, model: Any, example_input: Any) -> Runnable:
        import torch

        if isinstance(model, (str, Path)):
            raise ModelLoadError("the torch backend deploys nn.Module networks; run ONNX files with "
                                 "--backend onnxruntime or tensorrt")
        if example_input is None:
            raise InputShapeError("the torch backend needs an example input")
        if self.device == "cpu" and self.threads:
            torch.set_num_threads(self.threads)
        dtype = getattr(torch, _DTYPES[self.precision])
        module = copy.deepcopy(model).eval().to(device=self.device, dtype=dtype)
        x = torch.as_tensor(example_input).to(device=self.device, dtype=dtype)
        check_forward(module, x)
        graph_inside = False
        if self.compile:
            graph_inside = self.cuda_graph and self.device == "cuda"
            module = torch.compile(module, mode="reduce-overhead" if graph_inside else "default")
            check_forward(module, x)  # compiles now, not inside the first timed call
        conditions = {**self.fingerprint(), "batch": int(x.shape[0]), "dtype": str(x.dtype).replace("torch.", ""),
                      "input_shape": list(x.shape)}

        def call() -> object:
            with torch.inference_mode():
                return module(x)

        def fetch():
            return call().float().cpu().numpy()

        def profile(runs: int) -> Any:
            return _hook_layer_times(module, call, runs, cuda=self.device == "cuda")

        layers = None if self.compile else profile
        if self.device == "cuda":
            timed = _capture_graph(call) if self.cuda_graph and not graph_inside else call
            return Runnable(timed, timer=CudaEventTimer(), conditions=conditions, fetch_output=fetch,
                            layer_profiler=layers)
        return Runnable(call, timer=HostTimer(), conditions=conditions, fetch_output=fetch, layer_profiler=layers)


def _capture_graph(call):
    """Capture ``call`` into a CUDA graph after a warm-up on a side stream; return its replay."""
    import torch

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            call()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        call()
    torch.cuda.synchronize()
    return graph.replay


def _hook_layer_times(module, call, runs: int, cuda: bool, warmup: int = 3):
    """Per-leaf-module times with forward hooks: host clock on CPU, CUDA events on GPU."""
    import torch

    rows: list[dict[str, Any]] = []
    pending: list[tuple[str, str, Any, Any, int]] = []
    starts: dict[int, Any] = {}
    state = {"run": -1}
    handles = []

    def pre(mod, _inp):
        if cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            starts[id(mod)] = ev
        else:
            starts[id(mod)] = time.perf_counter_ns()

    def make_post(name: str):
        def post(mod, _inp, _out):
            if state["run"] < 0:
                return
            if cuda:
                end = torch.cuda.Event(enable_timing=True)
                end.record()
                pending.append((name, type(mod).__name__, starts[id(mod)], end, state["run"]))
            else:
                dt = (time.perf_counter_ns() - starts[id(mod)]) / 1e3
                rows.append({"layer": name, "engine_node": name, "op": type(mod).__name__, "time_us": dt,
                             "run": state["run"]})
        return post

    for name, mod in module.named_modules():
        if name and not any(True for _ in mod.children()):
            handles.append(mod.register_forward_pre_hook(pre))
            handles.append(mod.register_forward_hook(make_post(name)))
    try:
        for _ in range(warmup):
            call()
        for run in range(runs):
            state["run"] = run
            call()
        if cuda:
            torch.cuda.synchronize()
            rows.extend({"layer": n, "engine_node": n, "op": op, "time_us": s.elapsed_time(e) * 1e3, "run": r}
                        for n, op, s, e, r in pending)
    finally:
        for h in handles:
            h.remove()
    return engine_layer_table(rows)
