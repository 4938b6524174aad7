"""Shared pieces of the model zoo: per-layer widths keyed by module path, conv-BN-activation stacks, initialisation."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping

from torch import nn

from latbench.errors import InvalidValueError


class Widths:
    """Out-channel overrides for ``Conv2d`` layers, keyed by their path in the built model's ``named_modules()``.

    Constructors ask ``widths(path, default)`` for every conv whose width is free (never for depthwise convs);
    :meth:`check` then rejects keys that named no such conv, so a typo cannot pass silently.
    """

    def __init__(self, channels: Mapping[str, int] | None) -> None:
        self._channels: dict[str, int] = {}
        for path, value in (channels or {}).items():
            try:
                width = operator.index(value)
            except TypeError:
                raise InvalidValueError(f"channels[{path!r}] must be an integer, got {value!r}") from None
            if width < 1:
                raise InvalidValueError(f"channels[{path!r}] must be at least 1, got {width}")
            self._channels[str(path)] = width
        self._asked: list[str] = []

    def __call__(self, path: str, default: int) -> int:
        self._asked.append(path)
        return self._channels.get(path, default)

    def check(self, model: str) -> None:
        """Raise ``ValueError`` if a key names no width-settable conv of ``model``."""
        unknown = sorted(set(self._channels) - set(self._asked))
        if unknown:
            sample = ", ".join(self._asked[:6])
            raise InvalidValueError(
                f"{model} has no width-settable Conv2d at {', '.join(map(repr, unknown))} "
                f"(keys are non-depthwise conv paths such as {sample}, ...)"
            )


def conv_bn_act(
    c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1,
    act: Callable[..., nn.Module] = nn.ReLU,
) -> nn.Sequential:
    """``Sequential(Conv2d, BatchNorm2d, act)`` with "same" padding, no conv bias; children ``0``, ``1``, ``2``."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        act(inplace=True),
    )


def init_weights(model: nn.Module) -> None:
    """He (fan-out) init for convs, unit/zero BatchNorm, small normal init for linear layers."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
