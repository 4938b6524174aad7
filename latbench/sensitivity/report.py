"""``latbench analyze``: the sensitivity analysis of one network on one profile, as CSVs, PNGs and
a Markdown summary, all drawn from the DataFrames of ``latbench.sensitivity``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latbench.errors import InvalidValueError
from latbench.predictors.metrics import spearman
from latbench.sensitivity.candidates import candidates
from latbench.sensitivity.latency import RATIOS, measure_sensitivity, rank_groups, sensitivity
from latbench.sensitivity.proportion import proportion
from latbench.sensitivity.staircase import key_layers, staircase_curves

TOP = 5


@dataclass
class Report:
    """The analysis' tables (``frames``), agreement numbers and the files written."""

    frames: dict[str, Any]
    agreement: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)


def agreement(predicted, measured) -> tuple[Any, dict[str, float]]:
    """Predicted and measured sensitivity joined per (group, ratio), and their rank agreement:
    Spearman over all groups and over the ``TOP`` groups the measurement finds most sensitive,
    and how many of the measured top ``TOP`` the prediction also puts in its top ``TOP``."""
    keys = ["group", "ratio"]
    joined = measured.merge(predicted[[*keys, "saved_share", "sensitivity"]], on=keys, suffixes=("", "_pred"))
    top = joined.nlargest(TOP, "sensitivity")
    overlap = len(set(top["group"]) & set(joined.nlargest(TOP, "sensitivity_pred")["group"]))
    return joined, {"spearman_all": spearman(joined["sensitivity_pred"], joined["sensitivity"]),
                    f"spearman_top{TOP}": spearman(top["sensitivity_pred"], top["sensitivity"]),
                    f"top{TOP}_overlap": overlap, "groups": len(joined)}


def write_report(arch, profile, out: str | Path, build: Callable | None = None, measure: bool = False,
                 kind: str = "lut", ratios: Sequence[float] = RATIOS, measure_ratios: Sequence[float] = (0.5,),
                 staircase_layers: int = 4, log: Callable[[str], None] = print) -> Report:
    """Analyse ``arch`` on ``profile`` into ``out``; with ``measure`` (``build(candidate)`` gives
    the module of a candidate), re-measure per-layer times in context, the sensitivity at
    ``measure_ratios`` and the staircase curves on the profile's backend."""
    from latbench.sensitivity import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pred = profile.predictor(kind)
    lut = profile.predictor("lut")
    step = int(profile.meta["plan"]["step"])
    backend = profile.backend() if measure else None
    label = f"{arch.name} on {profile.name}"
    frames: dict[str, Any] = {}
    report = Report(frames)

    runnable = None
    if measure:
        if build is None:
            raise InvalidValueError("measuring needs build(candidate) -> module")
        runnable = backend.deploy(build(arch), torch.randn(*arch.base.input_shape))
        log("measuring per-layer times in context ...")
    frames["proportion"] = proportion(arch, pred, runnable)
    log("predicting latency sensitivity ...")
    frames["sensitivity"] = sensitivity(arch, pred, ratios)
    frames["ranking"] = rank_groups(frames["sensitivity"])
    frames["candidates"] = candidates(arch, pred)
    if measure:
        log("measuring latency sensitivity (interleaved with the full network) ...")
        measured = measure_sensitivity(arch, build, backend, measure_ratios)
        frames["sensitivity_measured"], report.agreement = agreement(frames["sensitivity"], measured)
        report.agreement["measure_wall_s"] = measured.attrs["wall_s"]
    layers = key_layers(arch, lut, staircase_layers)
    log(f"{'measuring' if measure else 'predicting'} staircase curves of {', '.join(layers)} ...")
    frames["staircase"] = staircase_curves(arch, layers, lut, backend)

    for name, df in frames.items():
        path = out / f"{name}.csv"
        df.to_csv(path, index=False)
        report.files.append(path)
    cands = frames["candidates"]
    report.files += [
        plots.plot_proportion(frames["proportion"], out / "proportion.png",
                              f"{label}: share of FLOPs, parameters and latency per layer"),
        plots.plot_sensitivity_heatmap(frames["sensitivity"], out / "sensitivity.png",
                                       f"{label}: latency saved by pruning one group ({kind})"),
        plots.plot_staircases(frames["staircase"], out / "staircase.png", f"{label}: latency staircases", step),
        plots.plot_candidates(frames["candidates"], out / "candidates.png",
                              f"{label}: {len(cands)} random candidates, FLOPs vs latency "
                              f"(Spearman {spearman(cands['flops'], cands['predicted_us']):.2f})"),
    ]
    if measure:
        report.files.append(plots.plot_agreement(
            frames["sensitivity_measured"], out / "sensitivity_agreement.png",
            f"{label}: predicted vs measured saving\n(Spearman {report.agreement['spearman_all']:.2f} over "
            f"{report.agreement['groups']} groups, {report.agreement[f'spearman_top{TOP}']:.2f} over the top {TOP})"))
    summary = out / "summary.md"
    summary.write_text(summarise(arch, profile, kind, frames, report.agreement, measure))
    report.files.append(summary)
    return report


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def summarise(arch, profile, kind: str, frames: dict[str, Any], agreement: dict[str, float], measured: bool) -> str:
    """The Markdown summary: totals, the most latency-sensitive groups, the least latency-efficient
    layers, FLOPs against latency, staircases, agreement with measurement, and the figures."""
    prop, ranking, cands, stairs = frames["proportion"], frames["ranking"], frames["candidates"], frames["staircase"]
    p = profile.predictor(kind).predict(arch)
    share = "measured_share" if "measured_share" in prop else "predicted_share"
    lines = [f"# {arch.name} on {profile.name}", "",
             f"Predicted latency at full width: **{p.latency_us:,.1f} µs** ({kind}, 90% interval "
             f"{p.low_us:,.1f}–{p.high_us:,.1f} µs); {arch.flops() / 1e6:,.1f} MFLOPs, {arch.params():,} parameters. "
             f"Latency shares below are {'measured in context by the engine profiler' if measured else 'predicted'}."
             + (f" Predictions re-anchored to this machine on {profile.anchoring.measured_at[:10]}: "
                f"{profile.anchoring.describe(profile.meta.get('created', ''))}." if profile.anchoring else ""),
             "", "## Most latency-sensitive channel groups", "",
             f"Network latency saved when one group alone is kept at ratio {ranking['ratio'].iloc[0]:.1f} "
             "(sensitivity = share of latency saved / share of the group removed; see `latbench.sensitivity.latency`).",
             "A group is named by its first layer; one spanning many layers is a residual stage.",
             "", "| group | layers | channels | kept | saved (µs) | saved | sensitivity |",
             "|---|---|---|---|---|---|---|"]
    for _, r in ranking.head(TOP).iterrows():
        lines.append(f"| {r['group_name']} | {r['layers']} | {r['channels']} | {r['kept']} | {r['saved_us']:.1f} | "
                     f"{_pct(r['saved_share'])} | {r['sensitivity']:.3f} |")
    lines += ["", "## Least latency-efficient layers", "",
              "Latency share over FLOPs share (layers with at least 1% of the latency; `inf` = no FLOPs). "
              "Measured in context, an engine that fuses a residual add into the conv before it reports "
              "the add's time under that conv.", "",
              "| layer | op | FLOPs share | latency share | latency / FLOPs |", "|---|---|---|---|---|"]
    worst = prop[prop[share] >= 0.01].sort_values("latency_to_flops", ascending=False).head(TOP)
    for _, r in worst.iterrows():
        lines.append(f"| {r['name']} | {r['op']} | {_pct(r['flops_share'])} | {_pct(r[share])} | "
                     f"{r['latency_to_flops']:.2f} |")
    heavy, light = (prop["flag"] == "latency-heavy").sum(), (prop["flag"] == "latency-light").sum()
    lines += ["", f"{heavy} layer(s) carry at least twice their FLOPs share of the latency, "
              f"{light} less than half of it.",
              "", "## FLOPs against latency", "",
              f"Over {len(cands)} random candidates (every group kept at a uniform ratio in [0.2, 1]), the rank "
              f"correlation of FLOPs with predicted latency is {spearman(cands['flops'], cands['predicted_us']):.3f}; "
              f"candidates within 5% of the median FLOPs span {_span(cands)} of predicted latency.", ""]
    lines += ["## Staircases", ""]
    for name, c in stairs.groupby("layer", sort=False):
        col = "measured_us" if c["measured_us"].notna().any() else "predicted_us"
        lines.append(f"- `{name}`: {_flat(c, col)} ({col.split('_')[0]})")
    if agreement:
        lines += ["", "## Predicted against measured sensitivity", "",
                  f"Spearman {agreement['spearman_all']:.3f} over all {agreement['groups']} groups, "
                  f"{agreement[f'spearman_top{TOP}']:.3f} over the {TOP} groups measured most sensitive; "
                  f"{agreement[f'top{TOP}_overlap']} of those {TOP} are in the prediction's top {TOP}."]
    lines += ["", "## Figures", ""] + [f"![{f}]({f}.png)" for f in
                                       ("proportion", "sensitivity", "staircase", "candidates")]
    if agreement:
        lines.append("![sensitivity_agreement](sensitivity_agreement.png)")
    return "\n".join(lines) + "\n"


def _span(cands) -> str:
    median = cands["flops"].median()
    near = cands[(cands["flops"] - median).abs() <= 0.05 * median]["predicted_us"]
    return f"{near.min():,.0f}–{near.max():,.0f} µs" if len(near) > 1 else "n/a"


def _flat(c, col: str) -> str:
    """How much of a sweep is flat: the share of one-channel steps that change latency < 1%."""
    v = c[col].to_numpy()
    w = c["out_channels"].to_numpy()
    ones = np.flatnonzero(np.diff(w) == 1)
    if not len(ones):
        return f"{len(w)} widths from {w[0]} to {w[-1]}"
    flat = np.mean(np.abs(v[ones + 1] / v[ones] - 1) < 0.01)
    big = ones[np.argsort(-(v[ones + 1] - v[ones]))[:3]]
    jumps = ", ".join(f"{w[i]}→{w[i + 1]}" for i in sorted(big))
    return f"{_pct(flat)} of single-channel steps change latency by less than 1%; largest jumps at {jumps}"
