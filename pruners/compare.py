"""Methods side by side at one *measured* latency (LayerPrune's "layer vs filter" claim, and any other pair).

A pruning run measures its network against the original, but a shared machine drifts between runs by more
than the differences being compared. So :func:`compare_at_latency` prunes the same trained network with each
other method to the latency the first run *measured*, every measurement of theirs taken interleaved with the
first run's network and put on its scale (``pruners.oracle.Anchor``: they land at its latency whatever the
machine's state), fine-tunes all alike (same epochs, seed and, where a
method takes one, the same importance criterion), then :func:`side_by_side` measures every network and the
original in ONE interleaved comparison, ``repeats`` times: within one comparison all networks see the same
drift. Written to ``<run>/comparison.json``; the other runs keep their folders under ``<run>/compare/``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latbench.device_profile import DeviceProfile
from latbench.jsonio import dump_json
from latbench.measure import MeasureSettings, compare
from pruners.data import load_dataset
from pruners.errors import PruningError
from pruners.methods import get_method
from pruners.oracle import Anchor
from pruners.prune import prune
from pruners.result import PruneResult
from pruners.trained import load_trained

COMPARISON = "comparison.json"


def side_by_side(profile: DeviceProfile, original: nn.Module, networks: dict[str, nn.Module],
                 example: torch.Tensor, budget_s: float = 30.0, repeats: int = 3,
                 progress: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, dict[str, Any]]:
    """Every network of ``networks`` measured in one interleaved comparison with ``original`` on the profile's
    backend, ``repeats`` times: per network the median latency ratio over repeats, its range and every value
    (``median``, ``low``, ``high``, ``all``), and the medians over repeats of its own and the original's median
    latency in microseconds (``median_us``, ``original_us``). ``progress(repeat, info)`` follows each comparison
    (``latbench.measure.compare``'s progress: rounds, elapsed_s, budget_s)."""
    if not networks:
        raise PruningError("side_by_side needs at least one network besides the original")
    if "original" in networks:
        raise PruningError("'original' names the unpruned network; give the others other names")
    if repeats < 1:
        raise PruningError(f"repeats must be 1 or more, got {repeats}")
    backend = profile.backend()
    runnables = {"original": backend.deploy(original.eval(), example)}
    runnables |= {name: backend.deploy(net.eval(), example) for name, net in networks.items()}
    ratios: dict[str, list[float]] = {name: [] for name in networks}
    us: dict[str, list[float]] = {name: [] for name in runnables}
    for repeat in range(repeats):
        result = compare(runnables, MeasureSettings(target_rel_ci=0.005, budget_s=budget_s),
                         progress=None if progress is None else partial(progress, repeat))
        for name in networks:
            ratios[name].append(result.ratios[name].ratio)
        for name in runnables:
            us[name].append(result.measurements[name].median_us)
    original_us = statistics.median(us["original"])
    return {name: {"median": statistics.median(r), "low": min(r), "high": max(r), "all": r,
                   "median_us": statistics.median(us[name]), "original_us": original_us}
            for name, r in ratios.items()}


def check_methods(first: str, others: list[str], metric: str) -> list[str]:
    """The methods to compare ``first`` with, refused in one line before any work: unknown names, the run's
    own method, duplicates, or a FLOPs target (the comparison is at equal measured latency)."""
    if metric != "latency":
        raise PruningError("a comparison is at equal measured latency: give --latency-target, not --flops-target")
    for name in others:
        get_method(name)
    if first in others:
        raise PruningError(f"--compare names the run's own method {first!r}")
    if len(set(others)) != len(others):
        raise PruningError("--compare names a method twice")
    return list(others)


def compare_at_latency(first: PruneResult, others: list[str], model_name: str, weights: str | Path,
                       profile: DeviceProfile, out: str | Path, budget_s: float = 30.0, repeats: int = 3,
                       **prune_kwargs: Any) -> dict[str, Any]:
    """Prune ``model_name`` (``weights``) with each method of ``others`` to the latency ``first`` measured, with
    the same ``prune_kwargs`` (dataset, fine-tuning, seed, ...) and ``first``'s criterion where a method takes
    one, measured on ``first``'s network's scale; measure all side by side (:func:`side_by_side`); write and
    return the comparison."""
    out = Path(out)
    reached = float(first.latency["measured_ratio"])
    criterion = first.settings.get("options", {}).get("criterion")
    results = {first.method: first}
    for name in check_methods(first.method, others, "latency"):
        fields = {f.name for f in get_method(name).option_fields()}
        options = {"criterion": criterion} if criterion and "criterion" in fields else {}
        results[name] = prune(name, model_name, weights, profile, reached, out=out / "compare" / name,
                              options=options, anchor=Anchor(first.model, reached, first.method), **prune_kwargs)
    splits = load_dataset(prune_kwargs.get("dataset", "digits"), prune_kwargs.get("data_root"))
    original = load_trained(model_name, weights, splits.num_classes)
    example = torch.randn(*first.arch.base.input_shape, generator=torch.Generator().manual_seed(0))
    joint = side_by_side(profile, original, {m: r.model for m, r in results.items()}, example, budget_s, repeats)
    rows = [{"method": m, "criterion": r.settings.get("options", {}).get("criterion"),
             "target": r.target["ratio"], "measured_ratio": r.latency["measured_ratio"],
             "side_by_side": joint[m], "accuracy": r.accuracy["finetuned"], "accuracy_before_finetune":
             r.accuracy["pruned"], "flops_ratio": r.flops["ratio"], "params_ratio": r.params["ratio"],
             "removed_blocks": len(r.arch.removed), "measurements": r.oracle["counts"]["measurements"],
             "wall_s": r.wall_time_s} for m, r in results.items()]
    report = {"model": model_name, "profile": profile.name, "reached": reached, "criterion": criterion,
              "accuracy_original": first.accuracy["original"], "repeats": repeats, "budget_s": budget_s,
              "rows": rows}
    dump_json(report, out / COMPARISON)
    return report


def comparison_table(report: dict[str, Any]) -> str:
    """The comparison as a Markdown table."""
    lines = [f"Side by side at the latency {report['rows'][0]['method']} measured ({report['reached']:.3f} of the "
             f"original), {report['repeats']} interleaved comparisons with the original:", "",
             "| method | latency ratio, median (range) | accuracy (%) | FLOPs ratio | params ratio | removed blocks "
             "| measurements | wall (s) |", "|---|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        j = r["side_by_side"]
        lines.append(f"| {r['method']} | {j['median']:.3f} ({j['low']:.3f}–{j['high']:.3f}) | {r['accuracy']:.2f} | "
                     f"{r['flops_ratio']:.3f} | {r['params_ratio']:.3f} | {r['removed_blocks']} | "
                     f"{r['measurements']} | {r['wall_s']:.0f} |")
    return "\n".join(lines)

