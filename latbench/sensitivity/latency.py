"""Latency sensitivity: what pruning one channel group, and only it, buys.

For a prunable group ``g`` of ``C`` channels kept at ratio ``r`` (``k = max(1, round(r * C))``
channels, every other group at full width), with ``L`` the network's latency at full width and
``L_g(r)`` its latency with ``g`` pruned:

* ``removed_share = 1 - k / C``
* ``saved_share = (L - L_g(r)) / L``, the share of the network's latency that is saved
* ``sensitivity = saved_share / removed_share``: the network latency saved per unit share of the
  group removed, as a secant from full width. 1.0 would mean pruning 10% of the group saves 10%
  of the whole network's time; a group that feeds many layers (a residual stage) can exceed its
  own latency share, and a negative value means pruning made the network *slower* (channels off
  the engine's blocked layout).

The curve over ``r`` (``RATIOS``, 0.9 down to 0.1) is the table itself; ``rank_groups`` orders the
groups by their sensitivity at one ratio. LAP's agent uses these as its prior (see
``pruners``). Predictions come from a profile's predictor; ``measure_sensitivity`` measures the
same candidates on the backend, interleaved with the full network (paired ratios, so machine drift
cancels).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from latbench.measure import MeasureSettings, compare

RATIOS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1)
COLUMNS = ["group", "group_name", "layers", "channels", "ratio", "kept", "removed_share", "latency_us", "saved_us",
           "saved_share", "sensitivity"]


def kept_channels(channels: int, ratio: float) -> int:
    """Channels a group of ``channels`` keeps at keep ratio ``ratio`` (at least one)."""
    return max(1, round(ratio * channels))


def _candidates(arch, groups: Sequence[int] | None, ratios: Sequence[float]):
    chosen = [g for g in arch.prunable_groups if groups is None or g.id in set(groups)]
    rows, archs = [], []
    for g in chosen:
        channels = arch.widths[g.id]
        for r in ratios:
            k = kept_channels(channels, r)
            if k == channels:
                continue
            rows.append({"group": g.id, "group_name": g.name, "layers": len(g.layers), "channels": channels,
                         "ratio": float(r), "kept": k,
                         "removed_share": 1.0 - k / channels})
            archs.append(arch.with_widths({g.id: k}))
    return rows, archs


def _table(rows: list[dict], latency: np.ndarray, full_us: float):
    df = pd.DataFrame(rows)
    df["latency_us"] = latency
    df["saved_us"] = full_us - df["latency_us"]
    df["saved_share"] = df["saved_us"] / full_us
    df["sensitivity"] = df["saved_share"] / df["removed_share"]
    return df[COLUMNS + [c for c in df.columns if c not in COLUMNS]]


def sensitivity(arch, predictor, ratios: Sequence[float] = RATIOS, groups: Sequence[int] | None = None):
    """Predicted latency sensitivity of every prunable group (or ``groups``) at every ratio:
    one row per (group, ratio) with ``COLUMNS`` (see the module docstring)."""
    rows, archs = _candidates(arch, groups, ratios)
    latency, _ = predictor.predict_many([arch, *archs])
    return _table(rows, latency[1:], float(latency[0]))


def measure_sensitivity(arch, build: Callable, backend, ratios: Sequence[float] = (0.5,),
                        groups: Sequence[int] | None = None, seconds_each: float = 6.0,
                        progress: Callable[[dict], None] | None = None):
    """Measured latency sensitivity: ``build(candidate_arch)`` gives each module; all candidates
    and the full network are measured interleaved on ``backend``. ``saved_share`` is ``1 -`` the
    median paired ratio to the full network; ``saved_share_low``/``saved_share_high`` bound it (95%)."""
    rows, archs = _candidates(arch, groups, ratios)
    x = torch.randn(*arch.base.input_shape)
    runnables = {"full": backend.deploy(build(arch), x)}
    for i, cand in enumerate(archs):
        runnables[f"c{i}"] = backend.deploy(build(cand), x)
    settings = MeasureSettings(target_rel_ci=0.005, budget_s=seconds_each * len(runnables))
    result = compare(runnables, settings, baseline="full", min_rounds=10, progress=progress)
    full_us = result.measurements["full"].median_us
    ratio = np.array([result.ratios[f"c{i}"].ratio for i in range(len(archs))])
    df = _table(rows, full_us * ratio, full_us)  # saved_share = 1 - ratio
    df["saved_share_low"] = [1.0 - result.ratios[f"c{i}"].ci_high for i in range(len(archs))]
    df["saved_share_high"] = [1.0 - result.ratios[f"c{i}"].ci_low for i in range(len(archs))]
    df.attrs.update(full_us=full_us, rounds=result.rounds, stop_reason=result.stop_reason,
                    wall_s=result.wall_time_s)
    return df


def rank_groups(table, ratio: float = 0.5):
    """Groups ordered by sensitivity at the ratio nearest ``ratio`` (most sensitive first), with
    their mean sensitivity over all ratios of the table."""
    nearest = table["ratio"].iloc[(table["ratio"] - ratio).abs().argsort().iloc[0]]
    at = table[table["ratio"] == nearest].set_index("group")
    mean = table.groupby("group")["sensitivity"].mean()
    out = at[["group_name", "layers", "channels", "kept", "saved_us", "saved_share", "sensitivity"]].copy()
    out["mean_sensitivity"] = mean.reindex(out.index)
    out["ratio"] = nearest
    return out.sort_values("sensitivity", ascending=False).reset_index()
