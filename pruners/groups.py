"""Channel groups of a real module: which layers write, normalise and read each prunable ``Arch`` group.

``latbench.trace`` finds the groups of a network as plain data (a residual stage is one group, a
depthwise conv shares its input's group). Torch-Pruning's dependency graph finds the same coupling on
the module itself. :func:`channel_groups` asks the dependency graph, from one writer of every
prunable ``Arch`` group, which modules a channel of that group touches, and checks that both agree,
so importance criteria and surgery name the same channels that the latency predictors price.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch_pruning as tp
from torch import nn

from latbench.arch import Arch
from latbench.models.resize import dependency_graph, is_depthwise, out_handler, regular_writers
from pruners.errors import SurgeryError


@dataclass(frozen=True)
class ChannelGroup:
    """One prunable channel group of a module.

    ``writers`` are the convs/linears whose output channels are this group's channels (their filters,
    depthwise convs included), ``norms`` the batch norms over them, ``readers`` the convs/linears that
    take them as input channels. Paths are ``named_modules()`` names.
    """

    id: int
    name: str
    channels: int
    writers: tuple[str, ...]
    norms: tuple[str, ...]
    readers: tuple[str, ...]

    @property
    def root(self) -> str:
        """The writer pruning starts from: the first regular (non-depthwise) conv or linear."""
        return self.writers[0]


def channel_groups(model: nn.Module, arch: Arch, example: torch.Tensor,
                   graph: tp.DependencyGraph | None = None) -> list[ChannelGroup]:
    """Every prunable group of ``arch`` (the trace of ``model``) with its writers, norms and readers."""
    graph = graph or dependency_graph(model, example)
    modules = dict(model.named_modules())
    names = {id(m): n for n, m in modules.items()}
    found = []
    for group in arch.prunable_groups:
        roots = regular_writers(group.layers, modules)
        if not roots:
            raise SurgeryError(f"{arch.name}: group {group.id} ({group.name}) has no conv or linear writer "
                               f"in the module")
        root = modules[roots[0]]
        dep_group = graph.get_pruning_group(root, out_handler(root), idxs=[0])
        writers, norms, readers = [], [], []
        for dep, _ in dep_group:
            mod = dep.target.module
            name = names.get(id(mod))
            if name is None:
                continue
            into = dep.handler.__name__ == "prune_in_channels"
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                (readers if into and not is_depthwise(mod) else writers).append(name)
            elif isinstance(mod, nn.modules.batchnorm._BatchNorm):
                norms.append(name)
        writers = sorted(set(writers), key=lambda n: (n != roots[0], list(modules).index(n)))
        expected = set(group.layers)
        if set(writers) != expected:
            raise SurgeryError(f"{arch.name}: group {group.id} ({group.name}): the dependency graph couples "
                               f"{sorted(writers)} but the trace found {sorted(expected)}")
        order = list(modules)
        found.append(ChannelGroup(group.id, group.name, group.channels, tuple(writers),
                                  tuple(sorted(set(norms), key=order.index)),
                                  tuple(sorted(set(readers), key=order.index))))
    return found
