"""The full-width architecture of a profiled family, traced as the profiler traced it."""

from __future__ import annotations

import torch

from latbench.arch import Arch, trace
from latbench.models import build_model, get_entry


def trace_family(name: str, batch: int = 1) -> Arch:
    entry = get_entry(name)
    return trace(build_model(name), torch.zeros(batch, *entry.input_shape), name)
