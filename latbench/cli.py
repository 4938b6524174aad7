"""The ``latbench`` command: a thin shell over the Python API, one function call per command."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from latbench.errors import InputShapeError, LatbenchError, OutputError, UsageError, first_line

#: entry-point group of packages that add commands: each names ``register(subparsers)``
COMMANDS_GROUP = "latbench.commands"


def _console(stderr: bool = False, wide: bool = False):
    """A rich console; ``wide``: in a pipe, as wide as the content (tables are not cut to 80 columns)."""
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:  # a pipe or a file: lines are not cut at 80 columns
        console = Console(stderr=stderr, highlight=False, soft_wrap=True, width=1000 if wide else None)
    return console


def _example_shape(args: argparse.Namespace, default_chw: tuple[int, ...] | None) -> tuple[int, ...] | None:
    from latbench.backends.inputs import parse_shape

    shape = parse_shape(args.input_shape) if args.input_shape is not None else default_chw
    if shape is None:
        if args.batch is not None:
            raise InputShapeError("--batch needs --input-shape for an ONNX file")
        return None
    if len(shape) == 3:
        return (args.batch or 1, *shape)
    if len(shape) == 4:
        if args.batch is not None and args.batch != shape[0]:
            raise InputShapeError(f"--batch {args.batch} contradicts input shape {'x'.join(map(str, shape))}")
        return shape
    raise InputShapeError(f"input shape {'x'.join(map(str, shape))} must be CxHxW or NxCxHxW")


def _model_and_shape(name: str, input_shape: str | None, batch: int | None):
    """A built-in (or ``torchvision:``) network and its example input shape, batch included."""
    from latbench.models import REGISTRY, resolve_model

    model = resolve_model(name)
    entry = REGISTRY.get(name)
    if entry is None and input_shape is None:
        raise InputShapeError(f"{name}: give the input shape (e.g. 3x224x224)")
    default = entry.input_shape if entry is not None else None
    return model, _example_shape(argparse.Namespace(input_shape=input_shape, batch=batch), default)


def cmd_measure(args: argparse.Namespace) -> int:
    from latbench.backends import require_backend
    from latbench.measure import MeasureSettings, measure

    if args.batch is not None and args.batch < 1:
        raise InputShapeError(f"--batch must be positive, got {args.batch}")
    if args.json:
        _check_writable(args.json)  # before measuring: a result that cannot be saved is lost time
    try:
        settings = MeasureSettings(target_rel_ci=args.target_ci, budget_s=args.budget)
    except ValueError as exc:
        raise UsageError(str(exc).replace("target_rel_ci", "--target-ci").replace("budget_s", "--budget")) from None
    backend = require_backend(args.backend, device=args.device, threads=args.threads,
                              precision=args.precision, **({"cuda_graph": True} if args.cuda_graph else {}))
    if args.onnx:
        target, name = args.onnx, args.onnx
        shape = _example_shape(args, None)
    else:
        target, shape = _model_and_shape(args.model, args.input_shape, args.batch)
        name = args.model
    example = None
    if shape is not None:
        import torch

        example = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    err = _console(stderr=True)
    with err.status(f"deploying {name} on {backend.name} ({backend.device})"):
        runnable = backend.deploy(target, example)
    result = _measure_with_progress(measure, runnable, settings, name)
    _print_measurement(result, name)
    if result.stop_reason == "interrupted":
        if args.json:
            result.to_json(args.json)
        print(f"latbench: interrupted after {result.runs} runs; the partial result is shown above"
              + (f" and saved to {args.json}" if args.json else ""), file=sys.stderr)
        return 130
    if args.layers:
        _print_layers(runnable.layer_times(args.layer_runs), args.layers)
    if args.json:
        result.to_json(args.json)
        err.print(f"wrote {args.json}")
    return 0


def _check_writable(path: str) -> None:
    """Refuse an output path that cannot be written, without leaving a file behind."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    if target.is_dir() or not os.access(target if target.exists() else target.parent, os.W_OK):
        raise OutputError(f"cannot write {path}: not a writable file location")


def _progress_bar():
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(), console=_console(stderr=True), transient=True)


def _measure_with_progress(measure_fn, runnable, settings, name: str):
    with _progress_bar() as bar:
        task = bar.add_task(f"measuring {name}", total=settings.budget_s, info="warming up")

        def on_progress(p: dict[str, Any]) -> None:
            rel = p["rel_ci"]
            ci = f"±{rel * 100:.2f}% (target ±{settings.target_rel_ci * 100:g}%)" if rel < 1e9 else "…"
            bar.update(task, completed=min(p["elapsed_s"], p["budget_s"]), info=f"{p['runs']} runs, CI {ci}")

        return measure_fn(runnable, settings, name=name, progress=on_progress)


def _print_measurement(m, name: str) -> None:
    from rich.table import Table

    s = m.summary
    c = m.conditions
    title = (f"{name} · {c.get('backend', '?')} on {c.get('device', '?')} · batch {c.get('batch', '?')} · "
             f"{c.get('dtype', '?')} · threads {c.get('threads') or '-'}")
    table = Table(title=title, show_header=False)
    table.add_column("statistic", style="bold")
    table.add_column("value", justify="right")
    rows = [
        ("median", _us(s.median)),
        (f"{s.ci_level:.0%} CI of median", f"{_us(s.ci_low)} – {_us(s.ci_high)} (±{s.rel_ci_halfwidth * 100:.2f}%)"),
        ("mean / min", f"{_us(s.mean)} / {_us(s.min)}"),
        ("p90 / p99", f"{_us(s.p90)} / {_us(s.p99)}"),
        ("IQR", _us(s.iqr)),
        ("runs (warm-up)", f"{s.n} ({m.warmup_runs}{'' if m.warmup_settled else ', not settled'})"),
        ("stopped", f"{m.stop_reason} after {m.wall_time_s:.1f} s"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    con = _console()
    con.print(table)
    if m.discarded_runs:
        con.print(f"drift: machine state changed during the run; {m.discarded_runs} older samples discarded")


def _print_layers(df, top: int) -> None:
    from rich.table import Table

    table = Table(title=f"per-layer times (engine profiler, top {top})")
    for col in ("layer", "engine node", "op", "median", "share"):
        table.add_column(col, justify="right" if col in ("median", "share") else "left")
    for row in df.sort_values("time_us", ascending=False).head(top).itertuples():
        table.add_row(row.layer or "-", row.engine_node, row.op, _us(row.time_us), f"{row.share * 100:.1f}%")
    _console().print(table)


def _us(value: float) -> str:
    return f"{value / 1e3:.3f} ms" if value >= 1e4 else f"{value:.1f} us"


def cmd_backends(args: argparse.Namespace) -> int:
    from latbench.backends import list_backends

    rows = list_backends()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    from rich.table import Table

    table = Table(title="latbench backends")
    for col in ("backend", "device", "available", "why not / what it is"):
        table.add_column(col)
    for r in rows:
        ok = "[green]yes[/]" if r["available"] else "[red]no[/]"
        table.add_row(r["backend"], r["device"], ok, r["reason"] or r["description"])
    _console().print(table)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from latbench.arch import trace
    from latbench.arch.table import layer_table

    for path in (args.csv, args.json):
        if path:
            _check_writable(path)
    model, shape = _model_and_shape(args.model, args.input_size, args.batch)
    import torch

    arch = trace(model, torch.zeros(*shape), name=args.model)
    if args.widths:
        arch = arch.with_widths(_read_widths(args.widths))
    if args.remove_blocks:
        arch = arch.without_blocks([b for b in args.remove_blocks.split(",") if b])
    table = layer_table(arch)
    _print_arch(arch, table)
    if args.csv:
        table.to_csv(args.csv, index=False)
        _console(stderr=True).print(f"wrote {args.csv}")
    if args.json:
        arch.to_json(args.json)
        _console(stderr=True).print(f"wrote {args.json}")
    return 0


def _read_widths(path: str) -> dict[str, int]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read widths file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"widths file {path} must hold a JSON object {{group or layer: channels}}")
    return data


def _print_arch(arch, table) -> None:
    from rich.table import Table

    t = Table(title=f"{arch.name} · input {'x'.join(map(str, arch.base.input_shape))}", show_lines=False)
    for col, justify in (("#", "right"), ("layer", "left"), ("op", "left"), ("in", "right"), ("out", "right"),
                         ("kernel", "left"), ("MFLOPs", "right"), ("FLOPs %", "right"), ("params", "right"),
                         ("group", "right"), ("block", "left")):
        t.add_column(col, justify=justify, overflow="fold")
    for r in table.itertuples():
        block = f"{r.block} ({'removable' if r.removable else 'fixed'})" if r.block else ""
        t.add_row(str(r.index), r.name, r.op + (f"+{r.epilogue}" if r.epilogue else ""), r.in_shape, r.out_shape,
                  r.kernel, f"{r.flops / 1e6:.2f}", f"{r.flops_share * 100:.1f}", f"{r.params:,}", r.groups, block)
    con = _console()
    con.print(t)
    prunable = arch.prunable_groups
    removable = [b.name for b in arch.blocks if b.removable]
    con.print(f"total: {arch.flops() / 1e6:,.2f} MFLOPs ({arch.macs() / 1e6:,.2f} M multiply-accumulates; "
              f"FLOPs = 2 x MACs of conv and linear layers), {arch.params():,} parameters, "
              f"{len(table)} layers, {len(prunable)} prunable channel groups, "
              f"{len(removable)} of {len(arch.blocks)} blocks removable")


def cmd_profile(args: argparse.Namespace) -> int:
    from latbench.profiler.run import ProfileSettings, profile_device

    families = [m for m in (args.models or "").split(",") if m]
    if args.prior:
        return _adapt(args, families)
    if not families:
        raise UsageError("give --models (e.g. resnet56,vgg16,mobilenetv2), or --from a profile to adapt")
    if args.budget_min <= 0:
        raise UsageError(f"--budget-min must be positive, got {args.budget_min}")
    settings = ProfileSettings(families=families, backend=args.backend, device=args.device, threads=args.threads,
                               precision=args.precision or "fp32", batch=args.batch, budget_min=args.budget_min,
                               networks_per_family=args.networks, step=args.step, refine=not args.no_refine,
                               refine_target=args.refine_target)
    folder = profile_device(settings, out=args.out, progress=not args.quiet)
    from latbench.device_profile import DeviceProfile

    meta = DeviceProfile.load(folder, check_fingerprint=False).meta
    con = _console()
    con.print(f"profile written to {folder} in {meta['timings_s']['total'] / 60:.1f} min "
              f"({len(meta['plan']['grids'])} grids, step {meta['plan']['step']})")
    for kind, v in meta.get("validation", {}).items():
        if "skipped" in v:
            con.print(f"  {kind:5s} skipped: {v['skipped']}")
            continue
        con.print(f"  {kind:5s} on {v['n']} held-out networks: {v['within_10pct'] * 100:.0f}% within ±10%, "
                  f"{v['within_5pct'] * 100:.0f}% within ±5%, RMSPE {v['rmspe'] * 100:.1f}%, "
                  f"Spearman {v['spearman']:.3f}")
    for r in meta.get("refine", {}).get("rounds", []):
        con.print(f"  refine round {r['round']} at {r['minutes']:.1f} min: {r['layer_samples']} layer samples; "
                  f"{r['measured']} new points had been interpolated to a median "
                  f"{r['held_out']['median_ape'] * 100:.1f}% (90th pct {r['held_out']['p90_ape'] * 100:.1f}%)")
    return 0


def _adapt(args: argparse.Namespace, families: list[str]) -> int:
    from latbench.profiler.adapt import adapt_profile
    from latbench.profiler.run import ProfileSettings

    settings = ProfileSettings(families=families, backend=args.backend, device=args.device, threads=args.threads,
                               precision=args.precision or "fp32", batch=args.batch)
    folder = adapt_profile(_profile_path(args.prior), settings, samples=args.samples, out=args.out,
                           progress=not args.quiet)
    from latbench.device_profile import DeviceProfile

    meta = DeviceProfile.load(folder, check_fingerprint=False).meta
    a = meta["adapted_from"]
    lut = meta["calibration"]["lut"]
    _console().print(f"profile written to {folder} in {meta['timings_s']['total'] / 60:.1f} min: {a['profile']} "
                     f"recalibrated on {a['networks']} networks measured here "
                     f"(LUT leave-one-out error {100 * lut['rel_sigma']:.1f}%)")
    return 0


def _profile_path(name: str) -> Path:
    """A profile folder given as a path, or by its name under device_profiles/."""
    path = Path(name)
    if not path.exists() and (Path("device_profiles") / name).exists():
        path = Path("device_profiles") / name
    return path


def load_profile(name: str, strict: bool, reanchor: float | None = None, will_reanchor: bool = False):
    """Load a profile, printing its fingerprint warning once; with ``reanchor`` seconds, bring it to
    the machine's state now and say by how much the machine has moved (``will_reanchor``: the
    caller re-anchors it itself)."""
    import warnings

    from latbench.device_profile import DeviceProfile, ProfileMismatchWarning

    path = _profile_path(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ProfileMismatchWarning)
        profile = DeviceProfile.load(path, strict=strict)
    for w in caught:
        if issubclass(w.category, ProfileMismatchWarning):
            hint = "" if reanchor or will_reanchor else " (--reanchor measures how far predictions have moved)"
            print(f"latbench: warning: {w.message}{hint}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if reanchor is not None:
        _reanchor(profile, reanchor)
    return profile


def _reanchor(profile, seconds: float, extra: dict[str, Any] | None = None):
    """Re-anchor ``profile`` with a progress bar (``extra`` runnables measured in the same run) and
    print the factor, prominently past the threshold."""
    if not seconds > 0:
        raise UsageError(f"--reanchor takes a positive number of seconds, got {seconds:g}")
    with _progress_bar() as bar:
        task = bar.add_task(f"re-anchoring {profile.name}", total=seconds, info="deploying")
        anchoring = profile.reanchor(seconds, extra=extra, progress=lambda p: bar.update(
            task, completed=min(p["elapsed_s"], seconds), info=f"{p['rounds']} rounds"))
    line = anchoring.describe(profile.meta.get("created", ""))
    _console(stderr=True).print(f"[bold yellow]note: {line}[/]" if anchoring.notable else line, soft_wrap=True)
    return anchoring


def add_profile_checks(parser: argparse.ArgumentParser, reanchor_note: str = "") -> None:
    parser.add_argument("--strict", action="store_true",
                        help="refuse a profile made on another configuration (an engine patch release only warns)")
    _add_reanchor(parser, reanchor_note)


def _add_reanchor(parser: argparse.ArgumentParser, default_note: str = "") -> None:
    from latbench.anchoring import DEFAULT_SECONDS

    parser.add_argument("--reanchor", type=float, nargs="?", const=DEFAULT_SECONDS, default=None, metavar="SECONDS",
                        help="first re-measure the profile's anchor networks for SECONDS (default "
                             f"{DEFAULT_SECONDS:g}) and rescale predictions to this machine's speed now{default_note}")


def cmd_predict(args: argparse.Namespace) -> int:
    from latbench.arch import trace
    from latbench.measure import MeasureSettings, measure
    from latbench.predictors import PREDICTORS

    reanchor = args.reanchor
    if reanchor is None and args.measure and not args.no_reanchor:
        from latbench.anchoring import DEFAULT_SECONDS

        reanchor = DEFAULT_SECONDS
    profile = load_profile(args.profile, args.strict, will_reanchor=reanchor is not None)
    model, shape = _model_and_shape(args.model, None, profile.meta["settings"].get("batch", 1))
    import torch

    arch = trace(model, torch.zeros(*shape), name=args.model)
    if args.widths and args.keep is not None:
        raise UsageError("give --widths or --keep, not both")
    if args.widths:
        arch = arch.with_widths(_read_widths(args.widths))
    if args.keep is not None:
        if not 0 < args.keep <= 1:
            raise UsageError(f"--keep must be in (0, 1], got {args.keep}")
        from latbench.sensitivity.latency import kept_channels

        arch = arch.with_widths({g.id: kept_channels(g.channels, args.keep) for g in arch.prunable_groups})
    if args.remove_blocks:
        arch = arch.without_blocks([b for b in args.remove_blocks.split(",") if b])
    kinds = tuple(PREDICTORS) if args.predictor == "all" else (args.predictor,)
    con = _console()
    con.print(f"{args.model}: {arch.flops() / 1e6:,.1f} MFLOPs, {arch.params():,} params · profile {profile.name}")
    measured = None
    if reanchor is not None:
        extra = {"candidate": _deploy_candidate(profile, args.model, arch, shape)} if args.measure else None
        measured = _reanchor(profile, reanchor, extra).extra_us.get("candidate")
    elif args.measure:
        measured = _measure_with_progress(measure, _deploy_candidate(profile, args.model, arch, shape),
                                          MeasureSettings(), args.model).median_us
    errors = {}
    for kind in kinds:
        p = profile.predictor(kind).predict(arch)
        line = (f"  {kind:5s} {_us(p.latency_us)}  (90% interval {_us(p.low_us)} – {_us(p.high_us)}, "
                f"±{p.rel_halfwidth * 100:.1f}%)")
        if measured is not None:
            errors[kind] = (p.latency_us - measured) / measured
            line += f"  error {errors[kind] * 100:+.1f}%"
            if profile.anchoring is not None:
                raw = profile.predictor(kind, reanchored=False).predict(arch).latency_us
                line += f" ({(raw - measured) / measured * 100:+.1f}% before re-anchoring)"
        con.print(line)
        for note in p.notes:
            con.print(f"        note: {note}")
    if measured is not None:
        line = f"measured {_us(measured)} now on {profile.meta['settings']['backend']}"
        if profile.anchoring is not None:
            line += (f", interleaved with the anchors; {kinds[0]} error after re-anchoring "
                     f"{errors[kinds[0]] * 100:+.1f}% (re-anchor factor {profile.anchoring.factor:.2f}x)")
        con.print(line)
    return 0


def _candidate_builder(name: str):
    """``build(candidate_arch) -> module`` for a built-in network; others cannot be rebuilt."""
    from latbench.models import REGISTRY, build_candidate

    if name not in REGISTRY:
        raise UsageError(f"--measure rebuilds built-in networks only; {name} is not one")
    return lambda candidate: build_candidate(name, candidate)


def _deploy_candidate(profile, name: str, arch, shape):
    import torch

    return profile.backend().deploy(_candidate_builder(name)(arch), torch.randn(*shape))


def cmd_analyze(args: argparse.Namespace) -> int:
    import torch

    from latbench.arch import trace
    from latbench.sensitivity.report import TOP, write_report

    profile = load_profile(args.profile, args.strict, args.reanchor)
    model, shape = _model_and_shape(args.model, None, profile.meta["settings"].get("batch", 1))
    arch = trace(model, torch.zeros(*shape), name=args.model)
    build = _candidate_builder(args.model) if args.measure else None
    out = Path(args.out or f"report-{args.model.replace(':', '-')}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    con = _console()
    report = write_report(arch, profile, out, build, args.measure, kind=args.predictor,
                          staircase_layers=args.staircase_layers, log=lambda msg: con.print(msg))
    ranking = report.frames["ranking"]
    con.print(f"most latency-sensitive groups at keep {ranking['ratio'].iloc[0]:.1f} ({args.predictor}):")
    for _, r in ranking.head(TOP).iterrows():
        con.print(f"  {r['group_name']:28s} saves {r['saved_us']:8.1f} µs ({100 * r['saved_share']:.1f}%)")
    if report.agreement:
        a = report.agreement
        con.print(f"measured vs predicted sensitivity: Spearman {a['spearman_all']:.3f} over {a['groups']} groups, "
                  f"{a[f'spearman_top{TOP}']:.3f} over the top {TOP}")
    con.print(f"report written to {out}/ ({len(report.files)} files, summary.md)")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    from rich.table import Table

    from latbench.device_profile import check_profile, list_profiles

    if args.reanchor is not None and not args.check:
        raise UsageError("--reanchor with devices needs --check")
    rows = list_profiles(args.root)
    if args.check:
        for row in rows:
            row.update(check_profile(Path(args.root) / row["name"], args.reanchor,
                                     lambda name: _console(stderr=True).print(f"re-anchoring {name} ...")))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        _console().print(f"no device profiles under {args.root}/ (create one with `latbench profile`)")
        return 0
    t = Table(title=f"device profiles in {args.root}/")
    columns = ["name", "device", "backend", "threads", "families", "created", "within ±10%", "RMSPE", "last anchor",
               "status"] + (["here"] if args.check else [])
    for col in columns:
        t.add_column(col, no_wrap=col in ("name", "created", "last anchor"), overflow="fold")
    for r in rows:
        w10, rmspe, factor = r.get("within_10pct"), r.get("rmspe"), r.get("anchor_factor")
        anchor = f"{factor:.2f}x ({r['anchored_at'][:10]})" if factor is not None else "-"
        cells = [r["name"], str(r.get("device", "")), str(r.get("backend", "")), str(r.get("threads", "")),
                 r.get("families", ""), str(r.get("created", ""))[:10], f"{w10 * 100:.0f}%" if w10 is not None else "-",
                 f"{rmspe * 100:.1f}%" if rmspe is not None else "-", anchor, r.get("status", "")]
        t.add_row(*cells, *([r.get("here", "")] if args.check else []))
    _console(wide=True).print(t)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from latbench import __version__
    from latbench.backends import DEFAULT_BACKEND, backend_names
    from latbench.predictors import PREDICTORS, layer_sum_kinds

    parser = argparse.ArgumentParser(prog="latbench", description=__doc__)
    parser.add_argument("--version", action="version", version=f"latbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    m = sub.add_parser("measure", help="measure the latency of a built-in network or an ONNX file")
    src = m.add_mutually_exclusive_group()
    src.add_argument("--model", default="smallconv", help="built-in network name (default: smallconv)")
    src.add_argument("--onnx", metavar="FILE", help="an ONNX file instead of a built-in network")
    m.add_argument("--backend", default=DEFAULT_BACKEND, help=f"one of {', '.join(backend_names())}")
    m.add_argument("--device", default=None, help="cpu or cuda (onnxruntime also: tensorrt provider)")
    m.add_argument("--precision", default=None, help="fp32 (default), fp16 or bf16 where supported")
    m.add_argument("--input-shape", metavar="SHAPE", help="CxHxW or NxCxHxW, e.g. 3x32x32")
    m.add_argument("--batch", type=int, help="batch size (default 1)")
    m.add_argument("--threads", type=int, help="CPU threads for the engine (default: the engine's own)")
    m.add_argument("--target-ci", type=float, default=0.01, help="relative half-width of the median's 95%% CI")
    m.add_argument("--budget", type=float, default=10.0, help="seconds the measurement may take")
    m.add_argument("--cuda-graph", action="store_true", help="capture a CUDA graph and time its replays")
    m.add_argument("--layers", type=int, nargs="?", const=10, default=0, metavar="N",
                   help="also print the N slowest layers from the engine's profiler")
    m.add_argument("--layer-runs", type=int, default=20, help=argparse.SUPPRESS)
    m.add_argument("--json", metavar="OUT", help="write the measurement as JSON")
    m.set_defaults(func=cmd_measure)

    i = sub.add_parser("inspect", help="trace a network: layers, shapes, FLOPs, parameters, groups, blocks")
    i.add_argument("model", help="built-in network name, or torchvision:NAME where torchvision is installed")
    i.add_argument("--input-size", metavar="SHAPE", help="CxHxW or NxCxHxW (default: the model's own)")
    i.add_argument("--batch", type=int, help="batch size (default 1)")
    i.add_argument("--widths", metavar="FILE", help="JSON {group id, group name or layer name: channels}")
    i.add_argument("--remove-blocks", metavar="A,B", help="comma-separated residual blocks to replace by identity")
    i.add_argument("--csv", metavar="OUT", help="write the layer table as CSV")
    i.add_argument("--json", metavar="OUT", help="write the architecture as JSON")
    i.set_defaults(func=cmd_inspect)

    pr = sub.add_parser("profile", help="profile this device: layer grids + whole networks -> device_profiles/")
    pr.add_argument("--models", help="comma-separated families, e.g. resnet56,vgg16,mobilenetv2 "
                                     "(with --from: default the prior's)")
    pr.add_argument("--backend", default=DEFAULT_BACKEND, help=f"one of {', '.join(backend_names())}")
    pr.add_argument("--device", default=None, help="cpu or cuda")
    pr.add_argument("--precision", default=None, help="fp32 (default) or fp16 where supported")
    pr.add_argument("--threads", type=int, help="CPU threads for the engine (default: the engine's own)")
    pr.add_argument("--batch", type=int, default=1, help="batch size (default 1)")
    pr.add_argument("--budget-min", type=float, default=15.0, help="minutes the run may take (default 15)")
    pr.add_argument("--networks", type=int, default=32, help="whole-network samples per family (default 32)")
    pr.add_argument("--step", type=int, help="channel step of the grids (default: measured)")
    pr.add_argument("--no-refine", action="store_true",
                    help="do not spend budget left after the networks on refining the grids")
    pr.add_argument("--refine-target", type=float, default=0.05,
                    help="stop refining once new grid points are interpolated to this median error (default 0.05)")
    pr.add_argument("--out", help="profile folder (default device_profiles/<device>-<backend>-<dtype>-bs<batch>)")
    pr.add_argument("--from", dest="prior", metavar="PROFILE",
                    help="adapt this profile of another device or configuration with --samples measurements")
    pr.add_argument("--samples", type=int, default=30,
                    help="with --from: networks to measure here (default 30)")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=cmd_profile)

    pd_ = sub.add_parser("predict", help="predict a network's latency from a device profile")
    pd_.add_argument("--profile", required=True, help="profile folder, or its name under device_profiles/")
    pd_.add_argument("--model", required=True, help="built-in network name")
    pd_.add_argument("--widths", metavar="FILE", help="JSON {group id, group name or layer name: channels}")
    pd_.add_argument("--keep", type=float, help="keep this share of every prunable group's channels")
    pd_.add_argument("--remove-blocks", metavar="A,B", help="residual blocks to replace by identity")
    pd_.add_argument("--predictor", default="all", choices=["all", *PREDICTORS])
    pd_.add_argument("--measure", action="store_true", help="also measure the network now and print the error")
    add_profile_checks(pd_, "; on by default with --measure")
    pd_.add_argument("--no-reanchor", action="store_true", help="with --measure: compare the profile as it is")
    pd_.set_defaults(func=cmd_predict)

    an = sub.add_parser("analyze", help="where the time goes: FLOPs vs latency shares, sensitivity, staircases")
    an.add_argument("--model", required=True, help="built-in network name (or torchvision:NAME)")
    an.add_argument("--profile", required=True, help="device profile folder or name")
    an.add_argument("--out", help="report folder (default report-MODEL)")
    an.add_argument("--predictor", default="lut", choices=layer_sum_kinds())
    an.add_argument("--measure", action="store_true",
                    help="also measure on the profile's backend: per-layer times in context, sensitivity at "
                         "keep 0.5, staircase curves")
    an.add_argument("--staircase-layers", type=int, default=4, help="slowest distinct layers to sweep (default 4)")
    add_profile_checks(an)
    an.set_defaults(func=cmd_analyze)

    dv = sub.add_parser("devices", help="list device profiles, with their accuracy and last known anchor factor")
    dv.add_argument("--root", default="device_profiles")
    dv.add_argument("--check", action="store_true", help="compare each profile's fingerprint with this machine")
    _add_reanchor(dv, " (with --check: each profile that can run here)")
    dv.add_argument("--json", action="store_true", help="machine-readable output")
    dv.set_defaults(func=cmd_devices)

    b = sub.add_parser("backends", help="list backends and whether they can run here")
    b.add_argument("--json", action="store_true", help="machine-readable output")
    b.set_defaults(func=cmd_backends)
    for plugin in entry_points(group=COMMANDS_GROUP):  # e.g. pruners: train, prune
        try:
            register = plugin.load()
        except Exception as exc:  # noqa: BLE001 - a broken add-on must not take the other commands down
            print(f"latbench: warning: commands of {plugin.value} unavailable: {first_line(exc)}", file=sys.stderr)
            continue
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except LatbenchError as exc:
        print(f"latbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("latbench: interrupted", file=sys.stderr)
        return 130
