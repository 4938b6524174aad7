"""Any traced network at other widths and without some residual blocks, by surgery on the module itself.

The built-in networks take their widths as a constructor argument; a user's factory, a torchvision model
or any other module does not. :func:`resize` builds such a network's candidate from the full-width
module: each removed residual block becomes ``nn.Identity`` (exact: a removable block's shortcut is its
own input) and each narrowed channel group keeps its first channels, removed through Torch-Pruning's
dependency graph, which narrows every conv, batch norm and reader the group couples (residual stages and
depthwise convs included). The result is traced and must equal the candidate, layer by layer, so the
network that is measured is the one that is predicted. The pruning front-end's surgery uses the same
steps with the channels its criteria choose.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from latbench.arch import Arch, trace
from latbench.errors import ResizeError


def dependency_graph(model: nn.Module, example: torch.Tensor):
    """Torch-Pruning's dependency graph of ``model`` at ``example`` (the model is left in eval mode)."""
    import torch_pruning as tp

    model.eval()
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=example)
    except Exception as exc:  # the graph builder runs the model: any failure there is the model's
        raise ResizeError(f"cannot build the dependency graph of {type(model).__name__}: {exc}") from exc


def out_handler(module: nn.Module):
    """Torch-Pruning's out-channel pruning function for a writer module."""
    import torch_pruning as tp

    if isinstance(module, nn.Linear):
        return tp.prune_linear_out_channels
    if isinstance(module, nn.Conv2d):
        return tp.prune_conv_out_channels
    raise ResizeError(f"cannot prune output channels of {type(module).__name__}; only Conv2d and Linear")


def is_depthwise(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and module.groups > 1 and module.groups == module.out_channels


def regular_writers(names: tuple[str, ...], modules: dict[str, nn.Module]) -> list[str]:
    """The writers among ``names`` still in ``modules`` that pruning can start from: regular (non-depthwise)
    convs and linears, in order."""
    return [n for n in names if isinstance(modules.get(n), (nn.Conv2d, nn.Linear)) and not is_depthwise(modules[n])]


def prune_channels(model: nn.Module, arch: Arch, cut: Mapping[int, Sequence[int]], example: torch.Tensor) -> None:
    """Keep only ``cut[group id]``'s channel indices of each group of ``model`` (``arch`` is its trace), in place."""
    graph = dependency_graph(model, example)
    modules = dict(model.named_modules())
    for gid, kept in cut.items():
        group = arch.groups[gid]
        roots = regular_writers(group.layers, modules)
        if not roots:  # every writer sits in a removed block: nothing of this group runs any more
            continue
        root = modules[roots[0]]
        width = root.out_channels if isinstance(root, nn.Conv2d) else root.out_features
        if width != arch.width_tuple[gid]:
            raise ResizeError(f"{arch.name}: {roots[0]} has {width} output channels but the architecture says "
                              f"{arch.width_tuple[gid]}; trace the module you resize")
        drop = sorted(set(range(width)) - set(kept))
        dep_group = graph.get_pruning_group(root, out_handler(root), idxs=drop)
        if not graph.check_pruning_group(dep_group):
            raise ResizeError(f"{arch.name}: cutting group {gid} ({group.name}) to {len(kept)} channels "
                              f"would empty a layer")
        dep_group.prune()


def check_matches(module: nn.Module, expected: Arch, example: torch.Tensor) -> None:
    """Trace ``module``; every layer that runs must equal the ``expected`` candidate's, name and spec."""
    got = trace(copy.deepcopy(module), example, expected.name).effective()
    want = expected.effective()
    if got == want:
        return
    got_d, want_d = dict(got), dict(want)
    for name in list(want_d) + [n for n in got_d if n not in want_d]:
        if got_d.get(name) != want_d.get(name):
            raise ResizeError(f"{expected.name}: after surgery layer {name} is {_short(got_d.get(name))}, "
                              f"expected {_short(want_d.get(name))}")
    raise ResizeError(f"{expected.name}: after surgery the layer order differs from the one expected")


def _short(spec: Any) -> str:
    if spec is None:
        return "absent"
    return f"{spec.op} {spec.in_channels}->{spec.out_channels}"


def resize(model: nn.Module, arch: Arch, candidate: Arch, example: torch.Tensor) -> nn.Module:
    """A copy of ``model`` (``arch`` is its full-width trace) built to ``candidate``: the candidate's removed
    blocks replaced by identity and every narrower group keeping its first channels; ``model`` is unchanged."""
    if candidate.base.digest != arch.base.digest:
        raise ResizeError(f"{candidate.name}: the candidate is not a variant of {arch.name}'s architecture")
    resized = copy.deepcopy(model).eval()
    for block in sorted(candidate.removed):
        resized.set_submodule(block, nn.Identity())
    cut = {gid: tuple(range(w)) for gid, (w, full) in enumerate(zip(candidate.width_tuple, arch.width_tuple,
                                                                      strict=True)) if w < full}
    if any(w > full for w, full in zip(candidate.width_tuple, arch.width_tuple, strict=True)):
        raise ResizeError(f"{candidate.name}: a candidate wider than the network it is cut from cannot be built")
    if cut:
        prune_channels(resized, arch, cut, example)
    check_matches(resized, candidate, example)
    return resized
