"""Built-in networks, by name. Each entry knows its default input shape (C, H, W)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from latbench.errors import UnknownModelError


@dataclass(frozen=True)
class ModelEntry:
    factory: Callable[..., Any]
    input_shape: tuple[int, int, int]
    description: str


def _small_conv(**kw: Any):
    from latbench.models.small import SmallConvNet

    return SmallConvNet(**kw)


REGISTRY: dict[str, ModelEntry] = {
    "smallconv": ModelEntry(_small_conv, (3, 32, 32), "3 conv-BN-ReLU stages (16-32-64 channels) and a linear head"),
}


def model_names() -> list[str]:
    return sorted(REGISTRY)


def get_entry(name: str) -> ModelEntry:
    if name not in REGISTRY:
        raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(model_names())}")
    return REGISTRY[name]


def build_model(name: str, **kwargs: Any):
    """A fresh, randomly initialised instance of a built-in network (eval mode)."""
    return get_entry(name).factory(**kwargs).eval()
