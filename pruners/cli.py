"""``latbench train``, ``latbench prune`` and ``latbench pipeline``: the pruning commands, added to ``latbench``
through the ``latbench.commands`` entry point (``latbench`` itself never imports ``pruners``)."""

from __future__ import annotations

import argparse

from latbench.cli import add_profile_checks, load_profile
from latbench.cli.console import check_writable_folder
from latbench.cli.values import batch_size, non_negative_int, positive_float, positive_int, ratio, share
from latbench.errors import UsageError
from latbench.predictors import layer_sum_kinds
from pruners import pipeline
from pruners.batchnorm import RECALIBRATION_IMAGES
from pruners.compare import COMPARISON, check_methods, compare_at_latency, comparison_table
from pruners.distributed import context
from pruners.method import option_parser, option_type
from pruners.methods import METHODS
from pruners.prune import default_out, prune
from pruners.train import TrainConfig
from pruners.trained import train_zoo_model


def cmd_train(args: argparse.Namespace) -> int:
    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed)
    out = args.out or f"runs/{args.model}-{args.dataset}"
    check_writable_folder(out)
    report = train_zoo_model(args.model, args.dataset, out, config, root=args.data_root, progress=not args.quiet)
    if not context().main:  # under torchrun, rank 0 reports
        return 0
    print(f"{args.model} on {args.dataset}: test accuracy {report['test_accuracy']:.2f}% after {config.epochs} "
          f"epochs in {report['seconds']:.0f} s; weights {out}/weights.pt")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    if (args.latency_target is None) == (args.flops_target is None):
        raise UsageError("give one of --latency-target or --flops-target (a ratio of the original, e.g. 0.5)")
    metric, target = ("latency", args.latency_target) if args.flops_target is None else ("flops", args.flops_target)
    finetune = TrainConfig(epochs=args.finetune_epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                           distill=args.distill)
    if args.compare:
        check_methods(args.method, args.compare, metric)
    check_writable_folder(args.out or default_out(args.model, args.method, metric, target))
    profile = load_profile(args.profile, args.strict, args.reanchor)
    pool = None
    if args.ray is not None:
        from latbench.fleet.pool import RayPool

        pool = RayPool.for_profile(profile, args.ray_actors, args.ray)
    shared = dict(dataset=args.dataset, data_root=args.data_root, finetune=finetune, predictor=args.predictor,
                  mode=args.oracle, seed=args.seed, measure_budget_s=args.measure_budget, progress=not args.quiet,
                  bn_images=args.bn_images, pool=pool, nproc=args.nproc)
    result = prune(args.method, args.model, args.weights, profile, target, out=args.out, metric=metric,
                   options={name: getattr(args, name) for name in method_option_names()}, **shared)
    print(result.summary())
    if args.compare:
        out = args.out or default_out(args.model, args.method, metric, target)
        report = compare_at_latency(result, args.compare, args.model, args.weights, profile, out,
                                    budget_s=args.compare_budget, **shared)
        print(comparison_table(report))
        print(f"\nwrote {out}/{COMPARISON}")
    return 0


def method_option_names() -> list[str]:
    """Every option of every registered method (a name several methods share is one flag)."""
    return list(dict.fromkeys(f.name for m in METHODS.values() for f in m.option_fields()))


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """A flag for each field of each method's options dataclass, grouped by method, unset by default
    (``prune`` refuses a flag the chosen method does not take)."""
    added: set[str] = set()
    for method in METHODS.values():
        fields = [f for f in method.option_fields() if f.name not in added]
        if not fields:
            continue
        group = parser.add_argument_group(f"{method.name} options")
        for f in fields:
            added.add(f.name)
            kind = option_type(method.Options, f.name)
            default = "" if f.default is None else f" (default {f.default})"
            flag = "--" + f.name.replace("_", "-")
            if kind is bool:
                group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                   help=f.metadata.get("help", "") + default)
            else:
                group.add_argument(flag, dest=f.name, type=option_parser(method.Options, f), default=None,
                                   metavar=f.name.upper(), help=f.metadata.get("help", "") + default)


def register(sub) -> None:
    """Add ``train``, ``prune`` and ``pipeline`` to the ``latbench`` command's subparsers."""
    tr = sub.add_parser("train", help="train a built-in network from scratch on a dataset (weights for pruning)")
    tr.add_argument("model", help="built-in network name, e.g. resnet20")
    tr.add_argument("--dataset", default="digits", help="digits (ships with scikit-learn), cifar10 or imagefolder")
    tr.add_argument("--data-root", help="dataset folder (cifar10, imagefolder); nothing is downloaded")
    tr.add_argument("--epochs", type=positive_int, default=30, help="training epochs (default 30)")
    tr.add_argument("--lr", type=positive_float, default=0.05, help="peak learning rate of the cosine schedule")
    tr.add_argument("--batch-size", type=batch_size, default=64, help="images per training batch (default 64)")
    tr.add_argument("--seed", type=non_negative_int, default=0,
                    help="seed of the initial weights, the data split and its order (default 0)")
    tr.add_argument("--out", help="run folder (default runs/MODEL-DATASET); an interrupted run resumes there")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.set_defaults(func=cmd_train)

    pn = sub.add_parser("prune", help="prune a trained network to a latency (or FLOPs) target and fine-tune it")
    pn.add_argument("method", help="; ".join(f"{m.name}: {m.summary}" for m in METHODS.values()))
    pn.add_argument("--model", required=True,
                    help="built-in network name, or a factory package.module:function or path/file.py:function")
    pn.add_argument("--weights", required=True, help="state dict file, or a folder written by latbench train")
    pn.add_argument("--profile", required=True, help="device profile folder or name (its backend is measured)")
    pn.add_argument("--latency-target", type=ratio, help="target latency as a ratio of the original's, e.g. 0.5")
    pn.add_argument("--flops-target", type=ratio, help="target FLOPs as a ratio of the original's")
    pn.add_argument("--dataset", default="digits",
                    help="the data the network was trained on: digits (default), cifar10 or imagefolder")
    pn.add_argument("--data-root", help="dataset folder (cifar10, imagefolder)")
    pn.add_argument("--finetune-epochs", type=non_negative_int, default=5,
                    help="fine-tuning epochs after pruning (default 5; 0: none)")
    pn.add_argument("--lr", type=positive_float, default=0.01, help="peak fine-tuning learning rate")
    pn.add_argument("--batch-size", type=batch_size, default=64, help="images per fine-tuning batch (default 64)")
    pn.add_argument("--distill", type=share, default=0.0, help="weight of distillation from the unpruned network")
    pn.add_argument("--predictor", default="lut", choices=layer_sum_kinds(),
                    help="the profile's predictor the search prices candidates with (default lut)")
    pn.add_argument("--oracle", default="auto", choices=["predict", "measure", "auto"],
                    help="how the search checks latency: predictions only, measurements, or both (default)")
    pn.add_argument("--measure-budget", type=positive_float, default=10.0,
                    help="seconds for the final measurement against the original (default 10)")
    pn.add_argument("--seed", type=non_negative_int, default=0,
                    help="seed of the data split, its order and the example input (default 0)")
    pn.add_argument("--bn-images", type=non_negative_int, default=RECALIBRATION_IMAGES,
                    help=f"training images batch norms are re-estimated on after surgery (default "
                         f"{RECALIBRATION_IMAGES}; 0: keep the cut network's statistics)")
    add_method_options(pn)
    pn.add_argument("--compare", nargs="+", metavar="METHOD",
                    help="also prune with these methods to the latency this run measured (same fine-tuning and "
                         "criterion), and measure all side by side with the original, e.g. --compare uniform global")
    pn.add_argument("--compare-budget", type=positive_float, default=30.0,
                    help="seconds of each of the 3 side-by-side comparisons (default 30)")
    pn.add_argument("--nproc", type=positive_int, default=1,
                    help="fine-tune on this many processes (torchrun, DDP: gloo on CPU; default 1)")
    pn.add_argument("--ray", metavar="ADDRESS",
                    help="measure on a Ray cluster's devices of the profile's kind (nodes advertising the resource "
                         "latbench-device:PROFILE; 'auto': the cluster this machine belongs to)")
    pn.add_argument("--ray-actors", type=positive_int, help="devices to use (default: every one the cluster has)")
    pn.add_argument("--out", help="run folder (default runs/MODEL-METHOD-METRICTARGET); a rerun resumes there")
    add_profile_checks(pn)
    pn.add_argument("--quiet", action="store_true", help="no progress bar")
    pn.set_defaults(func=cmd_prune)

    pipeline.add_parser(sub)
