"""ONNX Runtime: export through ``torch.onnx``, all graph optimisations, CPU (or CUDA) provider."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from latbench.backends.base import Backend, Runnable, engine_layer_table
from latbench.backends.export import OnnxNodeMap, onnx_source
from latbench.backends.fingerprint import cuda_fingerprint, host_fingerprint, package_version
from latbench.backends.inputs import as_numpy, check_input
from latbench.errors import ModelLoadError, first_line
from latbench.measure.timers import HostTimer

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime with ``ORT_ENABLE_ALL`` optimisations, sequential execution.

    ``device="cpu"`` uses the CPU execution provider with ``threads`` intra-op threads (ONNX
    Runtime's default, one per physical core, when None). ``device="cuda"`` uses the CUDA
    provider with inputs and outputs bound on the GPU; ``device="tensorrt"`` puts ONNX
    Runtime's TensorRT provider in front of it.
    """

    name = "onnxruntime"
    description = "ONNX Runtime, exported with torch.onnx, all graph optimisations"

    def unavailable_reason(self) -> str | None:
        try:
            import onnxruntime as ort
        except ImportError:
            return "the onnxruntime package is not installed (pip install onnxruntime)"
        if self.device not in _PROVIDERS:
            return f"unknown device {self.device!r} for onnxruntime (choose from {', '.join(_PROVIDERS)})"
        missing = [p for p in self._providers() if p not in ort.get_available_providers()]
        if missing:
            return (f"{', '.join(missing)} not in this onnxruntime build "
                    f"(has {', '.join(ort.get_available_providers())})")
        return None

    def _providers(self) -> list[str]:
        if self.device == "cpu":
            return [_PROVIDERS["cpu"]]
        if self.device == "cuda":
            return [_PROVIDERS["cuda"], _PROVIDERS["cpu"]]
        return [_PROVIDERS["tensorrt"], _PROVIDERS["cuda"], _PROVIDERS["cpu"]]

    def effective_threads(self) -> int:
        return self.threads or host_fingerprint()["physical_cores"] or os.cpu_count() or 1

    def fingerprint(self) -> dict[str, Any]:
        fp = dict(host_fingerprint())
        fp.update({
            "backend": self.name, "device": self.device, "precision": self.precision,
            "onnxruntime": package_version("onnxruntime") or package_version("onnxruntime-gpu"),
            "providers": self._providers(), "graph_optimization": "ORT_ENABLE_ALL",
            "threads": self.effective_threads() if self.device == "cpu" else None,
        })
        if self.device != "cpu":
            fp.update(cuda_fingerprint())
        return fp

    def _session(self, model_bytes: bytes, profile_dir: str | None = None):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.intra_op_num_threads = self.threads or 0
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        if profile_dir is not None:
            so.enable_profiling = True
            so.profile_file_prefix = str(Path(profile_dir) / "ort_profile")
        try:
            return ort.InferenceSession(model_bytes, so, providers=self._providers())
        except Exception as exc:
            raise ModelLoadError(f"onnxruntime cannot load the model: {first_line(exc)}") from exc

    def deploy(self, model: Any, example_input: Any = None) -> Runnable:
        onnx_model, model_bytes, module_names = onnx_source(model, example_input)
        session = self._session(model_bytes)
        meta = session.get_inputs()
        if len(meta) != 1:
            raise ModelLoadError(f"expected a model with one input, found {len(meta)}: {[m.name for m in meta]}")
        x = check_input(as_numpy(example_input, meta[0].type), meta[0].shape, meta[0].name)
        feed = {meta[0].name: x}
        conditions = {**self.fingerprint(), "batch": int(x.shape[0]), "dtype": str(x.dtype),
                      "input_shape": list(x.shape)}
        node_map = OnnxNodeMap(onnx_model, module_names)

        def profile_layers(runs: int, warmup: int = 5):
            with tempfile.TemporaryDirectory() as tmp:
                prof = self._session(model_bytes, profile_dir=tmp)
                for _ in range(warmup + runs):
                    prof.run(None, feed)
                events = json.loads(Path(prof.end_profiling()).read_text())
            return engine_layer_table(_kernel_rows(events, node_map, warmup))

        if self.device == "cpu":
            return Runnable(lambda: session.run(None, feed), timer=HostTimer(), conditions=conditions,
                            fetch_output=lambda: session.run(None, feed)[0], layer_profiler=profile_layers)
        return self._cuda_runnable(session, feed, conditions, profile_layers)

    def _cuda_runnable(self, session, feed: dict[str, np.ndarray], conditions: dict, profile_layers) -> Runnable:
        import onnxruntime as ort

        binding = session.io_binding()
        for name, value in feed.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
        for out in session.get_outputs():
            binding.bind_output(out.name, "cuda")

        def fetch() -> np.ndarray:
            session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()[0]

        # run_with_iobinding synchronises the provider's own CUDA stream before it returns, so the
        # host clock around it is a synchronised reading (events on torch's stream would not be).
        return Runnable(lambda: session.run_with_iobinding(binding), timer=HostTimer(), conditions=conditions,
                        fetch_output=fetch, layer_profiler=profile_layers)


def _kernel_rows(events: list[dict], node_map: OnnxNodeMap, warmup: int) -> list[dict[str, Any]]:
    """Per-run kernel times from ONNX Runtime's profiler events, mapped to source modules."""
    rows: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for ev in events:
        name = ev.get("name", "")
        if ev.get("cat") != "Node" or not name.endswith("_kernel_time"):
            continue
        node = name[: -len("_kernel_time")]
        run = seen.get(node, 0)
        seen[node] = run + 1
        if run < warmup:
            continue
        op = ev.get("args", {}).get("op_name", "")
        src = node_map.resolve(node, op)
        rows.append({"layer": src.module if src else "", "engine_node": node, "op": op,
                     "time_us": float(ev.get("dur", 0.0)), "run": run})
    return rows
