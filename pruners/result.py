"""The record every pruning method returns, and how it is written to a run folder."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latbench.arch import Arch, trace
from latbench.jsonio import dump_json
from latbench.models import build_candidate
from pruners.errors import CheckpointError
from pruners.surgery import Decision, apply
from pruners.train import load_weights, read_weights

REPORT = "report.json"
PRUNED_WEIGHTS = "pruned.pt"


@dataclass
class PruneResult:
    """A pruned network and everything needed to judge it: accuracy, latency (predicted and measured,
    with the backend and profile named), FLOPs, parameters, oracle calls, time and search history."""

    method: str
    model: nn.Module
    arch: Arch
    decision: Decision
    target: dict[str, Any]
    accuracy: dict[str, float | None]  #: original, pruned (before fine-tuning), finetuned (test split)
    latency: dict[str, Any]  #: predicted/measured ratio and us, interval, backend, profile, predictor
    flops: dict[str, float]
    params: dict[str, float]
    oracle: dict[str, Any]
    wall_time_s: float
    search: list[dict[str, Any]] = field(default_factory=list)
    finetune: list[dict[str, float]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "model": self.arch.name, "target": self.target, "accuracy": self.accuracy,
                "latency": self.latency, "flops": self.flops, "params": self.params, "oracle": self.oracle,
                "wall_time_s": self.wall_time_s, "widths": self.arch.channels(),
                "removed_blocks": sorted(self.arch.removed),
                "removed_layers": list(self.decision.remove_layers), "settings": self.settings, "search": self.search,
                "finetune": self.finetune}

    def summary(self) -> str:
        """A short Markdown summary of the run."""
        a, lat, f = self.accuracy, self.latency, self.flops
        fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
        rows = [
            ("test accuracy (%)", fmt(a.get("original")), fmt(a.get("finetuned"))),
            ("latency, measured (us)", fmt(lat.get("reference_measured_us")), fmt(lat.get("measured_us"))),
            ("latency, predicted (us)", fmt(lat.get("reference_predicted_us")), fmt(lat.get("predicted_us"))),
            ("MFLOPs", f"{f['original'] / 1e6:.2f}", f"{f['pruned'] / 1e6:.2f}"),
            ("parameters (k)", f"{self.params['original'] / 1e3:.1f}", f"{self.params['pruned'] / 1e3:.1f}"),
        ]
        lines = [f"# {self.method} on {self.arch.name}", "",
                 f"Target: {self.target.get('metric', 'latency')} ratio {self.target.get('ratio')} on "
                 f"{lat.get('backend')} (profile {lat.get('profile')}, predictor {lat.get('predictor')}).", "",
                 "| | original | pruned |", "|---|---|---|"]
        lines += [f"| {name} | {o} | {p} |" for name, o, p in rows]
        ratio = lat.get("measured_ratio")
        ci = lat.get("measured_ci") or [None, None]
        lines += ["",
                  f"Measured latency ratio {fmt(ratio)} (95% CI {fmt(ci[0])}–{fmt(ci[1])}), "
                  f"predicted {fmt(lat.get('predicted_ratio'))}; accuracy right after surgery "
                  f"{fmt(a.get('pruned'))}% with batch norms re-estimated on {a.get('recalibration_images', 0)} "
                  f"images ({fmt(a.get('pruned_before_recalibration'))}% before).",
                  f"Oracle: {self.oracle.get('counts', {}).get('predictions', 0)} predictions, "
                  f"{self.oracle.get('counts', {}).get('measurements', 0)} measurements; "
                  f"wall time {self.wall_time_s:.0f} s.",
                  f"Removed blocks: {', '.join(sorted(self.arch.removed)) or 'none'}"
                  + (f"; removed layers: {', '.join(self.decision.remove_layers)}." if self.decision.remove_layers
                     else "."), ""]
        if self.target.get("missed"):
            lines.insert(-1, f"**Target missed**: {self.target['missed']}.")
        lines[-1:-1] = [f"Note: {note}." for note in self.oracle.get("notes", [])]
        steps = moves(self.search)
        if steps:
            lines += ["Steps (each chosen on measured latency; the plot is steps.png):", "",
                      "| step | move | measured | predicted | quick accuracy (%) | measured candidates | "
                      "prediction error, median / worst | prediction picks the same |",
                      "|---|---|---|---|---|---|---|---|"]
            lines += [f"| {e['step']} | {e['chosen']} | {e['measured_ratio']:.3f} | {e['predicted_ratio']:.3f} | "
                      f"{e['accuracy']:.1f} | {e['measured']} | {e['prediction_error']['median'] * 100:.1f}% / "
                      f"{e['prediction_error']['worst'] * 100:.1f}% | {'yes' if e['prediction_picks_same'] else 'no'} |"
                      for e in steps]
            lines.append("")
        agent = next((e["lap"] for e in self.search if "lap" in e), None)
        if agent:
            acc = ", ".join(f"{name} {v:.1f}%" for name, v in agent["selection_accuracy"].items())
            lines += [f"LAP: {agent['episodes']} episodes in {agent['search_s']:.0f} s; the best (episode "
                      f"{agent['best_episode']}) predicted at {agent['best_predicted']:.3f} with "
                      f"{agent['best_accuracy']:.1f}% on the quick check; its keep ratios scaled by "
                      f"{agent['knob']:.3f} to meet the measured target. "
                      f"Filters at those widths, quick check: {acc} ({agent['regrown']} regrown).", ""]
        return "\n".join(lines)

    def write(self, out: str | Path) -> Path:
        """``pruned.pt`` (state dict), ``arch.json``, ``decision.json``, ``report.json`` and ``summary.md``."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), out / PRUNED_WEIGHTS)
        self.arch.to_json(out / "arch.json")
        dump_json(self.decision.to_dict(), out / "decision.json")
        dump_json(self.to_dict(), out / REPORT, indent=1)
        (out / "summary.md").write_text(self.summary())
        if moves(self.search):
            plot_steps(moves(self.search), self.target.get("ratio"), out / "steps.png")
        return out


def load_pruned(model: str, folder: str | Path, original: nn.Module | None = None,
                num_classes: int = 10) -> nn.Module:
    """The fine-tuned network of a run folder written by :meth:`PruneResult.write` for the built-in network
    ``model``: its widths from ``arch.json`` (or, with single-path layers removed, which an ``Arch`` does not
    describe, ``decision.json`` applied to ``original``), its weights from ``pruned.pt``; in eval mode."""
    folder = Path(folder)
    try:
        decision = Decision.from_dict(json.loads((folder / "decision.json").read_text()))
        arch = Arch.from_json(folder / "arch.json")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{folder} holds no readable pruning run ({exc})") from None
    if decision.remove_layers:
        if original is None:
            raise CheckpointError(f"{folder} removed layers: give the original network to rebuild it")
        x = torch.zeros(1, *arch.base.input_shape[1:])
        net = apply(original, trace(original, x, model), decision, x)[0]
    else:
        net = build_candidate(model, arch, num_classes=num_classes)
    load_weights(net, read_weights(folder / PRUNED_WEIGHTS), str(folder / PRUNED_WEIGHTS))
    return net.eval()


def search_cost(report: dict[str, Any]) -> dict[str, Any]:
    """Measurements and wall time of the run that searched, from its ``report.json`` (a resumed run reuses its
    decision: what it spent then, from the search record, not what the resumed call spent)."""
    cost = report["oracle"].get("search_cost") or {}
    measurements = cost.get("measurements", report["oracle"]["counts"]["measurements"])
    if "wall_s" in cost:
        return {"measurements": measurements, "wall_s": cost["wall_s"]}
    wall = cost.get("search_s", 0.0) + report["wall_time_s"] if cost.get("resumed") else report["wall_time_s"]
    return {"measurements": measurements, "wall_s": wall}


def moves(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries of a step-by-step search (one chosen, measured move each, as HILP logs them)."""
    return [e for e in history if "chosen" in e and "measured_ratio" in e]


def plot_steps(steps: list[dict[str, Any]], target: float | None, path: Path) -> None:
    """Measured and predicted latency ratio after each step, with the target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = [0] + [e["step"] for e in steps]
    ax.plot(x, [1.0] + [e["measured_ratio"] for e in steps], "o-", label="measured")
    ax.plot(x, [1.0] + [e["predicted_ratio"] for e in steps], "x--", label="predicted")
    if target is not None:
        ax.axhline(target, color="grey", lw=1, ls=":", label=f"target {target:g}")
    ax.set_xlabel("step")
    ax.set_ylabel("latency / original")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
