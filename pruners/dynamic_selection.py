"""LAP's dynamic filter selection: which filters to keep once a group's width is decided.

- **Dynamic scores.** A copy of the trained network is fine-tuned for a short window
  (``batches`` SGD steps); ``FilterDynamics`` compares every filter before and after (its norm over
  the writer's mean norm, times ``1 + (1 - acs) / 2`` with ``acs`` the adjusted cosine similarity of
  its two states, ``pruners.importance``): a filter that is large and still turning is kept first.
- **Regrowth.** A selection is checked on the network it describes: every prunable group gets a
  gate (1 for kept channels, 0 for dropped ones) multiplied onto the output of its batch norms (or
  of its writers where it has none), so the gated network computes exactly what the pruned one
  would (a dropped gate sits at ``DROPPED_GATE``, just above 0, so that a following ReLU passes the
  one-sided derivative of restoring it). Over ``batches`` training batches (batch norms frozen) the
  gradient of the loss with respect to each gate is accumulated: for a kept channel ``|dL/dg|`` is the first-order loss
  change of removing it, for a dropped one the change of restoring it (Taylor on a gate, Molchanov
  et al. 2019). Per group, the dropped channel with the largest ``|dL/dg|`` replaces the kept one
  with the smallest while it is larger, at most ``ceil(fraction * kept)`` swaps per group: pruned
  filters that turn out important grow back.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from pruners.errors import PruningError
from pruners.groups import ChannelGroup
from pruners.importance import FilterDynamics, Scores
from pruners.train import sgd_steps

#: a dropped channel's gate: not 0, where a following ReLU's derivative is 0, but just above it, so that its
#: gradient is the one-sided derivative of restoring the channel; the forward pass differs from the pruned
#: network's by this fraction of the channel
DROPPED_GATE = 1e-4


def _batches(loader: Iterable, n: int):
    if loader is None:
        raise PruningError("dynamic filter selection needs training data (a train_loader)")
    for i, batch in enumerate(loader):
        if i >= n:
            return
        yield batch[0], batch[1]


def dynamic_scores(model: nn.Module, groups: Sequence[ChannelGroup], loader: Iterable, batches: int = 20,
                   lr: float = 0.01, momentum: float = 0.9) -> Scores:
    """Group id -> per-channel dynamic score after a ``batches``-step SGD window on a copy of ``model``."""
    if batches < 1:
        raise PruningError(f"the dynamics window needs at least 1 batch, got {batches}")
    work = copy.deepcopy(model).train()
    dynamics = FilterDynamics()
    dynamics.record(work)
    sgd_steps(work, _batches(loader, batches), batches, lr, momentum)  # _batches refuses a missing loader
    dynamics.record(work)
    return dynamics.scores(groups)


def gate_gradients(model: nn.Module, groups: Sequence[ChannelGroup], keep: dict[int, Sequence[int]],
                   loader: Iterable, batches: int = 8) -> dict[int, torch.Tensor]:
    """Group id -> ``|dL/dg|`` per channel, accumulated over ``batches`` batches, with every group gated by
    ``keep`` (kept channel indices; a group not in ``keep`` keeps all)."""
    work = copy.deepcopy(model).eval()
    modules = dict(work.named_modules())
    gates: dict[int, torch.Tensor] = {}
    hooks = []
    for g in groups:
        gate = torch.full((g.channels,), DROPPED_GATE)
        gate[list(keep.get(g.id, range(g.channels)))] = 1.0
        gates[g.id] = gate.requires_grad_(True)
        for path in g.norms or g.writers:
            hooks.append(modules[path].register_forward_hook(_gate_hook(gates[g.id])))
    try:
        for p in work.parameters():
            p.requires_grad_(False)
        for x, y in _batches(loader, batches):
            nn.functional.cross_entropy(work(x), y).backward()
    finally:
        for h in hooks:
            h.remove()
    return {gid: (gate.grad.abs() if gate.grad is not None else torch.zeros_like(gate)).detach()
            for gid, gate in gates.items()}


def _gate_hook(gate: torch.Tensor):
    def hook(_module: nn.Module, _inputs: Any, out: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (out.dim() - 2)
        return out * gate.view(shape)
    return hook


def regrow(keep: dict[int, Sequence[int]], gradients: dict[int, torch.Tensor], fraction: float = 0.1
           ) -> tuple[dict[int, tuple[int, ...]], dict[int, list[tuple[int, int]]]]:
    """Swap dropped channels with large gate gradients for kept ones with small ones (module doc).

    Returns the new kept indices per group and the swaps made, ``(grown, dropped)`` per group."""
    if not 0.0 <= fraction <= 1.0:
        raise PruningError(f"regrow fraction must be in [0, 1], got {fraction}")
    out: dict[int, tuple[int, ...]] = {}
    swaps: dict[int, list[tuple[int, int]]] = {}
    for gid, kept in keep.items():
        grad = gradients[gid]
        kept_set = set(int(i) for i in kept)
        dropped = sorted((i for i in range(len(grad)) if i not in kept_set), key=lambda i: -float(grad[i]))
        weakest = sorted(kept_set, key=lambda i: float(grad[i]))
        limit = math.ceil(fraction * len(kept_set))
        made = []
        for grown, gone in zip(dropped, weakest, strict=False):
            if len(made) >= limit or float(grad[grown]) <= float(grad[gone]):
                break
            made.append((grown, gone))
        for grown, gone in made:
            kept_set.discard(gone)
            kept_set.add(grown)
        out[gid] = tuple(sorted(kept_set))
        if made:
            swaps[gid] = made
    return out, swaps
