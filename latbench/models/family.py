"""A network family as a profile knows it: the name a user gave, how to rebuild it, and what it was.

A family is a built-in network, ``torchvision:NAME``, a user's factory (``package.module:function``,
``path/to/file.py:function``) or an ONNX file of supported ops. Every candidate of a family is built
from that source: the built-in networks by their constructor (``build_candidate``), the others by
surgery on the full-width network (:mod:`latbench.models.resize`). The ``digest`` of the full-width
trace is recorded with the profile, so a family whose source now builds another network is refused
instead of being mixed with the old samples.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

from latbench.arch import Arch, trace
from latbench.errors import InputShapeError, ModelLoadError, ProfileError
from latbench.models import REGISTRY, TORCHVISION_PREFIX, build_candidate, is_factory, resolve_model

_MODULES: dict[str, torch.nn.Module] = {}  # full-width modules of non-built-in families, built once per process
_TRACES: dict[tuple[str, tuple[int, ...], int], Arch] = {}


@dataclass(frozen=True)
class Family:
    """``name`` (its source), the input shape (C, H, W) and the digest of its full-width trace."""

    name: str
    input_shape: tuple[int, int, int]
    digest: str = ""

    @property
    def kind(self) -> str:
        if self.name in REGISTRY:
            return "zoo"
        if self.name.lower().endswith(".onnx"):
            return "onnx"
        return "torchvision" if self.name.startswith(TORCHVISION_PREFIX) else "factory"

    def module(self) -> torch.nn.Module:
        """The full-width network (built once per process for a factory or torchvision)."""
        if self.kind == "zoo":
            return resolve_model(self.name)
        if self.name not in _MODULES:
            _MODULES[self.name] = resolve_model(self.name)
        return _MODULES[self.name]

    def example(self, batch: int = 1) -> torch.Tensor:
        return torch.zeros(batch, *self.input_shape)

    def trace(self, batch: int = 1) -> Arch:
        """The full-width architecture at ``batch``, as the profiler traces it (traced once per process)."""
        key = (self.name, self.input_shape, batch)
        if key not in _TRACES:
            _TRACES[key] = trace(self.module(), self.example(batch), self.name)
        return _TRACES[key]

    def build(self, candidate: Arch) -> torch.nn.Module:
        """The real module of a candidate of this family (its widths, its removed blocks)."""
        if self.kind == "zoo":
            return build_candidate(self.name, candidate)
        from latbench.models.resize import resize

        example = self.example(candidate.base.input_shape[0] if candidate.base.input_shape else 1)
        return resize(self.module(), self.trace(example.shape[0]), candidate, example)

    def checked(self) -> Family:
        """This family with its digest; refused when a recorded digest differs from what the source builds now."""
        digest = self.trace(1).base.digest
        if self.digest and self.digest != digest:
            raise ModelLoadError(f"family {self.name!r} now builds a different network than the one recorded "
                                 f"(architecture digest {digest[:12]}, recorded {self.digest[:12]}); "
                                 f"give it another name or profile it into a new folder")
        return replace(self, digest=digest)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "input_shape": list(self.input_shape), "digest": self.digest}


def family(name: str, input_shape: tuple[int, ...] | None = None) -> Family:
    """The family of ``name``: a built-in network knows its input shape; any other needs ``input_shape``."""
    if name in REGISTRY:
        shape = REGISTRY[name].input_shape
        if input_shape is not None and tuple(input_shape) != shape:
            raise InputShapeError(f"{name} takes input {'x'.join(map(str, shape))}, not "
                                  f"{'x'.join(map(str, input_shape))}")
        return Family(name, shape)
    if name.lower().endswith(".onnx") and input_shape is None:
        from latbench.models.onnx_import import onnx_input_shape

        input_shape = onnx_input_shape(name)
    if not (is_factory(name) or name.startswith(TORCHVISION_PREFIX) or name.lower().endswith(".onnx")):
        resolve_model(name)  # an unknown name: one line listing the built-in networks
    if input_shape is None:
        raise InputShapeError(f"{name}: give its input shape (e.g. --input-shape 3x32x32)")
    if len(input_shape) != 3:
        raise InputShapeError(f"{name}: the input shape is C x H x W, got {'x'.join(map(str, input_shape))}")
    return Family(name, tuple(int(v) for v in input_shape))  # type: ignore[arg-type]


def recorded_families(meta: dict[str, Any], new: bool = False) -> dict[str, Family]:
    """A profile's families from its ``profile.json``: each with the input shape and digest recorded (profiles
    written before sources were recorded hold built-in networks only). ``new``: a family without a recorded
    source is one being added, and left out; otherwise it is a corrupt profile."""
    sources = meta.get("family_sources", {})
    out = {}
    for name in meta.get("families", []):
        src = sources.get(name)
        if src:
            out[name] = Family(name, tuple(src["input_shape"]), src.get("digest", ""))
        elif name in REGISTRY:
            out[name] = family(name)
        elif not new:
            raise ProfileError(f"profile.json lists the family {name!r} without the source to rebuild it")
    return out
