"""``latbench measure``, ``inspect`` and ``backends``: one network on one engine, and what can run here."""

from __future__ import annotations

import argparse
import json
import sys

import torch
from rich.table import Table

from latbench.arch import trace
from latbench.arch.table import layer_table
from latbench.backends import list_backends, require_backend
from latbench.cli.console import check_writable, console, measure_with_progress, us
from latbench.cli.options import add_engine_options, example_shape, model_and_shape, read_widths
from latbench.cli.values import batch_size, non_negative_int, positive_float, positive_int, ratio
from latbench.errors import UsageError
from latbench.measure import MeasureSettings, measure


def cmd_measure(args: argparse.Namespace) -> int:
    if args.json:
        check_writable(args.json)  # before measuring: a result that cannot be saved is lost time
    try:
        settings = MeasureSettings(target_rel_ci=args.target_ci, budget_s=args.budget)
    except ValueError as exc:
        raise UsageError(str(exc).replace("target_rel_ci", "--target-ci").replace("budget_s", "--budget")) from None
    if args.compile and args.layers:
        raise UsageError("--layers needs an eager engine: a compiled network's kernels span layers")
    flags = {k: True for k in ("cuda_graph", "compile") if getattr(args, k)}
    backend = require_backend(args.backend, device=args.device, threads=args.threads,
                              precision=args.precision, **flags)
    if args.onnx:
        target, name = args.onnx, args.onnx
        shape = example_shape(args, None)
    else:
        target, shape = model_and_shape(args.model, args.input_shape, args.batch)
        name = args.model
    example = None
    if shape is not None:
        example = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    err = console(stderr=True)
    with err.status(f"deploying {name} on {backend.name} ({backend.device})"):
        runnable = backend.deploy(target, example)
    result = measure_with_progress(measure, runnable, settings, name)
    console().print(result)
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


def _print_layers(df, top: int) -> None:
    table = Table(title=f"per-layer times (engine profiler, top {top})")
    for col in ("layer", "engine node", "op", "median", "share"):
        table.add_column(col, justify="right" if col in ("median", "share") else "left")
    for row in df.sort_values("time_us", ascending=False).head(top).itertuples():
        table.add_row(row.layer or "-", row.engine_node, row.op, us(row.time_us), f"{row.share * 100:.1f}%")
    console().print(table)


def cmd_backends(args: argparse.Namespace) -> int:
    rows = list_backends()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="latbench backends")
    for col in ("backend", "device", "available", "why not / what it is"):
        table.add_column(col)
    for r in rows:
        ok = "[green]yes[/]" if r["available"] else "[red]no[/]"
        table.add_row(r["backend"], r["device"], ok, r["reason"] or r["description"])
    console().print(table)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    for path in (args.csv, args.json):
        if path:
            check_writable(path)
    model, shape = model_and_shape(args.model, args.input_size, args.batch)
    arch = trace(model, torch.zeros(*shape), name=args.model)
    if args.widths:
        arch = arch.with_widths(read_widths(args.widths))
    if args.remove_blocks:
        arch = arch.without_blocks([b for b in args.remove_blocks.split(",") if b])
    table = layer_table(arch)
    _print_arch(arch, table)
    if args.csv:
        table.to_csv(args.csv, index=False)
        console(stderr=True).print(f"wrote {args.csv}")
    if args.json:
        arch.to_json(args.json)
        console(stderr=True).print(f"wrote {args.json}")
    return 0


def _print_arch(arch, table) -> None:
    t = Table(title=f"{arch.name} · input {'x'.join(map(str, arch.base.input_shape))}", show_lines=False)
    for col, justify in (("#", "right"), ("layer", "left"), ("op", "left"), ("in", "right"), ("out", "right"),
                         ("kernel", "left"), ("MFLOPs", "right"), ("FLOPs %", "right"), ("params", "right"),
                         ("group", "right"), ("block", "left")):
        t.add_column(col, justify=justify, overflow="fold")
    for r in table.itertuples():
        block = f"{r.block} ({'removable' if r.removable else 'fixed'})" if r.block else ""
        t.add_row(str(r.index), r.name, r.op + (f"+{r.epilogue}" if r.epilogue else ""), r.in_shape, r.out_shape,
                  r.kernel, f"{r.flops / 1e6:.2f}", f"{r.flops_share * 100:.1f}", f"{r.params:,}", r.groups, block)
    con = console()
    con.print(t)
    prunable = arch.prunable_groups
    removable = [b.name for b in arch.blocks if b.removable]
    con.print(f"total: {arch.flops() / 1e6:,.2f} MFLOPs ({arch.macs() / 1e6:,.2f} M multiply-accumulates; "
              f"FLOPs = 2 x MACs of conv and linear layers), {arch.params():,} parameters, "
              f"{len(table)} layers, {len(prunable)} prunable channel groups, "
              f"{len(removable)} of {len(arch.blocks)} blocks removable")


def register(sub) -> None:
    m = sub.add_parser("measure", help="measure the latency of a built-in network or an ONNX file")
    src = m.add_mutually_exclusive_group()
    src.add_argument("--model", default="smallconv", help="built-in network name (default: smallconv)")
    src.add_argument("--onnx", metavar="FILE", help="an ONNX file instead of a built-in network")
    add_engine_options(m, "cpu or cuda (onnxruntime also: tensorrt provider)",
                       "fp32 (default), fp16 or bf16 where supported")
    m.add_argument("--input-shape", metavar="SHAPE", help="CxHxW or NxCxHxW, e.g. 3x32x32")
    m.add_argument("--batch", type=batch_size, help="batch size (default 1)")
    m.add_argument("--target-ci", type=ratio, default=0.01, help="relative half-width of the median's 95%% CI")
    m.add_argument("--budget", type=positive_float, default=10.0, help="seconds the measurement may take")
    m.add_argument("--cuda-graph", action="store_true", help="capture a CUDA graph and time its replays")
    m.add_argument("--compile", action="store_true",
                   help="torch backend: run the network through torch.compile (inductor) before measuring")
    m.add_argument("--layers", type=non_negative_int, nargs="?", const=10, default=0, metavar="N",
                   help="also print the N slowest layers from the engine's profiler")
    m.add_argument("--layer-runs", type=positive_int, default=20, help=argparse.SUPPRESS)
    m.add_argument("--json", metavar="OUT", help="write the measurement as JSON")
    m.set_defaults(func=cmd_measure)

    i = sub.add_parser("inspect", help="trace a network: layers, shapes, FLOPs, parameters, groups, blocks")
    i.add_argument("model", help="built-in network name, or torchvision:NAME where torchvision is installed")
    i.add_argument("--input-size", metavar="SHAPE", help="CxHxW or NxCxHxW (default: the model's own)")
    i.add_argument("--batch", type=batch_size, help="batch size (default 1)")
    i.add_argument("--widths", metavar="FILE", help="JSON {group id, group name or layer name: channels}")
    i.add_argument("--remove-blocks", metavar="A,B", help="comma-separated residual blocks to replace by identity")
    i.add_argument("--csv", metavar="OUT", help="write the layer table as CSV")
    i.add_argument("--json", metavar="OUT", help="write the architecture as JSON")
    i.set_defaults(func=cmd_inspect)

    b = sub.add_parser("backends", help="list backends and whether they can run here")
    b.add_argument("--json", action="store_true", help="machine-readable output")
    b.set_defaults(func=cmd_backends)
