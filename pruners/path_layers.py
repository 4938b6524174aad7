"""Removing a whole conv layer from a single-path network (VGG), reconciling its neighbours' channels.

A conv can go when it keeps the spatial size (stride 1, "same" padding), is the only writer of its
output channels and sits in no residual block. With it go the batch norm and activation that follow
it. Its readers then receive the removed layer's *input* channels: where there are fewer of them,
each reader keeps the input slices with the largest L1 norm; where there are more, the reader's new
input slices start at zero (the network computes what it did on the channels it had; fine-tuning
teaches it the rest).
"""

from __future__ import annotations

import torch
from torch import fx, nn

from latbench.arch import Arch
from latbench.arch.trace import ACTIVATIONS
from pruners.errors import SurgeryError


def path_layers(arch: Arch) -> list[str]:
    """Conv layers of ``arch`` that :func:`remove_path_layers` can take out."""
    found = []
    writers = {g.id: g.layers for g in arch.groups}
    for layer in arch.base.layers:
        s = layer.spec
        if s.op != "conv" or layer.block is not None or len(layer.out_groups) != 1 or len(layer.in_groups) != 1:
            continue
        (out,) = layer.out_groups
        same_size = s.stride == (1, 1) and s.dilation == (1, 1) and all(2 * p == k - 1 for p, k in
                                                                         zip(s.padding, s.kernel, strict=True))
        if same_size and writers[out] == (layer.name,) and not arch.groups[out].fixed:
            found.append(layer.name)
    return found


def remove_path_layers(model: nn.Module, arch: Arch, names: tuple[str, ...]) -> None:
    """Take the conv layers ``names`` (with their batch norm and activation) out of ``model`` in place.

    ``arch`` is the trace of ``model`` as it is now (after any channel pruning).
    """
    allowed = set(path_layers(arch))
    order = {layer.name: i for i, layer in enumerate(arch.base.layers)}
    for name in names:
        if name not in allowed:
            raise SurgeryError(f"{arch.name}: layer {name!r} cannot be removed: only stride-1, same-size convs "
                               f"on a single path are (candidates: {', '.join(path_layers(arch)) or 'none'})")
    by_name = {layer.name: layer for layer in arch.base.layers}
    graph = fx.symbolic_trace(model).graph
    modules = dict(model.named_modules())
    for name in sorted(names, key=order.__getitem__):  # in network order: a reader removed later is reconciled first
        layer = by_name[name]
        conv = modules[name]
        chain = _followers(graph, name, modules)
        for reader in _readers(arch, layer.out_groups[0]):
            _reconcile(modules[reader], conv.in_channels, conv.out_channels)
        for path in (name, *chain):
            model.set_submodule(path, nn.Identity())


def _followers(graph: fx.Graph, name: str, modules: dict[str, nn.Module]) -> list[str]:
    """The batch norm and activation modules that directly and only follow conv ``name``."""
    node = next(n for n in graph.nodes if n.op == "call_module" and n.target == name)
    chain = []
    while len(node.users) == 1:
        (nxt,) = node.users
        mod = modules.get(str(nxt.target)) if nxt.op == "call_module" else None
        if not isinstance(mod, (nn.BatchNorm2d, *ACTIVATIONS)):
            break
        chain.append(str(nxt.target))
        node = nxt
    return chain


def _readers(arch: Arch, group: int) -> list[str]:
    return [layer.name for layer in arch.base.layers
            if group in layer.in_groups and layer.spec.op in ("conv", "linear")]


@torch.no_grad()
def _reconcile(reader: nn.Module, new_in: int, old_in: int) -> None:
    """Give ``reader`` ``new_in`` input channels instead of ``old_in``."""
    if isinstance(reader, nn.Conv2d) and reader.groups != 1:
        raise SurgeryError("a depthwise or grouped conv reads the removed layer; remove a layer before a regular one")
    weight = reader.weight
    if weight.shape[1] != old_in:
        raise SurgeryError(f"a reader of the removed layer takes {weight.shape[1]} inputs, not {old_in} "
                           f"(flattened spatial inputs are not supported)")
    if new_in < old_in:
        norms = weight.abs().transpose(0, 1).reshape(old_in, -1).sum(1)
        keep = torch.sort(torch.topk(norms, new_in, sorted=False).indices).values
        new = weight[:, keep].clone()
    else:
        new = torch.zeros(weight.shape[0], new_in, *weight.shape[2:], dtype=weight.dtype)
        new[:, :old_in] = weight
    reader.weight = nn.Parameter(new)
    if isinstance(reader, nn.Conv2d):
        reader.in_channels = new_in
    else:
        reader.in_features = new_in
