"""Many candidates of one base architecture as arrays: per-layer channel counts and activity.

Search algorithms ask about thousands of candidates that share a traced base. Stacking their
width tuples into a matrix turns every per-layer quantity into one numpy operation per layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from latbench.arch import Arch, ArchBase


@dataclass
class CandidateBatch:
    base: ArchBase
    cin: np.ndarray  # (N, L) input channels of every layer
    cout: np.ndarray  # (N, L) output channels
    active: np.ndarray  # (N, L) bool: layer runs (its block is not removed)

    @classmethod
    def of(cls, archs: Sequence[Arch]) -> CandidateBatch:
        base = archs[0].base
        if any(a.base is not base and a.base.digest != base.digest for a in archs):
            raise ValueError("a CandidateBatch holds candidates of one base architecture")
        widths = np.array([a.width_tuple for a in archs], dtype=np.int64)
        n_groups = widths.shape[1]
        layers = base.layers
        sel_in = np.zeros((n_groups, len(layers)), dtype=np.int64)
        sel_out = np.zeros((n_groups, len(layers)), dtype=np.int64)
        for j, layer in enumerate(layers):
            for g in layer.in_groups:
                sel_in[g, j] += 1
            for g in layer.out_groups:
                sel_out[g, j] += 1
        blocks = [layer.block for layer in layers]
        active = np.ones((len(archs), len(layers)), dtype=bool)
        for i, a in enumerate(archs):
            if a.removed:
                active[i] = [b not in a.removed for b in blocks]
        return cls(base, widths @ sel_in, widths @ sel_out, active)

    def weights(self) -> np.ndarray:
        """(N, L) weights of every active layer (conv, depthwise conv, linear; 0 for the rest)."""
        w = np.zeros(self.cin.shape, dtype=np.float64)
        for j, layer in enumerate(self.base.layers):
            s = layer.spec
            if s.op == "linear":
                w[:, j] = self.cin[:, j] * s.in_mult * self.cout[:, j]
            elif s.op in ("conv", "dwconv"):
                per_group_in = 1 if s.op == "dwconv" else self.cin[:, j]
                w[:, j] = self.cout[:, j] * per_group_in * s.kernel[0] * s.kernel[1]
        return w * self.active

    def flops(self) -> np.ndarray:
        """(N,) FLOPs per candidate, LayerSpec's convention, without building specs."""
        per_position = np.array([layer.spec.batch * (1 if layer.spec.op == "linear" else np.prod(layer.spec.out_hw))
                                 for layer in self.base.layers], dtype=np.float64)
        return 2.0 * (self.weights() * per_position).sum(axis=1)


def group_by_base(archs: Sequence[Arch]) -> tuple[list[list[Arch]], np.ndarray]:
    """Candidates grouped by base (first-seen order) and the original index of each, grouped."""
    groups: dict[str, list[int]] = {}
    for i, a in enumerate(archs):
        groups.setdefault(a.base.digest, []).append(i)
    order = np.array([i for idx in groups.values() for i in idx], dtype=np.int64)
    return [[archs[i] for i in idx] for idx in groups.values()], order
