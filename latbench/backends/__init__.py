"""Deployment backends. Engines are imported lazily, inside each backend, when it is used."""

from __future__ import annotations

import inspect
from importlib import import_module
from typing import Any

from latbench.backends.base import LAYER_COLUMNS, Backend, Runnable
from latbench.errors import BackendUnavailableError, UnknownBackendError

_REGISTRY: dict[str, tuple[str, str]] = {
    "onnxruntime": ("latbench.backends.onnxruntime_backend", "OnnxRuntimeBackend"),
    "torch": ("latbench.backends.torch_backend", "TorchBackend"),
    "tensorrt": ("latbench.backends.tensorrt_backend", "TensorRTBackend"),
}
DEFAULT_BACKEND = "onnxruntime"
DEFAULT_DEVICE = {"onnxruntime": "cpu", "torch": "cpu", "tensorrt": "cuda"}
# (backend, device) pairs that ``latbench backends`` reports on
LISTED = [("onnxruntime", "cpu"), ("onnxruntime", "cuda"), ("onnxruntime", "tensorrt"),
          ("torch", "cpu"), ("torch", "cuda"), ("tensorrt", "cuda")]


def backend_names() -> list[str]:
    return list(_REGISTRY)


def get_backend(name: str, **options: Any) -> Backend:
    """A backend by name; ``options`` are device, threads, precision (and cuda_graph where supported)."""
    if name not in _REGISTRY:
        raise UnknownBackendError(f"unknown backend {name!r}; choose from: {', '.join(_REGISTRY)}")
    module, cls = _REGISTRY[name]
    options = {k: v for k, v in options.items() if v is not None}
    options.setdefault("device", DEFAULT_DEVICE[name])
    backend_cls = getattr(import_module(module), cls)
    unsupported = sorted(set(options) - set(inspect.signature(backend_cls).parameters))
    if unsupported:
        raise BackendUnavailableError(f"backend {name!r} does not support option(s): {', '.join(unsupported)}")
    try:
        return backend_cls(**options)
    except ValueError as exc:
        raise BackendUnavailableError(str(exc)) from None


def require_backend(name: str, **options: Any) -> Backend:
    """Like ``get_backend``, but raise ``BackendUnavailableError`` naming what is missing."""
    backend = get_backend(name, **options)
    reason = backend.unavailable_reason()
    if reason is not None:
        raise BackendUnavailableError(f"backend {name!r} on {backend.device} is unavailable: {reason}")
    return backend


def list_backends() -> list[dict[str, Any]]:
    """Every listed (backend, device) with whether it is available here and, if not, why."""
    out = []
    for name, device in LISTED:
        backend = get_backend(name, device=device)
        reason = backend.unavailable_reason()
        out.append({"backend": name, "device": device, "available": reason is None,
                    "reason": reason or "", "description": backend.description})
    return out


__all__ = ["LAYER_COLUMNS", "Backend", "Runnable", "backend_names", "get_backend", "list_backends", "require_backend"]
