"""Channel and block importance: which filters of a channel group, and which residual blocks, matter least.

Notation: a *writer* is a conv or linear that writes a group's channels (see :mod:`pruners.groups`); its
*filter* ``F_c`` is output channel ``c`` of its weight, flattened (``weight[c]``: ``in/groups * kh * kw``
values for a conv, depthwise included, one row for a linear). Biases are not part of a filter. Every score
is computed in float64 on the CPU; higher means more important.

Per-writer scores (:func:`writer_scores`), for filter ``c`` of writer ``w``:

* ``l1``: ``sum |F_c|``; ``l2``: ``sqrt(sum F_c^2)``.
* ``fpgm`` (He et al. 2019): ``sum_{j != c} ||F_c - F_j||_2`` over the other filters ``j`` of the same writer;
  a filter close to all others (near the geometric median) is redundant and scores low.
* ``taylor`` (Molchanov et al. 2019, first order): ``sum_b |sum_i F_c[i] * dL_b/dF_c[i]|`` over the first
  ``max_batches`` batches ``b`` of ``(x, y)`` pairs, ``L_b`` the mean cross-entropy of batch ``b``. The model
  runs in eval mode (batch-norm statistics frozen); gradients are taken with ``torch.autograd.grad``, so no
  ``.grad`` is created or changed, and ``requires_grad``, train/eval mode are restored afterwards.
* ``bn_scale``: ``|gamma_c|`` of the writer's own batch norm (the group norm that directly follows the writer
  in ``named_modules()`` order); a writer without one falls back to its ``l1``.
* ``lamp``: ``||F_c||_2^2`` (the energy that the group-level LAMP transform then ranks).

Each criterion is a :class:`Criterion` registered by name in :data:`CRITERIA` (``register_criterion`` adds
one; ``criterion(model, groups)`` scores). Torch-Pruning's group importances are not reused for these: they
also score the readers' input slices and the norms of a group, a different quantity; the ``global``
baseline uses Torch-Pruning's own.

Group scores (:func:`score`), one per channel of group ``g``:

* ``l1``, ``l2``, ``taylor``, ``fpgm``: the mean over ``g``'s writers of their per-writer scores (the same
  reduction as Torch-Pruning's default group importance).
* ``bn_scale``: the mean over ``g``'s affine batch norms of ``|gamma_c|``; a group without one falls back to
  ``l1``.
* ``lamp`` (SP-LAMP, LAMP of Lee et al. 2021 carried from weights to filters): ``s_c = sum_w ||F_c^w||_2^2``
  over ``g``'s writers, then :func:`lamp_transform`. The largest channel of every group scores exactly 1.

:func:`lamp_transform`: order the values ascending, ties broken so that the lower index ranks higher (comes
later), and give the value at sorted position ``u`` the score ``s_u / sum_{v >= u} s_v``; a position whose
tail sum is 0 scores 0, and the last position (the top channel) always scores exactly 1, also when every
value is 0, so a global LAMP threshold never empties a group.

Dynamic importance (:class:`FilterDynamics`, LAP's dynamic filter selection), from the first snapshot ``0``
and the last snapshot ``T`` of a writer's weights: centre each snapshot's filters by that snapshot's mean
filter, ``G_c^t = F_c^t - mean_j F_j^t``; ``acs_c = <G_c^0, G_c^T> / (||G_c^0|| ||G_c^T||)`` (0 when either
norm is 0); ``m_c = ||F_c^T||_2 / mean_j ||F_j^T||_2`` (0 when that mean is 0); and
``score_c = m_c * (1 + (1 - acs_c) / 2)``. A filter's final weight sets the base; turning under the loss
raises it by up to 2x (``acs = -1``), so a filter that kept moving outranks an equally heavy still one, and a
filter without weight is dead however it moved. Group scores are the mean over the group's writers.

Block importance (:func:`block_scores`, LayerPrune): writer ``w``'s per-filter scores are averaged,
``a_w = mean_c s_{w,c}``, and put in per-weight units by ``u_w = a_w / d_w`` with ``n_w`` the number of
weights of one filter, ``C_w`` the number of filters and ``d_w = n_w`` for ``l1``, ``taylor`` and ``lamp``,
``sqrt(n_w)`` for ``l2``, ``max(C_w - 1, 1) * sqrt(n_w)`` for ``fpgm`` and 1 for ``bn_scale``, so wide-input
late stages are not favoured by their filter size alone. A block scores ``mean_{w in block} u_w /
mean_{all writers} u_w`` (1 = an average writer of the network; all 0 when that network mean is 0); with
``aggregate="max"`` or ``"min"`` the strongest or weakest writer instead of the mean.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from latbench.arch import Arch
from pruners.errors import PruningError
from pruners.groups import ChannelGroup

Scores = dict[int, torch.Tensor]

_WRITERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


# --- helpers --------------------------------------------------------------------------------------------------
def _writer(modules: dict[str, nn.Module], path: str) -> nn.Module:
    mod = modules.get(path)
    if mod is None:
        raise PruningError(f"writer {path!r} is not a module of the model")
    if not isinstance(mod, _WRITERS):
        raise PruningError(f"writer {path!r} is a {type(mod).__name__}; only convs and linears write filters")
    return mod


def _filters(mod: nn.Module) -> torch.Tensor:
    """The writer's filters as a (C, n) float64 CPU matrix."""
    return mod.weight.detach().flatten(1).to("cpu", torch.float64)


def _all_writers(groups: Sequence[ChannelGroup]) -> list[str]:
    return list(dict.fromkeys(w for g in groups for w in g.writers))


def _width(group: ChannelGroup, modules: dict[str, nn.Module]) -> int:
    widths = {w: _writer(modules, w).weight.shape[0] for w in group.writers}
    if len(set(widths.values())) != 1:
        raise PruningError(f"group {group.id} ({group.name}): its writers disagree on the width: {widths}")
    return next(iter(widths.values()))


def _affine_norms(group: ChannelGroup, modules: dict[str, nn.Module], width: int) -> list[torch.Tensor]:
    gammas = []
    for path in group.norms:
        norm = modules.get(path)
        if norm is None:
            raise PruningError(f"norm {path!r} of group {group.id} is not a module of the model")
        if getattr(norm, "weight", None) is None:
            continue
        if norm.weight.shape[0] != width:
            raise PruningError(f"norm {path!r} has {norm.weight.shape[0]} channels, its group {group.id} has {width}")
        gammas.append(norm.weight.detach().to("cpu", torch.float64).abs())
    return gammas


def _own_norm(path: str, group: ChannelGroup, order: list[str], modules: dict[str, nn.Module]) -> nn.Module | None:
    """The group norm right after the writer in ``named_modules()`` order, if it is affine."""
    i = order.index(path)
    nxt = order[i + 1] if i + 1 < len(order) else None
    if nxt in group.norms and getattr(modules[nxt], "weight", None) is not None:
        return modules[nxt]
    return None


def _taylor(model: nn.Module, paths: list[str], batches: Iterable | None, max_batches: int) -> dict[str, torch.Tensor]:
    if batches is None:
        raise PruningError("the taylor criterion needs batches of (x, y) pairs; got none")
    if max_batches < 1:
        raise PruningError(f"max_batches must be at least 1, got {max_batches}")
    modules = dict(model.named_modules())
    weights = [_writer(modules, p).weight for p in paths]
    device = weights[0].device if weights else torch.device("cpu")
    modes = {m: m.training for m in model.modules()}
    grad_flags = [w.requires_grad for w in weights]
    out = {p: torch.zeros(w.shape[0], dtype=torch.float64) for p, w in zip(paths, weights, strict=True)}
    used = 0
    try:
        model.eval()
        for w in weights:
            w.requires_grad_(True)
        with torch.enable_grad():
            for x, y in itertools.islice(batches, max_batches):
                loss = F.cross_entropy(model(x.to(device)), y.to(device))
                grads = torch.autograd.grad(loss, weights, allow_unused=True)
                for p, w, g in zip(paths, weights, grads, strict=True):
                    if g is not None:
                        out[p] += (w.detach() * g).flatten(1).sum(1).abs().to("cpu", torch.float64)
                used += 1
    finally:
        for w, flag in zip(weights, grad_flags, strict=True):
            w.requires_grad_(flag)
        for m, mode in modes.items():
            m.train(mode)
    if used == 0:
        raise PruningError("the taylor criterion needs at least one (x, y) batch; the batches were empty")
    return out


# --- criteria --------------------------------------------------------------------------------------------------
class Criterion:
    """An importance criterion: per-filter scores of every writer, and how a group combines its writers'.

    ``__call__(model, groups)`` gives group id -> per-channel scores (higher = more important). Subclasses
    define ``filter_scores`` (one writer's filters as a (C, n) float64 matrix -> C scores); the group score is
    the mean over the group's writers unless ``group_scores`` says otherwise; ``size_divisor`` puts a
    writer's mean score in per-weight units for block importance.
    """

    name = ""

    def filter_scores(self, filters: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def writer_scores(self, model: nn.Module, groups: Sequence[ChannelGroup], batches: Iterable | None = None,
                      max_batches: int = 8) -> dict[str, torch.Tensor]:
        """Writer path -> per-filter scores of every writer of ``groups``, before any group aggregation."""
        modules = dict(model.named_modules())
        return {p: self.filter_scores(_filters(_writer(modules, p))) for p in _all_writers(groups)}

    def group_scores(self, model: nn.Module, groups: Sequence[ChannelGroup],
                     per_writer: dict[str, torch.Tensor]) -> Scores:
        return {g.id: torch.stack([per_writer[w] for w in g.writers]).mean(0) for g in groups}

    def __call__(self, model: nn.Module, groups: Sequence[ChannelGroup], batches: Iterable | None = None,
                 max_batches: int = 8) -> Scores:
        modules = dict(model.named_modules())
        for g in groups:
            _width(g, modules)  # writers must agree on the group's width
        return self.group_scores(model, groups, self.writer_scores(model, groups, batches, max_batches))

    def size_divisor(self, weight: torch.Tensor) -> float:
        """Weights of one filter (``n``): a mean score divided by this is per weight."""
        return float(weight[0].numel())


class L1(Criterion):
    name = "l1"

    def filter_scores(self, filters: torch.Tensor) -> torch.Tensor:
        return filters.abs().sum(1)


class L2(Criterion):
    name = "l2"

    def filter_scores(self, filters: torch.Tensor) -> torch.Tensor:
        return filters.norm(dim=1)

    def size_divisor(self, weight: torch.Tensor) -> float:
        return math.sqrt(weight[0].numel())


class FPGM(Criterion):
    """Distance to the writer's other filters (He et al. 2019): near the geometric median is redundant."""

    name = "fpgm"

    def filter_scores(self, filters: torch.Tensor) -> torch.Tensor:
        return torch.cdist(filters.unsqueeze(0), filters.unsqueeze(0)).squeeze(0).sum(1)

    def size_divisor(self, weight: torch.Tensor) -> float:
        return max(weight.shape[0] - 1, 1) * math.sqrt(weight[0].numel())


class Taylor(Criterion):
    """First-order Taylor (Molchanov et al. 2019) over the first ``max_batches`` batches."""

    name = "taylor"

    def writer_scores(self, model: nn.Module, groups: Sequence[ChannelGroup], batches: Iterable | None = None,
                      max_batches: int = 8) -> dict[str, torch.Tensor]:
        return _taylor(model, _all_writers(groups), batches, max_batches)


class BNScale(Criterion):
    """``|gamma|`` of the batch norms over a group (a writer's own norm per writer); ``l1`` without one."""

    name = "bn_scale"

    def writer_scores(self, model: nn.Module, groups: Sequence[ChannelGroup], batches: Iterable | None = None,
                      max_batches: int = 8) -> dict[str, torch.Tensor]:
        modules = dict(model.named_modules())
        order = list(modules)
        out: dict[str, torch.Tensor] = {}
        for g in groups:
            for p in g.writers:
                if p in out:
                    continue
                width = _writer(modules, p).weight.shape[0]
                norm = _own_norm(p, g, order, modules)
                if norm is not None and norm.weight.shape[0] == width:
                    out[p] = norm.weight.detach().to("cpu", torch.float64).abs()
                else:
                    out[p] = _filters(modules[p]).abs().sum(1)
        return out

    def __call__(self, model: nn.Module, groups: Sequence[ChannelGroup], batches: Iterable | None = None,
                 max_batches: int = 8) -> Scores:
        modules = dict(model.named_modules())
        widths = {g.id: _width(g, modules) for g in groups}
        fallback = [g for g in groups if not _affine_norms(g, modules, widths[g.id])]
        l1 = CRITERIA["l1"](model, fallback) if fallback else {}
        out: Scores = {}
        for g in groups:
            gammas = _affine_norms(g, modules, widths[g.id])
            out[g.id] = torch.stack(gammas).mean(0) if gammas else l1[g.id]
        return out

    def size_divisor(self, weight: torch.Tensor) -> float:
        return 1.0


class LAMP(Criterion):
    """SP-LAMP: filter energy summed over a group's writers, then ``lamp_transform`` (the top channel scores 1)."""

    name = "lamp"

    def filter_scores(self, filters: torch.Tensor) -> torch.Tensor:
        return filters.pow(2).sum(1)

    def group_scores(self, model: nn.Module, groups: Sequence[ChannelGroup],
                     per_writer: dict[str, torch.Tensor]) -> Scores:
        return {g.id: lamp_transform(torch.stack([per_writer[w] for w in g.writers]).sum(0)) for g in groups}


#: importance criteria by name; ``register_criterion`` adds one
CRITERIA: dict[str, Criterion] = {c.name: c for c in (L1(), L2(), BNScale(), Taylor(), FPGM(), LAMP())}


def register_criterion(criterion: Criterion) -> None:
    CRITERIA[criterion.name] = criterion


def get_criterion(name: str) -> Criterion:
    if name not in CRITERIA:
        raise PruningError(f"unknown importance criterion {name!r}; choose one of {', '.join(CRITERIA)}")
    return CRITERIA[name]


def writer_scores(model: nn.Module, groups: Sequence[ChannelGroup], criterion: str,
                  batches: Iterable | None = None, max_batches: int = 8) -> dict[str, torch.Tensor]:
    """Writer path -> per-filter scores of every writer of ``groups``, before any group aggregation."""
    return get_criterion(criterion).writer_scores(model, groups, batches, max_batches)


def lamp_transform(values: torch.Tensor) -> torch.Tensor:
    """LAMP scores of non-negative ``values``: ``s_u / sum_{v >= u} s_v`` in ascending order; the top scores 1."""
    v = torch.as_tensor(values).detach().to("cpu", torch.float64).flatten()
    if v.numel() == 0:
        return v
    if not torch.isfinite(v).all() or (v < 0).any():
        raise PruningError("lamp_transform needs finite non-negative values")
    n = v.numel()
    order = (n - 1) - torch.sort(v.flip(0), stable=True).indices  # ascending; among ties the lower index last
    s = v[order]
    tail = s.flip(0).cumsum(0).flip(0)
    ranked = torch.where(tail > 0, s / torch.where(tail > 0, tail, torch.ones_like(tail)), torch.zeros_like(s))
    ranked[-1] = 1.0
    out = torch.empty_like(v)
    out[order] = ranked
    return out


def score(model: nn.Module, groups: Sequence[ChannelGroup], criterion: str = "l1",
          batches: Iterable | None = None, max_batches: int = 8) -> Scores:
    """Group id -> per-channel importance of every group, by ``criterion`` (a name in :data:`CRITERIA`)."""
    return get_criterion(criterion)(model, groups, batches, max_batches)


# --- dynamic importance ----------------------------------------------------------------------------------------
class FilterDynamics:
    """Snapshots of every writer's filters across fine-tuning, scored by how each filter turned (see module doc)."""

    def __init__(self) -> None:
        self.first: dict[str, torch.Tensor] | None = None
        self.last: dict[str, torch.Tensor] | None = None
        self.count = 0

    def record(self, model: nn.Module) -> None:
        """Snapshot the filters of every conv and linear (once before fine-tuning, then after each epoch)."""
        snap = {n: m.weight.detach().flatten(1).to("cpu", torch.float32, copy=True)
                for n, m in model.named_modules() if isinstance(m, _WRITERS)}
        if self.first is None:
            self.first = snap
        self.last = snap
        self.count += 1

    def writer_scores(self, groups: Sequence[ChannelGroup]) -> dict[str, torch.Tensor]:
        """Writer path -> ``m_c * (1 + (1 - acs_c) / 2)`` per filter, from the first and last snapshots."""
        if self.count < 2 or self.first is None or self.last is None:
            raise PruningError(f"dynamic importance needs at least 2 weight snapshots, got {self.count}")
        out = {}
        for p in _all_writers(groups):
            if p not in self.first or p not in self.last:
                raise PruningError(f"writer {p!r} was not recorded in every snapshot")
            f0, f1 = self.first[p].double(), self.last[p].double()
            if f0.shape != f1.shape:
                raise PruningError(f"writer {p!r} changed shape between snapshots: "
                                   f"{tuple(f0.shape)} -> {tuple(f1.shape)}")
            g0, g1 = f0 - f0.mean(0), f1 - f1.mean(0)
            denom = g0.norm(dim=1) * g1.norm(dim=1)
            acs = torch.where(denom > 0, (g0 * g1).sum(1) / torch.where(denom > 0, denom, 1.0), 0.0)
            norms = f1.norm(dim=1)
            mean = norms.mean()
            mag = norms / mean if mean > 0 else torch.zeros_like(norms)
            out[p] = mag * (1 + (1 - acs) / 2)
        return out

    def scores(self, groups: Sequence[ChannelGroup]) -> Scores:
        """Group id -> mean over the group's writers of their dynamic filter scores."""
        per_writer = self.writer_scores(groups)
        return {g.id: torch.stack([per_writer[w] for w in g.writers]).mean(0) for g in groups}


# --- block importance and selection ----------------------------------------------------------------------------
#: how a block's importance comes from its writers' (``block_scores``)
AGGREGATES: dict[str, Callable[[list[float]], float]] = {"mean": lambda v: sum(v) / len(v), "max": max, "min": min}


def per_weight_scores(model: nn.Module, groups: Sequence[ChannelGroup], criterion: str = "l1",
                      batches: Iterable | None = None, max_batches: int = 8) -> dict[str, torch.Tensor]:
    """Writer path -> per-filter scores in per-weight units (``Criterion.size_divisor``, see module doc), so
    that filters of convs with different fan-in weigh alike."""
    chosen = get_criterion(criterion)
    modules = dict(model.named_modules())
    return {p: s / chosen.size_divisor(modules[p].weight)
            for p, s in chosen.writer_scores(model, groups, batches, max_batches).items()}


def writer_importance(model: nn.Module, groups: Sequence[ChannelGroup], criterion: str = "l1",
                      batches: Iterable | None = None, max_batches: int = 8) -> dict[str, float]:
    """Writer path -> its mean per-weight score over the network's mean writer (1 = an average writer; all 0
    when that mean is 0)."""
    unit = {p: float(s.mean()) for p, s in per_weight_scores(model, groups, criterion, batches, max_batches).items()}
    if not unit:
        raise PruningError("block importance needs at least one writer; the groups have none")
    net = sum(unit.values()) / len(unit)
    return {p: u / net if net > 0 else 0.0 for p, u in unit.items()}


def block_scores(model: nn.Module, arch: Arch, groups: Sequence[ChannelGroup], criterion: str = "l1",
                 batches: Iterable | None = None, max_batches: int = 8, aggregate: str = "mean") -> dict[str, float]:
    """Removable block name -> its writers' normalised importance, aggregated by ``aggregate`` (``mean``,
    ``max`` or ``min``; 1 = an average writer; see module doc)."""
    if aggregate not in AGGREGATES:
        raise PruningError(f"unknown aggregate {aggregate!r}; choose from {', '.join(AGGREGATES)}")
    unit = writer_importance(model, groups, criterion, batches, max_batches)
    out = {}
    for block in arch.blocks:
        if not block.removable:
            continue
        inside = [unit[p] for p in block.layers if p in unit]
        if not inside:
            raise PruningError(f"removable block {block.name!r} contains no writer of the given groups")
        out[block.name] = AGGREGATES[aggregate](inside)
    return out


def keep_top(scores: torch.Tensor, k: int) -> list[int]:
    """Indices of the ``k`` highest ``scores`` (ties: lower index first), sorted ascending."""
    s = torch.as_tensor(scores).detach().to("cpu", torch.float64).flatten()
    if not 0 <= k <= s.numel():
        raise PruningError(f"cannot keep {k} of {s.numel()} channels")
    if torch.isnan(s).any():
        raise PruningError("cannot rank scores that contain NaN")
    top = torch.sort(s, descending=True, stable=True).indices[:k]
    return sorted(int(i) for i in top)
