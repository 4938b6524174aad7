"""Apply a pruning decision to a real module: kept channels per group, residual blocks removed.

Channel pruning goes through Torch-Pruning's dependency graph (one call per group removes a channel
from every conv, batch norm and reader it couples, residual stages and depthwise convs included), so
kept weights and batch-norm statistics are copied exactly. A removed residual block becomes
``nn.Identity`` (exact: a removable block's shortcut is its own input). The result is checked by a
forward pass and by tracing it: its ``Arch`` must equal the one the decision describes, so that the
latency predicted for the decision is the latency of the network that is measured.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from latbench.arch import Arch, ArchError, trace
from latbench.errors import ResizeError, first_line
from latbench.models.resize import check_matches, prune_channels
from pruners.errors import SurgeryError
from pruners.path_layers import remove_path_layers


@dataclass(frozen=True)
class Decision:
    """What to keep: channel indices per group (group id, group name or a writer's path; groups not
    named keep everything), the residual blocks to replace by identity, and the single-path conv
    layers to take out (``pruners.path_layers``)."""

    keep: Mapping[int | str, Sequence[int]] = field(default_factory=dict)
    remove_blocks: tuple[str, ...] = ()
    remove_layers: tuple[str, ...] = ()

    def resolved(self, arch: Arch) -> dict[int, tuple[int, ...]]:
        """Kept indices by group id, sorted and checked against ``arch``'s widths."""
        out: dict[int, tuple[int, ...]] = {}
        keys = arch.base.group_by_key
        for key, kept in self.keep.items():
            gid = keys.get(str(key))
            if gid is None:
                raise SurgeryError(f"{arch.name}: no channel group or layer named {key!r}")
            group = arch.groups[gid]
            width = arch.width_tuple[gid]
            idx = tuple(sorted({int(i) for i in kept}))
            if not idx:
                raise SurgeryError(f"{arch.name}: group {gid} ({group.name}) would keep no channel; keep at least one")
            if idx[0] < 0 or idx[-1] >= width:
                raise SurgeryError(f"{arch.name}: group {gid} ({group.name}) has {width} channels; "
                                   f"kept index {idx[0] if idx[0] < 0 else idx[-1]} is out of range")
            if group.fixed and len(idx) != width:
                raise SurgeryError(f"{arch.name}: group {gid} ({group.name}) is the network's input or output "
                                   f"and cannot be pruned")
            if gid in out and out[gid] != idx:
                raise SurgeryError(f"{arch.name}: two keys name group {gid} ({group.name}) with different channels")
            out[gid] = idx
        return out

    def arch(self, arch: Arch) -> Arch:
        """The candidate this decision describes: ``arch`` with the kept widths and blocks removed."""
        try:
            widths = {gid: len(idx) for gid, idx in self.resolved(arch).items()}
            return arch.with_widths(widths).without_blocks(self.remove_blocks)
        except ArchError as exc:
            raise SurgeryError(str(exc)) from None

    def to_dict(self) -> dict[str, Any]:
        return {"keep": {str(k): [int(i) for i in v] for k, v in self.keep.items()},
                "remove_blocks": list(self.remove_blocks), "remove_layers": list(self.remove_layers)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Decision:
        return cls({k: tuple(v) for k, v in d.get("keep", {}).items()}, tuple(d.get("remove_blocks", ())),
                   tuple(d.get("remove_layers", ())))


def keep_first(widths: Mapping[int, int]) -> dict[int, tuple[int, ...]]:
    """A decision's ``keep`` that keeps the first ``n`` channels of each group (for tests and structure-only use)."""
    return {gid: tuple(range(n)) for gid, n in widths.items()}


def apply(model: nn.Module, arch: Arch, decision: Decision, example: torch.Tensor,
          check_arch: bool = True) -> tuple[nn.Module, Arch]:
    """A pruned copy of ``model`` (``arch`` is its trace) and its ``Arch``; ``model`` is left unchanged.

    With layers removed the ``Arch`` is the trace of the result (an ``Arch`` describes widths and
    residual blocks, not a shortened path); the removed layers are checked to be gone from it.
    """
    target = decision.arch(arch)
    keep = decision.resolved(arch)
    pruned = copy.deepcopy(model).eval()
    for block in sorted(decision.remove_blocks):
        pruned.set_submodule(block, nn.Identity())
    cut = {gid: idx for gid, idx in keep.items() if len(idx) < arch.width_tuple[gid]}
    try:
        if cut:
            prune_channels(pruned, arch, cut, example)
    except ResizeError as exc:
        raise SurgeryError(str(exc)) from None
    if decision.remove_layers:
        remove_path_layers(pruned, target, decision.remove_layers)
        check_forward(model, pruned, example)
        target = trace(copy.deepcopy(pruned), example, arch.name)
        left = {layer.name for layer in target.base.layers} & set(decision.remove_layers)
        if left:
            raise SurgeryError(f"{arch.name}: layers {sorted(left)} are still in the network after removal")
        return pruned, target
    check_forward(model, pruned, example)
    if check_arch:
        try:
            check_matches(pruned, target, example)
        except ResizeError as exc:
            raise SurgeryError(str(exc)) from None
    return pruned, target


def check_forward(original: nn.Module, pruned: nn.Module, example: torch.Tensor) -> None:
    """Run the pruned module once; its output must have the original's shape and be finite."""
    with torch.no_grad():
        try:
            out = pruned.eval()(example)
        except Exception as exc:  # any failure here means the surgery broke the network
            raise SurgeryError(f"the pruned network does not run: {first_line(exc)}") from exc
        ref = original.eval()(example)
    if out.shape != ref.shape:
        raise SurgeryError(f"the pruned network outputs {list(out.shape)}, the original {list(ref.shape)}")
    if not torch.isfinite(out).all():
        raise SurgeryError("the pruned network outputs non-finite values")


