"""Figures of the sensitivity analysis, each drawn from the DataFrame its API function returns.

Headless (Agg); every function writes one PNG and returns its path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _title(ax, title: str, width: int) -> None:
    import textwrap

    ax.set_title(textwrap.fill(title, width), fontsize=10)


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _plt().close(fig)
    return path


def plot_proportion(table, path: str | Path, title: str) -> Path:
    """Per-layer bars: share of FLOPs, parameters and latency (predicted, and measured if present)."""
    plt = _plt()
    series = [("flops_share", "FLOPs", "#9e9e9e"), ("params_share", "parameters", "#c7d7e8"),
              ("predicted_share", "latency, predicted", "#1f77b4")]
    if "measured_share" in table:
        series.append(("measured_share", "latency, measured in context", "#d62728"))
    n = len(table)
    fig, ax = plt.subplots(figsize=(max(10.0, 0.2 * n), 4.8))
    width = 0.8 / len(series)
    x = np.arange(n)
    for i, (col, label, color) in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, 100 * table[col], width, label=label, color=color)
    heavy = np.flatnonzero(table["flag"].to_numpy() == "latency-heavy")
    if len(heavy):
        top = 100 * table[[c for c, _, _ in series]].max(axis=1).to_numpy()
        ax.plot(heavy, top[heavy] + 0.4, "v", color="black", markersize=4,
                label="latency-heavy (latency share >= 2x FLOPs share)")
    ax.set_xticks(x)
    ax.set_xticklabels(table["name"], rotation=90, fontsize=6)
    ax.set_ylabel("share of network total (%)")
    ax.set_xlim(-0.6, n - 0.4)
    _title(ax, title, 160)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_sensitivity_heatmap(table, path: str | Path, title: str) -> Path:
    """Groups x keep ratios, colour = share of network latency saved (%)."""
    plt = _plt()
    labels = table["group_name"] + np.where(table["layers"] > 2, " (" + table["layers"].astype(str) + " layers)", "")
    pivot = table.assign(label=labels).pivot_table(index="label", columns="ratio", values="saved_share", sort=False)
    pivot = pivot[sorted(pivot.columns, reverse=True)]
    values = 100 * pivot.to_numpy()
    fig, ax = plt.subplots(figsize=(7.5, max(3.5, 0.22 * len(pivot) + 1.5)))
    limit = max(float(np.nanmax(np.abs(values))), 1e-6)
    im = ax.imshow(values, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_xticks(range(len(pivot.columns)))
    ax.set_xticklabels([f"{r:.1f}" for r in pivot.columns])
    ax.set_yticks(range(len(pivot)))
    ax.set_yticklabels(pivot.index, fontsize=7)
    ax.set_xlabel("keep ratio of the group (all other groups at full width)")
    ax.set_ylabel("channel group (named by its first layer)")
    fig.colorbar(im, ax=ax, label="network latency saved (%)")
    _title(ax, title, 60)
    return _save(fig, path)


def plot_staircases(curves, path: str | Path, title: str, step: int | None = None) -> Path:
    """One panel per layer: latency against output channels, measured points and predicted line."""
    plt = _plt()
    layers = list(dict.fromkeys(curves["layer"]))
    cols = min(2, len(layers))
    rows = int(np.ceil(len(layers) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(6.0 * cols, 3.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, layers, strict=False):
        c = curves[curves["layer"] == name]
        if c["measured_us"].notna().any():
            ax.step(c["out_channels"], c["measured_us"], where="mid", color="#d62728", lw=1.0)
            ax.plot(c["out_channels"], c["measured_us"], ".", color="#d62728", ms=4, label="measured")
        if c["predicted_us"].notna().any():
            ax.plot(c["out_channels"], c["predicted_us"], "-", color="#1f77b4", lw=1.2, label="profile (LUT)")
        if step:
            for edge in range(step, int(c["full_channels"].iloc[0]) + 1, step):
                ax.axvline(edge, color="0.85", lw=0.6, zorder=0)
        ax.set_title(f"{name} ({c['op'].iloc[0]}, {int(c['full_channels'].iloc[0])} out channels)", fontsize=9)
        ax.set_xlabel("output channels")
        ax.set_ylabel("latency (µs)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(layers):]:
        ax.axis("off")
    fig.suptitle(title + (f" (grey lines: multiples of the engine's step, {step})" if step else ""), fontsize=10)
    return _save(fig, path)


def plot_candidates(table, path: str | Path, title: str) -> Path:
    """Predicted latency against FLOPs of random candidates, coloured by mean keep ratio."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    sc = ax.scatter(table["flops"] / 1e6, table["predicted_us"], c=table["mean_keep"], s=10, cmap="viridis")
    fig.colorbar(sc, ax=ax, label="mean keep ratio")
    ax.set_xlabel("FLOPs (M)")
    ax.set_ylabel("predicted latency (µs)")
    _title(ax, title, 60)
    return _save(fig, path)


def plot_agreement(joined, path: str | Path, title: str) -> Path:
    """Predicted against measured share of latency saved, one point per group, with the
    measurement's 95% interval."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    x, y = 100 * joined["saved_share_pred"], 100 * joined["saved_share"]
    err = 100 * np.abs(np.stack([joined["saved_share"] - joined["saved_share_low"],
                                 joined["saved_share_high"] - joined["saved_share"]]))
    ax.errorbar(x, y, yerr=err, fmt="o", ms=4, color="#1f77b4", ecolor="0.6", lw=0.8)
    lo, hi = min(x.min(), y.min(), 0.0), max(x.max(), y.max()) * 1.05
    ax.plot([lo, hi], [lo, hi], "--", color="0.5", lw=0.8, label="measured = predicted")
    for _, r in joined.nlargest(3, "saved_share").iterrows():
        ax.annotate(r["group_name"], (100 * r["saved_share_pred"], 100 * r["saved_share"]), fontsize=6,
                    xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("predicted network latency saved (%)")
    ax.set_ylabel("measured network latency saved (%)")
    _title(ax, title, 55)
    ax.legend(fontsize=8)
    return _save(fig, path)
