"""``latbench pipeline``: from a fresh clone to pruned networks measured side by side, in six stages.

1. **profile**: a profile under ``device_profiles/`` made on this machine with the chosen engine configuration
   (strictly: no fingerprint difference beyond an engine patch release, the same batch) that prices the networks
   of the later stages, re-anchored to the machine's speed now; else this device profiled with a short budget
   into ``OUT/profile`` (``--profile`` forces one).
2. **accuracy**: the profile's held-out accuracy per predictor.
3. **analyze**: where a network's time goes (``latbench analyze``'s report) in ``OUT/analysis``.
4. **train**: a small network trained on the offline dataset in ``OUT/train`` (or weights given).
5. **prune**: every method to one latency target, each in its resumable run folder ``OUT/prune/<method>``;
   a method that fails is recorded with its one-line error and the others go on.
6. **report**: every pruned network and the original in ONE interleaved measurement, ``repeats`` times
   (``pruners.compare.side_by_side``), a table, a Pareto plot and the page ``OUT/summary.md``.

Each finished stage writes ``OUT/stages/<n>-<name>.json`` (atomically); a rerun skips it, and training and
pruning resume in their own folders, so an interrupted pipeline goes on where it stopped. ``OUT/pipeline.json``
records the settings: a rerun with other settings is refused (use another ``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from latbench.anchoring import DEFAULT_SECONDS, Reanchoring
from latbench.backends import DEFAULT_BACKEND, backend_names, require_backend
from latbench.cli.console import check_writable_folder, progress_bar
from latbench.cli.options import load_profile, profile_path, reanchor_profile, traced_model
from latbench.cli.predict import analysis_lines
from latbench.cli.profiles import validation_lines
from latbench.cli.values import batch_size, non_negative_float, non_negative_int, positive_float, positive_int, ratio
from latbench.device_profile import DeviceProfile
from latbench.errors import LatbenchError, ProfileError, UsageError, first_line
from latbench.folder_lock import FolderLock
from latbench.jsonio import dump_json
from latbench.models import get_entry
from latbench.models.family import family
from latbench.predictors import OutOfProfileError
from latbench.predictors.metrics import spearman
from latbench.profiler.run import ProfileSettings, profile_device
from latbench.sensitivity.report import write_report
from pruners.compare import side_by_side
from pruners.data import load_dataset
from pruners.errors import PruningError
from pruners.method import options_given
from pruners.methods import get_method
from pruners.prune import prune
from pruners.result import REPORT, load_pruned, search_cost
from pruners.train import TrainConfig
from pruners.trained import WEIGHTS, load_trained, model_for, train_zoo_model

STAGES = ("profile", "accuracy", "analyze", "train", "prune", "report")
#: the four latency-aware methods, then the two FLOPs-era baselines
DEFAULT_METHODS = ("splamp", "hilp", "layerprune", "lap", "uniform", "global")
SETTINGS = "pipeline.json"
SUMMARY = "summary.md"
PARETO = "pareto.png"
SIDE_BY_SIDE = "side_by_side.json"
#: training recipe of the small network (a short cosine schedule converges on digits in a few epochs)
TRAIN_LR, TRAIN_BATCH = 0.1, 32
FINETUNE_LR = 0.01
#: HILP's small budget: measure the 4 candidates the predictor ranks best at each step (8 by default)
HILP_SMALL = {"prefilter": 4}


@dataclass(frozen=True)
class PipelineConfig:
    """Every setting of a pipeline run (the command line's flags; defaults: the small run on this CPU)."""

    out: str = "runs/pipeline"
    model: str = "resnet20"
    analyze_model: str = "resnet56"
    models: tuple[str, ...] = ()  #: families a profile must cover (default: analyze_model and model)
    dataset: str = "digits"
    data: str | None = None
    weights: str | None = None
    backend: str = DEFAULT_BACKEND
    device: str | None = None
    threads: int | None = None  #: None: 1 on a CPU, the engine's own elsewhere
    precision: str = "fp32"
    batch: int = 1
    profile: str | None = None
    profiles_root: str = "device_profiles"
    profile_minutes: float = 4.0
    reanchor_seconds: float = DEFAULT_SECONDS
    target: float = 0.5
    methods: tuple[str, ...] = DEFAULT_METHODS
    options: tuple[str, ...] = ()  #: METHOD.NAME=VALUE
    epochs: int = 6
    finetune_epochs: int = 5
    episodes: int = 60
    oracle: str = "auto"
    measure_budget: float = 10.0
    joint_budget: float = 10.0
    repeats: int = 3
    seed: int = 0
    quiet: bool = False

    def settings(self) -> dict[str, Any]:
        """What a resumed run must share with the run that started the folder (all but ``out`` and ``quiet``)."""
        d = asdict(self)
        for key in ("out", "quiet"):
            d.pop(key)
        return json.loads(json.dumps(d))

    @property
    def families(self) -> list[str]:
        """The networks a profile must price: ``models``, else the analysed and the pruned network."""
        return list(dict.fromkeys(self.models or (self.analyze_model, self.model)))


def method_options(config: PipelineConfig, method: str) -> dict[str, Any]:
    """The options ``method`` runs with: the pipeline's small budgets (LAP: ``episodes``, a third of them
    random warm-up; HILP: :data:`HILP_SMALL`), then ``--option METHOD.NAME=VALUE`` (values read as JSON
    where they parse)."""
    chosen: dict[str, Any] = {}
    if method == "lap":
        chosen = {"episodes": config.episodes, "warmup": config.episodes // 3}
    elif method == "hilp":
        chosen = dict(HILP_SMALL)
    return chosen | options_given(config.options, method)


# --- before any work ---------------------------------------------------------------------------------------------
def check(config: PipelineConfig) -> PipelineConfig:
    """Refuse a bad setting in one line (a ``LatbenchError``) before anything is written; the settings with the
    engine's threads resolved."""
    if not 0 < config.target < 1:
        raise UsageError(f"--target is a share of the original's latency in (0, 1), got {config.target:g}")
    if not config.methods:
        raise UsageError("--methods names no method")
    for name in config.methods:
        get_method(name)
    if len(set(config.methods)) != len(config.methods):
        raise UsageError("--methods names a method twice")
    for item in config.options:
        key, eq, _ = item.partition("=")
        owner, dot, name = key.partition(".")
        if not (eq and dot and owner and name):
            raise UsageError(f"--option takes METHOD.NAME=VALUE (e.g. hilp.prefilter=8), got {item!r}")
        if owner not in config.methods:
            raise UsageError(f"--option {item}: {owner} is not among --methods ({', '.join(config.methods)})")
    for name in config.methods:
        get_method(name).options(method_options(config, name))
    if config.repeats < 1 or config.epochs < 1:
        raise UsageError(f"--repeats and --epochs take 1 or more, got {config.repeats} and {config.epochs}")
    get_entry(config.model)  # trained and pruned: a built-in network
    family(config.analyze_model)
    splits = load_dataset(config.dataset, config.data, seed=config.seed)  # a missing or incomplete folder: one line
    model_for(config.model, splits)  # the network takes the dataset's images
    if config.weights is not None and not Path(config.weights).is_file() \
            and not (Path(config.weights) / WEIGHTS).is_file():
        raise UsageError(f"--weights {config.weights}: no such weights file (or folder holding {WEIGHTS})")
    if config.profile is not None:
        folder = profile_path(config.profile)
        DeviceProfile.load(folder, check_fingerprint=False).backend()  # readable, and its engine runs here
    else:
        threads = config.threads
        if threads is None and require_backend(config.backend, device=config.device,
                                               precision=config.precision).device == "cpu":
            threads = 1
        config = replace(config, threads=threads)
        require_backend(config.backend, device=config.device, threads=threads, precision=config.precision)
    check_writable_folder(config.out)
    saved = Path(config.out) / SETTINGS
    if saved.exists():
        try:
            before = json.loads(saved.read_text())["settings"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{saved} is unreadable ({exc}); delete it or choose another --out") from None
        now = config.settings()
        changed = [k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
        if changed:
            what = ", ".join(f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in changed)
            raise UsageError(f"{config.out} was started with other settings ({what}); rerun with the same "
                             "settings to resume it, or choose another --out")
    return config


# --- the profile ----------------------------------------------------------------------------------------------------
def covers(profile: DeviceProfile, name: str) -> bool:
    """Whether ``profile`` prices network ``name`` (one of its families, or every layer in its lookup table)."""
    if name in profile.families:
        return True
    try:
        arch = family(name).trace(int(profile.meta["settings"].get("batch", 1)))
        profile.predictor("lut", reanchored=False).predict(arch)
    except (OutOfProfileError, ProfileError):
        return False
    return True


def find_profile(backend, batch: int, networks: list[str],
                 root: str | Path = "device_profiles") -> tuple[DeviceProfile | None, list[str]]:
    """The first profile under ``root`` that ``DeviceProfile.load(strict=True)`` accepts for ``backend`` (its
    fingerprint: device, engine, precision, threads; an engine patch release is accepted), made at ``batch``,
    that prices every network of ``networks``; and why each other profile was passed over."""
    here = backend.fingerprint()
    passed: list[str] = []
    for folder in sorted(Path(root).glob("*/")):
        if not (folder / "profile.json").exists():
            continue
        try:
            profile = DeviceProfile.load(folder, check_fingerprint=False)
        except LatbenchError as exc:
            passed.append(f"{folder.name}: {first_line(exc)}")
            continue
        refused = [c for c in profile.fingerprint_changes(here) if c.refused_when_strict]
        if refused:
            passed.append(f"{folder.name}: {'; '.join(map(str, refused))}")
            continue
        made_at = int(profile.meta["settings"].get("batch", 1))
        if made_at != batch:
            passed.append(f"{folder.name}: batch {made_at}, here {batch}")
            continue
        missing = [n for n in networks if not covers(profile, n)]
        if missing:
            passed.append(f"{folder.name}: does not price {', '.join(missing)}")
            continue
        return profile, passed
    return None, passed


# --- the stages ------------------------------------------------------------------------------------------------------
@dataclass
class Run:
    """A pipeline run: its settings, folder, what finished stages recorded, and the profile once loaded."""

    config: PipelineConfig
    log: Callable[[str], None]
    done: dict[str, dict[str, Any]]
    _profile: DeviceProfile | None = None

    @property
    def out(self) -> Path:
        return Path(self.config.out)

    @property
    def progress(self) -> bool:
        return not self.config.quiet

    @property
    def profile(self) -> DeviceProfile:
        """The profile stage 1 chose, with the anchoring it measured applied (loaded again on a rerun)."""
        if self._profile is None:
            record = self.done["profile"]
            self._profile = DeviceProfile.load(record["profile"], check_fingerprint=False)
            if record.get("anchoring"):
                self._profile.apply_anchoring(Reanchoring.from_dict(record["anchoring"]))
        return self._profile


def stage_profile(run: Run) -> dict[str, Any]:
    c, log = run.config, run.log
    passed: list[str] = []
    found = None
    if c.profile is not None:
        # warns, as every command does, where the profile differs from this machine
        found = load_profile(c.profile, strict=False, will_reanchor=c.reanchor_seconds > 0)
        folder, source = found.path, "given"
        log(f"  using the profile given, {folder}")
    else:
        backend = require_backend(c.backend, device=c.device, threads=c.threads, precision=c.precision)
        found, passed = find_profile(backend, c.batch, c.families, c.profiles_root)
        if found is not None:
            folder, source = found.path, "shipped"
            log(f"  {folder} matches this machine and {c.backend} ({backend.device}, {c.precision}, "
                f"{c.threads or 'default'} thread(s), batch {c.batch}) and prices {', '.join(c.families)}")
        else:
            for reason in passed:
                log(f"  passed over {reason}")
            folder, source = run.out / "profile", "profiled"
            log(f"  no profile under {c.profiles_root}/ fits: profiling this device for {', '.join(c.families)} "
                f"in about {c.profile_minutes:g} min into {folder}")
            settings = ProfileSettings(families=c.families, backend=c.backend, device=c.device, threads=c.threads,
                                       precision=c.precision, batch=c.batch, budget_min=c.profile_minutes)
            folder = profile_device(settings, out=folder, progress=run.progress)
    profile = DeviceProfile.load(folder, check_fingerprint=False) if source == "profiled" else found
    anchoring = None
    if source != "profiled" and c.reanchor_seconds > 0:
        anchoring = reanchor_profile(profile, c.reanchor_seconds, progress=run.progress)  # prints what it found
        log(f"  anchor factor {anchoring.factor:.2f}x")
    elif source == "profiled":
        log(f"  profiled in {profile.meta['timings_s']['total'] / 60:.1f} min (no re-anchoring needed: measured now)")
    run._profile = profile
    return {"profile": str(folder), "name": profile.name, "source": source, "passed_over": passed,
            "anchoring": anchoring.to_dict() if anchoring else None,
            "anchor_factor": anchoring.factor if anchoring else None}


def stage_accuracy(run: Run) -> dict[str, Any]:
    profile = run.profile
    validation = profile.meta.get("validation", {})
    lines = validation_lines(validation) or ["the profile records no held-out validation"]
    run.log(f"  {profile.name}, predicted against networks measured but never fitted on:")
    for line in lines:
        run.log(f"    {line}")
    return {"profile": profile.name, "validation": validation}


def stage_analyze(run: Run) -> dict[str, Any]:
    profile, c = run.profile, run.config
    _, arch, _ = traced_model(c.analyze_model, profile, None)
    folder = run.out / "analysis"
    report = write_report(arch, profile, folder, kind="lut", log=lambda msg: run.log(f"  {msg}"))
    prop, cands = report.frames["proportion"], report.frames["candidates"]
    heavy, light = int((prop["flag"] == "latency-heavy").sum()), int((prop["flag"] == "latency-light").sum())
    rho = spearman(cands["flops"], cands["predicted_us"])
    for line in analysis_lines(report, "lut"):
        run.log(f"  {line}")
    run.log(f"  FLOPs vs latency: {heavy} layer(s) carry at least twice their FLOPs share of the latency, {light} "
            f"less than half; over {len(cands)} random candidates FLOPs rank latency with Spearman {rho:.3f}")
    ranking = report.frames["ranking"]
    return {"model": c.analyze_model, "folder": str(folder), "files": [str(f) for f in report.files],
            "latency_heavy": heavy, "latency_light": light, "flops_latency_spearman": rho,
            "top_groups": [{"group": r["group_name"], "saved_us": float(r["saved_us"]),
                            "saved_share": float(r["saved_share"])} for _, r in ranking.head(5).iterrows()]}


def stage_train(run: Run) -> dict[str, Any]:
    c, log = run.config, run.log
    if c.weights is not None:
        splits = load_dataset(c.dataset, c.data, seed=c.seed)
        log(f"  using the weights given, {c.weights}")
        return {"weights": c.weights, "source": "given", "num_classes": splits.num_classes,
                "input_shape": list(splits.input_shape), "test_accuracy": None, "train_seconds": None}
    folder = run.out / "train"
    config = TrainConfig(epochs=c.epochs, lr=TRAIN_LR, batch_size=TRAIN_BATCH, seed=c.seed)
    done = _read_json(folder / "train.json")
    if (folder / WEIGHTS).is_file() and done and done.get("model") == c.model and done.get("dataset") == c.dataset \
            and done.get("config") == config.to_dict():
        report, source = done, "reused"
        log(f"  reusing the network trained earlier in {folder}")
    else:
        log(f"  training {c.model} on {c.dataset} for {c.epochs} epochs into {folder}")
        report, source = train_zoo_model(c.model, c.dataset, folder, config, root=c.data, progress=run.progress), \
            "trained"
    log(f"  {c.model}: test accuracy {report['test_accuracy']:.2f}% ({report['seconds']:.0f} s of training)")
    return {"weights": str(folder), "source": source, "num_classes": report["num_classes"],
            "input_shape": report["input_shape"], "test_accuracy": report["test_accuracy"],
            "train_seconds": report["seconds"]}


def stage_prune(run: Run) -> dict[str, Any]:
    c, log = run.config, run.log
    weights = run.done["train"]["weights"]
    finetune = TrainConfig(epochs=c.finetune_epochs, lr=FINETUNE_LR, seed=c.seed)
    runs = []
    for method in c.methods:
        folder = run.out / "prune" / method
        if (folder / REPORT).is_file():
            log(f"  {method}: finished earlier in {folder}")
            runs.append({"method": method, "folder": str(folder)})
            continue
        log(f"  {method}: pruning {c.model} to {c.target:g} of its latency into {folder}")
        try:
            result = prune(method, c.model, weights, run.profile, c.target, dataset=c.dataset, data_root=c.data,
                           out=folder, finetune=finetune, mode=c.oracle, seed=c.seed,
                           measure_budget_s=c.measure_budget, progress=run.progress,
                           options=method_options(c, method))
        except Exception as exc:  # noqa: BLE001 - one method's failure is a row of the table, not the end
            error = first_line(exc) if isinstance(exc, LatbenchError) else f"{type(exc).__name__}: {first_line(exc)}"
            log(f"  {method}: failed: {error}")
            runs.append({"method": method, "folder": str(folder), "error": error})
            continue
        log(f"  {method}: measured {result.latency['measured_ratio']:.3f} of the original's latency, accuracy "
            f"{result.accuracy['finetuned']:.2f}% (original {result.accuracy['original']:.2f}%), "
            f"{result.wall_time_s:.0f} s")
        runs.append({"method": method, "folder": str(folder)})
    return {"target": c.target, "runs": runs}


def stage_report(run: Run) -> dict[str, Any]:
    c, log, profile = run.config, run.log, run.profile
    train = run.done["train"]
    runs = run.done["prune"]["runs"]
    reports = {}
    for r in runs:
        if "error" not in r:
            reports[r["method"]] = _read_json(Path(r["folder"]) / REPORT)
            if reports[r["method"]] is None:
                raise PruningError(f"{r['folder']}/{REPORT} is gone or unreadable; delete "
                                   f"{stage_file(run.out, 5, 'prune')} to prune again")
    original = load_trained(c.model, train["weights"], train["num_classes"])
    networks = {m: load_pruned(c.model, Path(r["folder"]), original, train["num_classes"])
                for m, r in ((r["method"], r) for r in runs) if m in reports}
    batch = int(profile.meta["settings"].get("batch", 1))
    example = torch.randn(batch, *train["input_shape"], generator=torch.Generator().manual_seed(c.seed))
    joint: dict[str, dict[str, Any]] = {}
    if networks:
        log(f"  measuring the original and {len(networks)} pruned networks in one interleaved comparison, "
            f"{c.repeats} x {c.joint_budget:g} s")
        with progress_bar() if run.progress else nullcontext() as bar:
            total = c.repeats * c.joint_budget
            task = bar.add_task("side by side", total=total, info="deploying") if bar else None
            follow = (lambda i, p: bar.update(task, completed=min(i * c.joint_budget + p["elapsed_s"], total),
                                              info=f"comparison {i + 1}/{c.repeats}, {p['rounds']} rounds")) \
                if bar else None
            joint = side_by_side(profile, original, networks, example, c.joint_budget, c.repeats, progress=follow)
    else:
        log("  no method produced a network: nothing to measure")
    dump_json({"profile": profile.name, "backend": profile.meta["settings"]["backend"], "budget_s": c.joint_budget,
               "repeats": c.repeats, "networks": joint}, run.out / SIDE_BY_SIDE)
    rows = table_rows(runs, reports, joint, train)
    table = markdown_table(rows)
    plot_pareto(rows, c.target, run.out / PARETO, f"{c.model} on {c.dataset}, {profile.name}")
    figures = [str(run.out / PARETO)] + [f for f in run.done["analyze"]["files"] if f.endswith(".png")]
    files = {"summary": str(run.out / SUMMARY), "side_by_side": str(run.out / SIDE_BY_SIDE), "figures": figures,
             "reports": [str(Path(r["folder"]) / REPORT) for r in runs if r["method"] in reports],
             "analysis": str(Path(run.done["analyze"]["folder"]) / SUMMARY)}
    (run.out / SUMMARY).write_text(summary_page(run, rows, table))
    slower = [r["method"] for r in rows if r.get("ratio") is not None and r["method"] != "original" and r["ratio"] >= 1]
    if slower:
        log(f"  note: not faster than the original side by side: {', '.join(slower)}")
    return {"rows": rows, "table": table, "files": files, "succeeded": len(networks),
            "failed": len(runs) - len(networks)}


STAGE_FUNCTIONS = {"profile": "stage_profile", "accuracy": "stage_accuracy", "analyze": "stage_analyze",
                   "train": "stage_train", "prune": "stage_prune", "report": "stage_report"}
DESCRIPTIONS = {"profile": "a device profile of this machine and engine",
                "accuracy": "how well the profile predicts networks it never saw",
                "analyze": "where the time goes",
                "train": "a trained network to prune",
                "prune": "every method to the latency target",
                "report": "all networks measured side by side"}


# --- the report -----------------------------------------------------------------------------------------------------
def table_rows(runs: list[dict[str, Any]], reports: dict[str, dict[str, Any]], joint: dict[str, dict[str, Any]],
               train: dict[str, Any]) -> list[dict[str, Any]]:
    """One row for the original, then one per method: latency and speed-up from the side-by-side
    measurement, accuracy, FLOPs, parameters, measurements and wall time from each run's report."""
    first = next(iter(reports.values()), None)
    original_us = next(iter(joint.values()))["original_us"] if joint else None
    rows = [{"method": "original", "latency_us": original_us, "ratio": 1.0 if joint else None, "range": None,
             "speedup": 1.0 if joint else None,
             "accuracy": first["accuracy"]["original"] if first else train.get("test_accuracy"),
             "mflops": first["flops"]["original"] / 1e6 if first else None,
             "params": first["params"]["original"] if first else None, "measurements": None,
             "wall_s": train.get("train_seconds")}]
    for r in runs:
        method = r["method"]
        if method not in reports:
            rows.append({"method": method, "error": r.get("error", "no report")})
            continue
        rep, j = reports[method], joint[method]
        cost = search_cost(rep)
        rows.append({"method": method, "latency_us": j["median_us"], "ratio": j["median"],
                     "range": [j["low"], j["high"]], "speedup": 1.0 / j["median"],
                     "accuracy": rep["accuracy"]["finetuned"], "mflops": rep["flops"]["pruned"] / 1e6,
                     "params": rep["params"]["pruned"],
                     "measurements": cost["measurements"], "wall_s": cost["wall_s"],
                     "run_measured_ratio": rep["latency"]["measured_ratio"], "missed": rep["target"].get("missed")})
    return rows


COLUMNS = ("method", "latency (µs)", "speed-up", "latency ratio (range)", "accuracy (%)", "MFLOPs", "params (k)",
           "measurements", "wall (s)")


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | failed: {r['error']} |" + " |" * (len(COLUMNS) - 2))
            continue
        span = f" ({r['range'][0]:.3f}–{r['range'][1]:.3f})" if r.get("range") else ""
        cells = [r["method"], _fmt(r["latency_us"], ",.1f"), _fmt(r["speedup"], ".2f") + ("x" if r["speedup"] else ""),
                 _fmt(r["ratio"], ".3f") + span, _fmt(r["accuracy"], ".2f"), _fmt(r["mflops"], ".2f"),
                 _fmt(None if r["params"] is None else r["params"] / 1e3, ".1f"),
                 "–" if r["measurements"] is None else str(r["measurements"]), _fmt(r["wall_s"], ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_pareto(rows: list[dict[str, Any]], target: float, path: Path, title: str) -> Path:
    """Test accuracy against the side-by-side latency ratio: one point per method (its range over the repeats as
    a horizontal bar) and the original at 1."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for r in rows:
        if r.get("ratio") is None or r.get("accuracy") is None:
            continue
        lo, hi = r["range"] or (r["ratio"], r["ratio"])
        marker = "*" if r["method"] == "original" else "o"
        ax.errorbar([r["ratio"]], [r["accuracy"]], xerr=[[r["ratio"] - lo], [hi - r["ratio"]]], fmt=marker,
                    ms=12 if marker == "*" else 7, capsize=3, label=r["method"])
        ax.annotate(r["method"], (r["ratio"], r["accuracy"]), textcoords="offset points", xytext=(5, 5), fontsize=8)
    ax.axvline(target, color="grey", lw=1, ls=":", label=f"target {target:g}")
    ax.margins(x=0.1, y=0.1)
    ax.set(xlabel="measured latency / original (side by side)", ylabel="test accuracy (%)", title=title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def summary_page(run: Run, rows: list[dict[str, Any]], table: str) -> str:
    c, out = run.config, run.out
    prof, acc, analysis, train = (run.done[k] for k in ("profile", "accuracy", "analyze", "train"))
    rel = lambda p: Path(p).relative_to(out).as_posix() if Path(p).is_relative_to(out) else str(p)  # noqa: E731
    how = {"shipped": "shipped with the repository, matching this machine", "given": "given with --profile",
           "profiled": "profiled on this device by this pipeline"}[prof["source"]]
    lines = [f"# latbench pipeline: {c.model} on {c.dataset}, pruned to {c.target:g} of its latency", "",
             f"Profile **{prof['name']}** ({how}; `{prof['profile']}`)."]
    if prof.get("anchoring"):
        anchoring = Reanchoring.from_dict(prof["anchoring"])
        lines.append(f"Re-anchored: {anchoring.describe(run.profile.meta.get('created', ''))}.")
    lines += ["", "## How well the profile predicts", "", "Held-out networks (measured, never fitted on):", ""]
    lines += [f"- {line}" for line in validation_lines(acc["validation"])] or ["- no held-out validation recorded"]
    lines += ["", f"## Where the time goes: {analysis['model']}", "",
              f"Report: [{rel(Path(analysis['folder']) / SUMMARY)}]({rel(Path(analysis['folder']) / SUMMARY)}). "
              f"{analysis['latency_heavy']} layer(s) carry at least twice their FLOPs share of the latency, "
              f"{analysis['latency_light']} less than half; FLOPs rank random candidates' latency with Spearman "
              f"{analysis['flops_latency_spearman']:.3f}.", ""]
    lines += [f"![{Path(f).stem}]({rel(f)})" for f in analysis["files"] if f.endswith(".png")]
    trained = (f"trained here, test accuracy {train['test_accuracy']:.2f}%" if train["source"] != "given"
               else f"weights `{train['weights']}`")
    lines += ["", "## Pruned networks, measured side by side", "",
              f"{c.model} ({trained}) pruned by each method to {c.target:g} of its measured latency on "
              f"{run.profile.meta['settings']['backend']}, fine-tuned {c.finetune_epochs} epoch(s); then every "
              f"network and the original measured in one interleaved comparison, {c.repeats} times "
              f"({c.joint_budget:g} s each): latency is the median, speed-up the original's latency over the "
              "network's (1 / median ratio), the range the ratio's over the repeats. Accuracy on the test split; "
              "measurements and wall time are what each method's run spent (the original's wall time: its "
              "training).", "", table, "",
              f"![accuracy against measured latency]({PARETO})"]
    folders = [f"[{r['method']}]({rel(out / 'prune' / r['method'] / SUMMARY)})" for r in rows
               if r["method"] != "original" and "error" not in r]
    if folders:
        lines += ["", f"Each method's run (its report.json and summary): {', '.join(folders)}."]
    missed = [f"{r['method']} {r['run_measured_ratio']:.3f}" for r in rows if r.get("missed")]
    if missed:
        lines += ["", f"Outside ±5% of the target {c.target:g} in the method's own final measurement (its run's "
                      f"summary says why): {', '.join(missed)}."]
    times = ", ".join(f"{name} {run.done[name]['seconds']:.0f} s" for name in STAGES if name in run.done)
    lines += ["", f"Stage times: {times}.", ""]
    return "\n".join(lines)


# --- the run ---------------------------------------------------------------------------------------------------------
def stage_file(out: str | Path, n: int, name: str) -> Path:
    return Path(out) / "stages" / f"{n}-{name}.json"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_pipeline(config: PipelineConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume) the pipeline in ``config.out``; each stage's record by name. Bad settings are refused
    before anything is written (:func:`check`)."""
    config = check(config)
    out = Path(config.out)
    with FolderLock(out, "latbench pipeline"):
        if not (out / SETTINGS).exists():
            dump_json({"settings": config.settings()}, out / SETTINGS)
        run = Run(config, log, {})
        current = None
        try:
            for n, name in enumerate(STAGES, 1):
                path = stage_file(out, n, name)
                record = _read_json(path)
                if record is not None:
                    run.done[name] = record
                    log(f"[{n}/{len(STAGES)}] {name}: done earlier ({record.get('seconds', 0):.1f} s), skipped")
                    continue
                current = name
                log(f"[{n}/{len(STAGES)}] {name}: {DESCRIPTIONS[name]}")
                started = time.perf_counter()
                result = globals()[STAGE_FUNCTIONS[name]](run)
                record = {"stage": name, "seconds": round(time.perf_counter() - started, 2), **result}
                dump_json(record, path)
                run.done[name] = record
                log(f"[{n}/{len(STAGES)}] {name}: done in {record['seconds']:.1f} s")
        except KeyboardInterrupt:
            print(f"latbench: pipeline interrupted in stage {current}; run the same command again to resume",
                  file=sys.stderr)
            raise
    return run.done


# --- the command line -------------------------------------------------------------------------------------------------
def cmd_pipeline(args: argparse.Namespace) -> int:
    config = PipelineConfig(
        out=args.out, model=args.model, analyze_model=args.analyze_model,
        models=tuple(m for item in args.models or () for m in item.split(",") if m), dataset=args.dataset,
        data=args.data, weights=args.weights, backend=args.backend, device=args.device, threads=args.threads,
        precision=args.precision, batch=args.batch, profile=args.profile, profiles_root=args.profiles_root,
        profile_minutes=args.profile_minutes, reanchor_seconds=args.reanchor_seconds, target=args.target,
        methods=tuple(m for item in args.methods for m in item.split(",") if m), options=tuple(args.option),
        epochs=args.epochs, finetune_epochs=args.finetune_epochs, episodes=args.episodes, oracle=args.oracle,
        measure_budget=args.measure_budget, joint_budget=args.joint_budget, repeats=args.repeats, seed=args.seed,
        quiet=args.quiet)
    started = time.perf_counter()
    done = run_pipeline(config, log=lambda line: print(line, flush=True))
    report = done["report"]
    print()
    print(report["table"])
    files = report["files"]
    print(f"\nsummary page: {files['summary']}")
    print(f"side-by-side measurement: {files['side_by_side']}")
    print(f"figures: {', '.join(files['figures'])}")
    print(f"reports: {', '.join(files['reports'] + [files['analysis']])}")
    times = ", ".join(f"{name} {done[name]['seconds']:.0f} s" for name in STAGES)
    print(f"stage times: {times} (this call {time.perf_counter() - started:.0f} s)")
    return 0 if report["succeeded"] else 1


def add_parser(sub) -> None:
    """Add ``pipeline`` to the ``latbench`` command's subparsers."""
    p = sub.add_parser("pipeline", help="profile, predict, analyse, train, prune with every method and measure "
                                        "side by side, resumable (make demo)",
                       description="From a fresh clone to pruned networks that are measurably faster: (1) a "
                                   "profile of this device (a shipped one that matches, re-anchored, else a short "
                                   "profiling run), (2) its held-out accuracy, (3) where a network's time goes, "
                                   "(4) a small network trained offline, (5) pruned by every method to one latency "
                                   "target, (6) all measured side by side with the original: a table, a Pareto "
                                   "plot and OUT/summary.md. Each finished stage is recorded under OUT/stages/; "
                                   "the same command again resumes where it stopped.")
    d = PipelineConfig()
    p.add_argument("--model", default=d.model,
                   help=f"built-in network to train and prune (default {d.model}, a CIFAR ResNet)")
    p.add_argument("--analyze-model", default=d.analyze_model,
                   help=f"network whose latency is analysed in stage 3 (default {d.analyze_model})")
    p.add_argument("--models", action="append", metavar="A,B",
                   help="comma-separated families a profile must price (a shipped one to be chosen, a fresh one to "
                        "be profiled for; default: --analyze-model and --model)")
    p.add_argument("--dataset", default=d.dataset,
                   help="digits (ships with scikit-learn, offline), cifar10 or imagefolder (from --data)")
    p.add_argument("--data", metavar="DIR", help="dataset folder for cifar10 or imagefolder; nothing is downloaded")
    p.add_argument("--weights", metavar="PATH",
                   help="trained weights of --model (a state dict, or a folder written by latbench train): skip "
                        "training")
    p.add_argument("--backend", default=d.backend, help=f"engine to measure on, one of {', '.join(backend_names())} "
                                                        f"(default {d.backend})")
    p.add_argument("--device", help="engine device, cpu or cuda (default: the engine's own)")
    p.add_argument("--threads", type=positive_int,
                   help="CPU threads of the engine (default 1 on a CPU, the steadiest timings on a shared machine; "
                        "the engine's own elsewhere)")
    p.add_argument("--precision", default=d.precision, help=f"engine precision (default {d.precision})")
    p.add_argument("--batch", type=batch_size, default=d.batch, help=f"batch size measured (default {d.batch})")
    p.add_argument("--profile", metavar="PATH",
                   help="use this profile (folder, or name under device_profiles/) instead of looking for one; its "
                        "own engine settings apply")
    p.add_argument("--profiles-root", default=d.profiles_root, metavar="DIR",
                   help=f"where to look for a profile of this machine (default {d.profiles_root})")
    p.add_argument("--profile-minutes", type=positive_float, default=d.profile_minutes,
                   help=f"budget of a fresh profile when none fits (default {d.profile_minutes:g} min)")
    p.add_argument("--reanchor-seconds", type=non_negative_float, default=d.reanchor_seconds,
                   help=f"seconds re-measuring a chosen profile's anchor networks to rescale it to this machine's "
                        f"speed now (default {d.reanchor_seconds:g}; 0: use it as recorded)")
    p.add_argument("--target", type=ratio, default=d.target,
                   help=f"latency target of every method, a share of the original's in (0, 1) (default {d.target:g})")
    p.add_argument("--methods", nargs="+", default=list(d.methods), metavar="METHOD",
                   help=f"pruning methods to run, in order (default: {' '.join(d.methods)})")
    p.add_argument("--option", action="append", default=[], metavar="METHOD.NAME=VALUE",
                   help="a method's own option (a field of its Options, see latbench prune --help), e.g. "
                        "hilp.prefilter=8; repeatable; overrides the pipeline's small budgets")
    p.add_argument("--epochs", type=positive_int, default=d.epochs,
                   help=f"training epochs of --model (default {d.epochs}: over 90%% on digits)")
    p.add_argument("--finetune-epochs", type=non_negative_int, default=d.finetune_epochs,
                   help=f"fine-tuning epochs of every pruned network (default {d.finetune_epochs})")
    p.add_argument("--episodes", type=positive_int, default=d.episodes,
                   help=f"LAP's search episodes, a third of them random warm-up (default {d.episodes}; LAP's own "
                        "default is 300)")
    p.add_argument("--oracle", default=d.oracle, choices=["predict", "measure", "auto"],
                   help="how the searches check latency: predictions only, measurements, or both (default auto)")
    p.add_argument("--measure-budget", type=positive_float, default=d.measure_budget,
                   help=f"seconds of each method's final measurement against the original (default "
                        f"{d.measure_budget:g})")
    p.add_argument("--joint-budget", type=positive_float, default=d.joint_budget,
                   help=f"seconds of each side-by-side comparison of all networks (default {d.joint_budget:g})")
    p.add_argument("--repeats", type=positive_int, default=d.repeats,
                   help=f"side-by-side comparisons; the table reports their median (default {d.repeats})")
    p.add_argument("--seed", type=non_negative_int, default=d.seed, help="seed of training, pruning and fine-tuning")
    p.add_argument("--out", default=d.out,
                   help=f"run folder (default {d.out}); a rerun of the same command resumes there")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_pipeline)


__all__ = ["DEFAULT_METHODS", "STAGES", "PipelineConfig", "add_parser", "check", "find_profile", "method_options",
           "run_pipeline", "table_rows"]
