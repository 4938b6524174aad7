"""``latbench profile`` and ``devices``: make a device profile, list and check the profiles there are."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from latbench.backends import DEFAULT_BACKEND
from latbench.backends.inputs import parse_shape
from latbench.cli.console import check_writable_folder, console
from latbench.cli.options import add_engine_options, add_reanchor, profile_path
from latbench.cli.values import batch_size, positive_float, positive_int
from latbench.device_profile import DeviceProfile, check_profile, list_profiles
from latbench.errors import UsageError
from latbench.profile import read_meta
from latbench.profiler.adapt import adapt_profile
from latbench.profiler.run import ProfileSettings, extension_settings, profile_device


def cmd_profile(args: argparse.Namespace) -> int:
    families = [m for m in (args.models or "").split(",") if m]
    if args.prior and args.extend:
        raise UsageError("give --from (adapt a profile) or --extend (add families to one), not both")
    if args.prior:
        return _adapt(args, families)
    if not families:
        raise UsageError("give --models (e.g. resnet56,vgg16,mobilenetv2), or --from a profile to adapt")
    if args.ray is not None:
        return _fleet(args, families)
    if args.out:
        check_writable_folder(args.out)  # before measuring: a profile that cannot be saved is lost time
    if args.extend:
        folder = _extend(args, families)
    else:
        folder = profile_device(_settings(args, families), out=args.out, progress=not args.quiet)
    meta = DeviceProfile.load(folder, check_fingerprint=False).meta
    con = console()
    con.print(f"profile written to {folder} in {meta['timings_s']['total'] / 60:.1f} min "
              f"({len(meta['plan']['grids'])} grids, step {meta['plan']['step']})")
    if args.extend:
        ext = meta["extensions"][-1]
        factors = ext.get("state_factors") or []
        con.print(f"  extended with {', '.join(ext['families'])} in {ext.get('minutes', 0):.1f} min"
                  + (f"; the old families' anchors ran at {factors[0]:.2f}x their recorded latency" if factors else ""))
        if "warning" in ext:
            con.print(f"  [yellow]warning:[/] {ext['warning']}")
    for line in validation_lines(meta.get("validation", {})):
        con.print(f"  {line}")
    for r in meta.get("refine", {}).get("rounds", []):
        con.print(f"  refine round {r['round']} at {r['minutes']:.1f} min: {r['layer_samples']} layer samples; "
                  f"{r['measured']} new points had been interpolated to a median "
                  f"{r['held_out']['median_ape'] * 100:.1f}% (90th pct {r['held_out']['p90_ape'] * 100:.1f}%)")
    return 0


def validation_lines(validation: dict[str, dict]) -> list[str]:
    """One line per predictor of a profile's held-out validation (``meta["validation"]``): the share of
    held-out networks predicted within ±10% and ±5%, RMSPE and Spearman rank correlation."""
    lines = []
    for kind, v in validation.items():
        if "skipped" in v:
            lines.append(f"{kind:5s} skipped: {v['skipped']}")
            continue
        lines.append(f"{kind:5s} on {v['n']} held-out networks: {v['within_10pct'] * 100:.0f}% within ±10%, "
                     f"{v['within_5pct'] * 100:.0f}% within ±5%, RMSPE {v['rmspe'] * 100:.1f}%, "
                     f"Spearman {v['spearman']:.3f}")
    return lines


def _settings(args: argparse.Namespace, families: list[str]) -> ProfileSettings:
    return ProfileSettings(families=families, backend=args.backend, device=args.device, threads=args.threads,
                           precision=args.precision or "fp32", batch=1 if args.batch is None else args.batch,
                           budget_min=args.budget_min, networks_per_family=args.networks, step=args.step,
                           refine=not args.no_refine, refine_target=args.refine_target,
                           cuda_graph=args.cuda_graph, input_shape=_input_shape(args),
                           network_seconds=args.network_seconds)


def _fleet(args: argparse.Namespace, families: list[str]) -> int:
    """``profile --ray ADDRESS``: the same profile run on every node advertising a device, written back here."""
    if args.out or args.extend:
        raise UsageError("--ray writes one profile per node under --root, named by its device; drop --out/--extend")
    from latbench.fleet.profiling import profile_fleet

    con = console()
    nodes = [n for n in (args.ray_nodes or "").split(",") if n]
    outcomes = profile_fleet(_settings(args, families), args.ray, args.root, nodes or None,
                             on_done=lambda o: con.print(f"  {o.host}: " + (f"profile written to {o.folder}"
                                                                         if o.folder else f"failed: {o.error}")))
    failed = [o for o in outcomes if o.folder is None]
    con.print(f"{len(outcomes) - len(failed)} of {len(outcomes)} nodes profiled")
    return 1 if failed else 0


def _extend(args: argparse.Namespace, families: list[str]) -> Path:
    """``profile --extend PROFILE --models NEW``: the profile's own engine settings, refused if others are given."""
    folder = profile_path(args.extend)
    if args.out:
        raise UsageError("--extend writes into the profile it extends; drop --out")
    meta = read_meta(folder, require=(), context=f"cannot extend {folder}")
    saved = meta.get("settings", {})
    given = {"backend": args.backend if args.backend != DEFAULT_BACKEND else None, "device": args.device,
             "threads": args.threads, "precision": args.precision, "batch": args.batch, "step": args.step,
             "cuda_graph": args.cuda_graph or None}
    for key, value in given.items():
        if value is not None and value != saved.get(key):
            raise UsageError(f"--extend keeps the profile's {key} ({saved.get(key)!r}); {value!r} needs a profile of "
                             f"its own")
    settings = extension_settings(meta, families, _input_shape(args), budget_min=args.budget_min,
                                  networks_per_family=args.networks, refine=not args.no_refine,
                                  refine_target=args.refine_target, network_seconds=args.network_seconds)
    return profile_device(settings, out=folder, progress=not args.quiet, extend=True)


def _input_shape(args: argparse.Namespace) -> tuple[int, int, int] | None:
    if args.input_shape is None:
        return None
    shape = parse_shape(args.input_shape)
    if len(shape) != 3:
        raise UsageError(f"--input-shape is C x H x W (the batch is --batch), got {args.input_shape}")
    return shape  # type: ignore[return-value]


def _adapt(args: argparse.Namespace, families: list[str]) -> int:
    settings = ProfileSettings(families=families, backend=args.backend, device=args.device, threads=args.threads,
                               precision=args.precision or "fp32", batch=1 if args.batch is None else args.batch,
                               input_shape=_input_shape(args), network_seconds=args.network_seconds)
    folder = adapt_profile(profile_path(args.prior), settings, samples=args.samples, out=args.out,
                           progress=not args.quiet)
    meta = DeviceProfile.load(folder, check_fingerprint=False).meta
    a = meta["adapted_from"]
    lut = meta["calibration"]["lut"]
    console().print(f"profile written to {folder} in {meta['timings_s']['total'] / 60:.1f} min: {a['profile']} "
                     f"recalibrated on {a['networks']} networks measured here "
                     f"(LUT leave-one-out error {100 * lut['rel_sigma']:.1f}%)")
    return 0


def cmd_devices(args: argparse.Namespace) -> int:
    if args.reanchor is not None and not args.check:
        raise UsageError("--reanchor with devices needs --check")
    rows = list_profiles(args.root)
    if args.check:
        for row in rows:
            row.update(check_profile(Path(args.root) / row["name"], args.reanchor,
                                     lambda name: console(stderr=True).print(f"re-anchoring {name} ...")))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        console().print(f"no device profiles under {args.root}/ (create one with `latbench profile`)")
        return 0
    t = Table(title=f"device profiles in {args.root}/")
    columns = ["name", "device", "backend", "threads", "families", "created", "within ±10%", "RMSPE", "last anchor",
               "status"] + (["here"] if args.check else [])
    for col in columns:
        t.add_column(col, no_wrap=col in ("name", "created", "last anchor"), overflow="fold")
    for r in rows:
        w10, rmspe, factor = r.get("within_10pct"), r.get("rmspe"), r.get("anchor_factor")
        anchor = f"{factor:.2f}x ({r['anchored_at'][:10]})" if factor is not None else "-"
        cells = [r["name"], str(r.get("device", "")), str(r.get("backend", "")), str(r.get("threads") or "-"),
                 r.get("families", ""), str(r.get("created", ""))[:10], f"{w10 * 100:.0f}%" if w10 is not None else "-",
                 f"{rmspe * 100:.1f}%" if rmspe is not None else "-", anchor, r.get("status", "")]
        t.add_row(*cells, *([r.get("here", "")] if args.check else []))
    console(wide=True).print(t)
    return 0


def register(sub) -> None:
    pr = sub.add_parser("profile", help="profile this device: layer grids + whole networks -> device_profiles/")
    pr.add_argument("--models", help="comma-separated families: built-in names (resnet56,vgg16,mobilenetv2), "
                                     "torchvision:NAME, or your own factories package.module:function or "
                                     "path/file.py:function (with --from: default the prior's)")
    pr.add_argument("--input-shape", help="C x H x W of the families that are not built-in networks, e.g. 3x32x32")
    add_engine_options(pr)
    pr.add_argument("--batch", type=batch_size, help="batch size (default 1)")
    pr.add_argument("--cuda-graph", action="store_true", help="torch on cuda: time CUDA graph replays")
    pr.add_argument("--budget-min", type=positive_float, default=15.0, help="minutes the run may take (default 15)")
    pr.add_argument("--networks", type=positive_int, default=32, help="whole-network samples per family (default 32)")
    pr.add_argument("--step", type=positive_int, help="channel step of the grids (default: measured)")
    pr.add_argument("--network-seconds", type=positive_float,
                    help="seconds of each interleaved run of whole networks (default: 40, or 1.5 per network if "
                         "more; less is quicker and noisier)")
    pr.add_argument("--no-refine", action="store_true",
                    help="do not spend budget left after the networks on refining the grids")
    pr.add_argument("--refine-target", type=positive_float, default=0.05,
                    help="stop refining once new grid points are interpolated to this median error (default 0.05)")
    pr.add_argument("--out", help="profile folder (default device_profiles/<device>-<backend>-<dtype>-bs<batch>)")
    pr.add_argument("--from", dest="prior", metavar="PROFILE",
                    help="adapt this profile of another device or configuration with --samples measurements")
    pr.add_argument("--extend", metavar="PROFILE",
                    help="add the --models families to this profile: measure only what it lacks, keep every sample")
    pr.add_argument("--samples", type=positive_int, default=30,
                    help="with --from: networks to measure here (default 30)")
    pr.add_argument("--ray", metavar="ADDRESS",
                    help="profile every node of this Ray cluster that advertises the resource latbench-device "
                         "('auto': the cluster this machine belongs to); each profile is written under --root")
    pr.add_argument("--ray-nodes", metavar="IDS", help="comma-separated node ids or host names (prefixes) to profile")
    pr.add_argument("--root", default="device_profiles",
                    help="where --ray writes the profiles (default device_profiles)")
    pr.add_argument("--quiet", action="store_true", help="no progress bar")
    pr.set_defaults(func=cmd_profile)

    dv = sub.add_parser("devices", help="list device profiles, with their accuracy and last known anchor factor")
    dv.add_argument("--root", default="device_profiles", help="folder holding the profiles (default device_profiles)")
    dv.add_argument("--check", action="store_true", help="compare each profile's fingerprint with this machine")
    add_reanchor(dv, " (with --check: each profile that can run here)")
    dv.add_argument("--json", action="store_true", help="machine-readable output")
    dv.set_defaults(func=cmd_devices)
