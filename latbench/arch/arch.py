"""``Arch``: a traced network as plain data. Candidates are (base, widths, removed blocks).

A candidate architecture is described without building a module: ``with_widths`` and
``without_blocks`` return new ``Arch`` values that share the traced base (layers, channel
groups, blocks) and differ only in a tuple of group widths and a set of removed blocks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from latbench.arch.spec import LayerSpec
from latbench.errors import LatbenchError
from latbench.jsonio import dump_json

SCHEMA = "latbench.arch/1"


class ArchError(LatbenchError):
    """An impossible candidate: unknown group or block, a width <= 0, a broken coupling."""


@dataclass(frozen=True)
class Layer:
    """One layer of the traced network. Channel counts come from groups: a layer reads the
    channels of ``in_groups`` (several when its input is a concatenation) and writes those of
    ``out_groups`` (its input's groups for depthwise convs and element-wise ops). ``inputs`` are the
    indices of the layers whose outputs it reads, -1 for the network input (empty when unknown)."""

    name: str
    spec: LayerSpec
    in_groups: tuple[int, ...]
    out_groups: tuple[int, ...]
    block: str | None = None
    inputs: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "spec": self.spec.to_dict(), "in_groups": list(self.in_groups),
                "out_groups": list(self.out_groups), "block": self.block, "inputs": list(self.inputs)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Layer:
        return cls(d["name"], LayerSpec.from_dict(d["spec"]), tuple(d["in_groups"]), tuple(d["out_groups"]),
                   d.get("block"), tuple(d.get("inputs", ())))


@dataclass(frozen=True)
class Group:
    """Channels that must stay equal across layers (a residual stage, a layer and its depthwise conv).

    ``fixed`` groups (the network's input and output) cannot change width.
    """

    id: int
    name: str
    channels: int
    fixed: bool
    layers: tuple[str, ...]


@dataclass(frozen=True)
class Block:
    """A residual block; ``removable`` when replacing it by identity keeps every shape."""

    name: str
    layers: tuple[str, ...]
    removable: bool
    reason: str = ""


@dataclass(frozen=True)
class ArchBase:
    """What tracing found; shared, unchanged, by every candidate derived from it."""

    name: str
    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    groups: tuple[Group, ...]
    blocks: tuple[Block, ...]

    @cached_property
    def digest(self) -> str:
        payload = json.dumps(_base_dict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()

    @cached_property
    def layers_digest(self) -> str:
        """Digest of the layer specs alone, names aside: one network traced from torch or from its ONNX file
        shares it."""
        payload = json.dumps([repr(layer.spec) for layer in self.layers], separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()

    @cached_property
    def group_by_key(self) -> dict[str, int]:
        """Group id by its id string, its name, and the names of the layers that write it."""
        keys: dict[str, int] = {}
        for g in self.groups:
            keys[str(g.id)] = g.id
            keys.setdefault(g.name, g.id)
        for layer in self.layers:
            if layer.spec.op in ("conv", "linear"):
                for gid in layer.out_groups:
                    keys.setdefault(layer.name, gid)
        return keys

    @cached_property
    def block_by_name(self) -> dict[str, Block]:
        return {b.name: b for b in self.blocks}


def _base_dict(base: ArchBase) -> dict[str, Any]:
    return {
        "name": base.name, "input_shape": list(base.input_shape),
        "layers": [layer.to_dict() for layer in base.layers],
        "groups": [{"id": g.id, "name": g.name, "channels": g.channels, "fixed": g.fixed, "layers": list(g.layers)}
                   for g in base.groups],
        "blocks": [{"name": b.name, "layers": list(b.layers), "removable": b.removable, "reason": b.reason}
                   for b in base.blocks],
    }


@dataclass(frozen=True)
class Arch:
    """A network description: traced base + current group widths + removed blocks."""

    base: ArchBase
    width_tuple: tuple[int, ...]
    removed: frozenset[str] = frozenset()

    @classmethod
    def from_base(cls, base: ArchBase) -> Arch:
        return cls(base, tuple(g.channels for g in base.groups))

    # --- views -------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.base.name

    @property
    def groups(self) -> tuple[Group, ...]:
        return self.base.groups

    @property
    def blocks(self) -> tuple[Block, ...]:
        return self.base.blocks

    @property
    def widths(self) -> dict[int, int]:
        """Group id -> channels, for every group."""
        return dict(enumerate(self.width_tuple))

    @property
    def prunable_groups(self) -> list[Group]:
        return [g for g in self.base.groups if not g.fixed]

    def active_layers(self) -> list[Layer]:
        """Layers that run: those not inside a removed block."""
        if not self.removed:
            return list(self.base.layers)
        return [layer for layer in self.base.layers if layer.block not in self.removed]

    def spec(self, layer: Layer) -> LayerSpec:
        """The layer's spec at this candidate's widths."""
        w = self.width_tuple
        cin = sum(w[g] for g in layer.in_groups)
        cout = sum(w[g] for g in layer.out_groups)
        s = layer.spec
        if s.in_channels == cin and s.out_channels == cout:
            return s
        if s.op == "dwconv" and cout == 1:  # one channel left: the engine runs (and a trace sees) a plain conv
            return replace(s, op="conv", in_channels=1, out_channels=1, groups=1)
        groups = cout if s.op == "dwconv" else s.groups
        return replace(s, in_channels=cin, out_channels=cout, groups=groups)

    def layer_specs(self) -> list[tuple[str, LayerSpec]]:
        return [(layer.name, self.spec(layer)) for layer in self.active_layers()]

    def channels(self) -> dict[str, int]:
        """Out channels of every conv and hidden linear layer, by module path: what a zoo model's
        ``channels=`` argument takes to rebuild this candidate."""
        out = {}
        for layer in self.base.layers:
            if layer.spec.op in ("conv", "linear") and not any(self.base.groups[g].fixed for g in layer.out_groups):
                out[layer.name] = sum(self.width_tuple[g] for g in layer.out_groups)
        return out

    # --- costs -------------------------------------------------------------------------------
    def flops(self) -> int:
        """FLOPs of one forward pass (2 per multiply-accumulate; conv and linear only)."""
        return sum(spec.flops() for _, spec in self.layer_specs())

    def macs(self) -> int:
        return sum(spec.macs() for _, spec in self.layer_specs())

    def params(self) -> int:
        return sum(spec.params() for _, spec in self.layer_specs())

    # --- candidates --------------------------------------------------------------------------
    def with_widths(self, widths: Mapping[int | str, int]) -> Arch:
        """A candidate with some groups resized. Keys: group id, group name, or the name of a
        conv/linear layer that writes the group. Two keys naming one group must agree."""
        new = list(self.width_tuple)
        seen: dict[int, tuple[Any, int]] = {}
        keys = self.base.group_by_key
        for key, value in widths.items():
            gid = keys.get(str(key))
            if gid is None:
                raise ArchError(f"{self.name}: no channel group or layer named {key!r} "
                                f"(groups 0..{len(new) - 1}; see `latbench inspect`)")
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ArchError(f"{self.name}: width for {key!r} must be a positive integer, got {value!r}")
            group = self.base.groups[gid]
            if group.fixed and value != group.channels:
                raise ArchError(f"{self.name}: group {gid} ({group.name}) is fixed at {group.channels} channels "
                                f"(network input or output), cannot set {value}")
            if gid in seen and seen[gid][1] != value:
                other = seen[gid][0]
                raise ArchError(f"{self.name}: {key!r}={value} breaks a coupling: it shares channel group {gid} "
                                f"with {other!r}={seen[gid][1]}")
            seen[gid] = (key, value)
            new[gid] = value
        return Arch(self.base, tuple(new), self.removed)

    def without_blocks(self, names: Iterable[str]) -> Arch:
        """A candidate with residual blocks replaced by identity."""
        removed = set(self.removed)
        for name in names:
            block = self.base.block_by_name.get(name)
            if block is None:
                known = ", ".join(b.name for b in self.base.blocks) or "none"
                raise ArchError(f"{self.name}: no block named {name!r} (blocks: {known})")
            if not block.removable:
                raise ArchError(f"{self.name}: block {name!r} cannot be removed: {block.reason}")
            removed.add(name)
        return Arch(self.base, self.width_tuple, frozenset(removed))

    def signature(self) -> str:
        """Stable hash of this candidate (base structure, widths, removed blocks)."""
        payload = json.dumps([self.base.digest, list(self.width_tuple), sorted(self.removed)], separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:20]

    def effective(self) -> tuple[tuple[str, LayerSpec], ...]:
        """What runs, layer by layer: equal for two descriptions of the same network."""
        return tuple(self.layer_specs())

    # --- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **_base_dict(self.base), "widths": list(self.width_tuple),
                "removed": sorted(self.removed)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Arch:
        if d.get("schema") != SCHEMA:
            raise ArchError(f"not a latbench architecture (schema {d.get('schema')!r}, expected {SCHEMA!r})")
        base = ArchBase(
            name=d["name"], input_shape=tuple(d["input_shape"]),
            layers=tuple(Layer.from_dict(x) for x in d["layers"]),
            groups=tuple(Group(g["id"], g["name"], g["channels"], g["fixed"], tuple(g["layers"])) for g in d["groups"]),
            blocks=tuple(Block(b["name"], tuple(b["layers"]), b["removable"], b.get("reason", ""))
                         for b in d["blocks"]),
        )
        arch = cls(base, tuple(d.get("widths") or [g.channels for g in base.groups]))
        return arch.without_blocks(d.get("removed", []))

    def to_json(self, path: str | Path | None = None) -> str:
        return dump_json(self.to_dict(), path, indent=1)

    @classmethod
    def from_json(cls, path: str | Path) -> Arch:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ArchError(f"cannot read architecture {path}: {exc}") from None
