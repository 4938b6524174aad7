"""The ``latbench`` command: a thin shell over the Python API, one module per command group.

``measure`` (measure, inspect, backends), ``profiles`` (profile, devices) and ``predict`` (predict,
analyze) register their subcommands here; other packages add theirs through the
``latbench.commands`` entry point (``pruners`` adds train and prune). ``options`` holds the option
sets and inputs several commands share, ``console`` the output helpers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points

from latbench import __version__
from latbench.cli import measure, predict, profiles
from latbench.cli.options import add_profile_checks, load_profile
from latbench.cli.values import OneLineParser
from latbench.errors import LatbenchError, first_line

#: entry-point group of packages that add commands: each names ``register(subparsers)``
COMMANDS_GROUP = "latbench.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="latbench", description="Measure, model and predict neural-network latency on real deployment engines.")
    parser.add_argument("--version", action="version", version=f"latbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in (measure, profiles, predict):
        group.register(sub)
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
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) and bad arguments (2, one line already printed)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        code = args.func(args)
        sys.stdout.flush()  # a full disk or a closed pipe shows here, not at exit
        return code
    except LatbenchError as exc:
        print(f"latbench: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the output itself could not be written (stdout to a full disk, a closed pipe)
        print(f"latbench: error: cannot write the output: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("latbench: interrupted", file=sys.stderr)
        return 130


__all__ = ["COMMANDS_GROUP", "add_profile_checks", "build_parser", "load_profile", "main"]
