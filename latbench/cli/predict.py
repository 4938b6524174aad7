"""``latbench predict`` and ``analyze``: a network's latency from a profile, and where the time goes."""

from __future__ import annotations

import argparse
from pathlib import Path

from latbench.anchoring import DEFAULT_SECONDS
from latbench.cli.console import console, measure_with_progress, us
from latbench.cli.options import (
    add_profile_checks,
    deploy_candidate,
    load_profile,
    read_widths,
    reanchor_profile,
    traced_model,
)
from latbench.cli.values import positive_int, ratio
from latbench.errors import OutputError, UsageError
from latbench.measure import MeasureSettings, measure
from latbench.predictors import PREDICTORS, OutOfProfileError, layer_sum_kinds
from latbench.sensitivity.latency import kept_channels
from latbench.sensitivity.report import TOP, write_report

MODEL_HELP = ("built-in network, torchvision:NAME, your factory package.module:function or path/file.py:function, "
              "or one of the profile's families")
INPUT_SHAPE_HELP = "C x H x W of a network that is neither built in nor one of the profile's families"


def cmd_predict(args: argparse.Namespace) -> int:
    reanchor = args.reanchor
    if reanchor is None and args.measure and not args.no_reanchor:
        reanchor = DEFAULT_SECONDS
    profile = load_profile(args.profile, args.strict, will_reanchor=reanchor is not None)
    fam, arch, shape = traced_model(args.model, profile, args.input_shape)
    if args.widths and args.keep is not None:
        raise UsageError("give --widths or --keep, not both")
    if args.widths:
        arch = arch.with_widths(read_widths(args.widths))
    if args.keep is not None:
        if not 0 < args.keep <= 1:
            raise UsageError(f"--keep must be in (0, 1], got {args.keep}")
        arch = arch.with_widths({g.id: kept_channels(g.channels, args.keep) for g in arch.prunable_groups})
    if args.remove_blocks:
        arch = arch.without_blocks([b for b in args.remove_blocks.split(",") if b])
    kinds = tuple(PREDICTORS) if args.predictor == "all" else (args.predictor,)
    con = console()
    con.print(f"{args.model}: {arch.flops() / 1e6:,.1f} MFLOPs, {arch.params():,} params · profile {profile.name}")
    measured = None
    if reanchor is not None:
        extra = {"candidate": deploy_candidate(profile, fam, arch, shape)} if args.measure else None
        measured = reanchor_profile(profile, reanchor, extra).extra_us.get("candidate")
    elif args.measure:
        measured = measure_with_progress(measure, deploy_candidate(profile, fam, arch, shape),
                                          MeasureSettings(), args.model).median_us
    errors, refused = {}, []
    for kind in kinds:
        try:
            p = profile.predictor(kind).predict(arch)
        except OutOfProfileError as exc:
            if len(kinds) == 1:
                raise
            refused.append(kind)
            con.print(f"  {kind:5s} no prediction: {exc}")
            continue
        line = (f"  {kind:5s} {us(p.latency_us)}  (90% interval {us(p.low_us)} – {us(p.high_us)}, "
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
    if len(refused) == len(kinds):
        raise UsageError(f"{args.model}: no predictor of {profile.name} can price this network")
    if measured is not None and kinds[0] in errors:
        line = f"measured {us(measured)} now on {profile.meta['settings']['backend']}"
        if profile.anchoring is not None:
            line += (f", interleaved with the anchors; {kinds[0]} error after re-anchoring "
                     f"{errors[kinds[0]] * 100:+.1f}% (re-anchor factor {profile.anchoring.factor:.2f}x)")
        con.print(line)
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    profile = load_profile(args.profile, args.strict, args.reanchor)
    fam, arch, _ = traced_model(args.model, profile, args.input_shape)
    build = fam.build if args.measure else None
    out = Path(args.out or f"report-{args.model.replace(':', '-')}")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    con = console()
    report = write_report(arch, profile, out, build, args.measure, kind=args.predictor,
                          staircase_layers=args.staircase_layers, log=lambda msg: con.print(msg))
    for line in analysis_lines(report, args.predictor):
        con.print(line)
    con.print(f"report written to {out}/ ({len(report.files)} files, summary.md)")
    return 0


def analysis_lines(report, predictor: str) -> list[str]:
    """What ``write_report`` found, in a few lines: the most latency-sensitive groups and, when measured,
    how the measured sensitivity agrees with the predicted one."""
    ranking = report.frames["ranking"]
    lines = [f"most latency-sensitive groups at keep {ranking['ratio'].iloc[0]:.1f} ({predictor}):"]
    for _, r in ranking.head(TOP).iterrows():
        lines.append(f"  {r['group_name']:28s} saves {r['saved_us']:8.1f} µs ({100 * r['saved_share']:.1f}%)")
    if report.agreement:
        a = report.agreement
        lines.append(f"measured vs predicted sensitivity: Spearman {a['spearman_all']:.3f} over {a['groups']} "
                     f"groups, {a[f'spearman_top{TOP}']:.3f} over the top {TOP}")
    return lines


def register(sub) -> None:
    pd_ = sub.add_parser("predict", help="predict a network's latency from a device profile")
    pd_.add_argument("--profile", required=True, help="profile folder, or its name under device_profiles/")
    pd_.add_argument("--model", required=True, help=MODEL_HELP)
    pd_.add_argument("--input-shape", help=INPUT_SHAPE_HELP)
    pd_.add_argument("--widths", metavar="FILE", help="JSON {group id, group name or layer name: channels}")
    pd_.add_argument("--keep", type=ratio, help="keep this share of every prunable group's channels")
    pd_.add_argument("--remove-blocks", metavar="A,B", help="residual blocks to replace by identity")
    pd_.add_argument("--predictor", default="all", choices=["all", *PREDICTORS],
                     help="which of the profile's predictors answer: lut (per-layer table), xgb or rf (learned), "
                          "flops (a FLOPs-proportional baseline), or all side by side (default)")
    pd_.add_argument("--measure", action="store_true", help="also measure the network now and print the error")
    add_profile_checks(pd_, "; on by default with --measure")
    pd_.add_argument("--no-reanchor", action="store_true", help="with --measure: compare the profile as it is")
    pd_.set_defaults(func=cmd_predict)

    an = sub.add_parser("analyze", help="where the time goes: FLOPs vs latency shares, sensitivity, staircases")
    an.add_argument("--model", required=True, help=MODEL_HELP)
    an.add_argument("--input-shape", help=INPUT_SHAPE_HELP)
    an.add_argument("--profile", required=True, help="device profile folder or name")
    an.add_argument("--out", help="report folder (default report-MODEL)")
    an.add_argument("--predictor", default="lut", choices=layer_sum_kinds(),
                    help="the predictor whose per-layer latencies are analysed (default lut)")
    an.add_argument("--measure", action="store_true",
                    help="also measure on the profile's backend: per-layer times in context, sensitivity at "
                         "keep 0.5, staircase curves")
    an.add_argument("--staircase-layers", type=positive_int, default=4,
                    help="slowest distinct layers to sweep (default 4)")
    add_profile_checks(an)
    an.set_defaults(func=cmd_analyze)
