"""Argument types of the command line: every number is checked as it is parsed (finite, in range), so a bad
value is refused in one line before any work starts. Each is an ``argparse`` ``type=``; ``bounded`` builds
one for any range (the pruning methods' options use it)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

#: the largest batch any command accepts: larger ones exhaust memory before they say anything useful
MAX_BATCH = 4096


def _describe(kind: type, low: float | None, high: float | None, low_open: bool) -> str:
    name = "an integer" if kind is int else "a number"
    if low is not None and high is not None:
        return f"{name} in {'(' if low_open else '['}{low:g}, {high:g}]"
    if low is not None:
        return f"{name} {'>' if low_open else '>='} {low:g}"
    return f"{name} <= {high:g}" if high is not None else name


def bounded(kind: type, low: float | None = None, high: float | None = None,
            low_open: bool = False) -> Callable[[str], int | float]:
    """An argument type for ``kind`` (int or float) in ``[low, high]`` (``(low, high]`` with ``low_open``);
    floats must be finite."""
    wanted = _describe(kind, low, high, low_open)

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        if (low is not None and (value <= low if low_open else value < low)) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return value

    parse.__name__ = wanted  # argparse names the type in its own messages
    return parse


positive_int = bounded(int, 1)
non_negative_int = bounded(int, 0)
batch_size = bounded(int, 1, MAX_BATCH)
positive_float = bounded(float, 0.0, low_open=True)
non_negative_float = bounded(float, 0.0)
ratio = bounded(float, 0.0, 1.0, low_open=True)  # a share of the original: targets, keep ratios
share = bounded(float, 0.0, 1.0)  # a weight in [0, 1]


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit 2), naming the command and ``--help``."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
