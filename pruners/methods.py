"""The registry of pruning methods: one line per method (see ``pruners.method`` for what a method is)."""

from __future__ import annotations

from pruners import baselines, hilp, lap, layerprune, splamp
from pruners.errors import PruningError
from pruners.method import Method

METHODS: dict[str, Method] = {}


def register_method(method: Method) -> None:
    """Make ``method`` available to ``prune`` and ``latbench prune`` under ``method.name``."""
    if not method.name or not method.name.isidentifier():
        raise PruningError(f"a pruning method needs a name that is an identifier, not {method.name!r}")
    METHODS[method.name] = method


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise PruningError(f"unknown pruning method {name!r}; available: {', '.join(method_names())}")
    return METHODS[name]


def method_names() -> list[str]:
    return sorted(METHODS)


register_method(baselines.UNIFORM)
register_method(baselines.GLOBAL)
register_method(splamp.METHOD)
register_method(hilp.METHOD)
register_method(layerprune.METHOD)
register_method(lap.METHOD)
