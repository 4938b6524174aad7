"""TensorRT: an engine built from the ONNX export (fp32 / fp16), timed with CUDA events.

Per-layer times come from TensorRT's ``IProfiler`` (called on synchronous ``execute_v2``); fused
layer names such as ``/layer1/conv1/Conv + /layer1/relu/Relu`` are mapped back to the module of
their first ONNX node. The ``tensorrt`` import is lazy: where it is missing the backend is listed
as unavailable with the reason.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from latbench.backends.base import Backend, Runnable, engine_layer_table
from latbench.backends.export import OnnxNodeMap, onnx_source
from latbench.backends.fingerprint import cuda_fingerprint, host_fingerprint
from latbench.backends.inputs import as_numpy, check_input
from latbench.errors import ExportError, first_line
from latbench.measure.timers import CudaEventTimer

WORKSPACE_BYTES = 1 << 30


class TensorRTBackend(Backend):
    name = "tensorrt"
    description = "NVIDIA TensorRT engine built from the ONNX export"
    precisions = ("fp32", "fp16")

    def __init__(self, device: str = "cuda", threads: int | None = None, precision: str = "fp32",
                 cuda_graph: bool = False) -> None:
        super().__init__(device, threads, precision)
        self.cuda_graph = cuda_graph

    def unavailable_reason(self) -> str | None:
        if self.device != "cuda":
            return "TensorRT runs on device cuda only"
        try:
            import torch
        except ImportError:
            return "torch is needed for CUDA buffers and events, and it is not installed"
        if not torch.cuda.is_available():
            return f"no CUDA device visible to torch {torch.__version__} (TensorRT needs an NVIDIA GPU)"
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return "the tensorrt Python package is not installed (pip install 'latbench[tensorrt]')"
        return None

    def fingerprint(self) -> dict[str, Any]:
        import tensorrt as trt

        fp = dict(host_fingerprint())
        fp.update({"backend": self.name, "device": self.device, "precision": self.precision,
                   "tensorrt": trt.__version__, "cuda_graph": self.cuda_graph, "threads": None})
        fp.update(cuda_fingerprint())
        return fp

    def _build(self, model_bytes: bytes):
        import tensorrt as trt

        logger = trt.Logger(trt.Logger.ERROR)
        builder = trt.Builder(logger)
        flags = 0 if int(trt.__version__.split(".")[0]) >= 10 else 1 << int(
            trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(model_bytes):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ExportError(f"TensorRT cannot parse the ONNX model: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
        if self.precision == "fp16":
            config.set_flag(trt.BuilderFlag.FP16)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise ExportError("TensorRT failed to build an engine for this network")
        return trt.Runtime(logger).deserialize_cuda_engine(serialized)

    def deploy(self, model: Any, example_input: Any = None) -> Runnable:
        import tensorrt as trt
        import torch

        onnx_model, model_bytes, module_names = onnx_source(model, example_input)
        try:
            engine = self._build(model_bytes)
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"TensorRT engine build failed: {first_line(exc)}") from exc
        context = engine.create_execution_context()

        buffers: dict[str, torch.Tensor] = {}
        input_name = output_name = None
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = list(engine.get_tensor_shape(name))
            dtype = trt.nptype(engine.get_tensor_dtype(name))
            if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                x = check_input(as_numpy(example_input), shape, name)
                buffers[name] = torch.from_numpy(x.astype(dtype)).cuda()
                input_name = input_name or name
            else:
                torch_dtype = torch.from_numpy(np.empty(0, dtype)).dtype
                buffers[name] = torch.empty(shape, dtype=torch_dtype, device="cuda")
                output_name = output_name or name
            context.set_tensor_address(name, buffers[name].data_ptr())

        def call() -> None:  # on the current stream, so CUDA graph capture on a side stream sees it
            context.execute_async_v3(torch.cuda.current_stream().cuda_stream)

        timed = call
        if self.cuda_graph:
            from latbench.backends.torch_backend import _capture_graph

            timed = _capture_graph(call)

        node_map = OnnxNodeMap(onnx_model, module_names)
        ordered = [buffers[engine.get_tensor_name(i)].data_ptr() for i in range(engine.num_io_tensors)]

        def profile(runs: int, warmup: int = 5):
            # a context of its own, so the profiler never slows the context that is timed
            rows: list[dict[str, Any]] = []
            profiled = engine.create_execution_context()
            profiler = _make_profiler(rows, node_map)
            profiled.profiler = profiler
            for run in range(warmup + runs):
                profiler.run = run - warmup
                profiled.execute_v2(ordered)
            return engine_layer_table([r for r in rows if r["run"] >= 0])

        def fetch():
            call()
            torch.cuda.synchronize()
            return buffers[output_name].float().cpu().numpy()

        x_shape = list(buffers[input_name].shape)
        conditions = {**self.fingerprint(), "batch": int(x_shape[0]), "dtype": self.precision, "input_shape": x_shape}
        return Runnable(timed, timer=CudaEventTimer(), conditions=conditions, fetch_output=fetch,
                        layer_profiler=profile)


def _make_profiler(rows: list[dict[str, Any]], node_map: OnnxNodeMap):
    import tensorrt as trt

    class _Profiler(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.run = 0

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            first = layer_name.split(" + ")[0].strip()
            src = node_map.resolve(first)
            rows.append({"layer": src.module if src else "", "engine_node": layer_name,
                         "op": src.op_type if src else "", "time_us": ms * 1e3, "run": self.run})

    return _Profiler()
