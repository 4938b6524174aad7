"""Example inputs: parse shapes, build tensors, check them against a model's declared input."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from latbench.errors import InputShapeError
from latbench.measure.timers import CudaEventTimer, HostTimer, Timer

_ONNX_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def parse_shape(text: str) -> tuple[int, ...]:
    """Parse ``1x3x224x224`` (or commas) into a tuple of positive ints; one-line error otherwise."""
    parts = [p for p in re.split(r"[x,\s]+", str(text).strip().lower()) if p]
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise InputShapeError(f"malformed input shape {text!r}: expected positive integers like 1x3x32x32") from None
    if not dims or any(d <= 0 for d in dims):
        raise InputShapeError(f"malformed input shape {text!r}: expected positive integers like 1x3x32x32")
    return dims


def as_numpy(example: Any, onnx_type: str = "tensor(float)") -> np.ndarray | None:
    """A contiguous numpy array of ``example`` (torch tensor, array or None) in the model's dtype."""
    if example is None:
        return None
    if hasattr(example, "detach"):
        example = example.detach().cpu().numpy()
    return np.ascontiguousarray(example, dtype=_ONNX_DTYPES.get(onnx_type, np.float32))


def check_input(x: np.ndarray | None, declared: list, name: str) -> np.ndarray:
    """Validate (or, when None, synthesise from static dims) an input for a declared ONNX shape."""
    if x is None:
        if any(not isinstance(d, int) for d in declared):
            raise InputShapeError(f"input {name!r} has dynamic shape {declared}: give --input-shape")
        return np.random.default_rng(0).standard_normal(declared).astype(np.float32)
    if len(declared) != x.ndim or any(isinstance(d, int) and d != s for d, s in zip(declared, x.shape, strict=True)):
        raise InputShapeError(f"input shape {list(x.shape)} does not match the model's input {name!r} {declared}")
    return x


def gpu_timer() -> Timer:
    """CUDA events when torch sees a GPU; otherwise the host clock around a synchronous call."""
    try:
        import torch

        if torch.cuda.is_available():
            return CudaEventTimer()
    except ImportError:
        pass
    return HostTimer()
