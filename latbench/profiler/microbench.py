"""Layer micro-benchmarks built in context: the module an engine sees for one ``LayerSpec``.

A conv spec with epilogue ``("bn", "relu")`` becomes Conv2d -> BatchNorm2d -> ReLU at the spec's
input size, so the engine folds and fuses it exactly as inside a network.
"""

from __future__ import annotations

import torch
from torch import nn

from latbench.arch.spec import LayerSpec
from latbench.errors import InvalidValueError

_ACTS = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hardswish": nn.Hardswish, "silu": nn.SiLU, "gelu": nn.GELU,
         "sigmoid": nn.Sigmoid, "hardsigmoid": nn.Hardsigmoid, "leakyrelu": nn.LeakyReLU, "tanh": nn.Tanh}


class _AddConstant(nn.Module):
    """``x + c`` with ``c`` a same-shaped constant: the memory traffic of a residual add."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("c", torch.randn(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.c


class _MulChannel(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.register_buffer("c", torch.rand(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.c


def _epilogue(spec: LayerSpec, channels: int) -> list[nn.Module]:
    mods: list[nn.Module] = []
    for step in spec.epilogue:
        if step == "bn":
            bn = nn.BatchNorm2d(channels) if spec.op != "linear" else nn.BatchNorm1d(channels)
            mods.append(bn)
        elif step in _ACTS:
            mods.append(_ACTS[step]())
        else:
            raise InvalidValueError(f"unknown epilogue step {step!r}")
    return mods


def build_layer(spec: LayerSpec) -> tuple[nn.Module, torch.Tensor]:
    """(module, example input) that run ``spec`` alone, as an engine would deploy it."""
    h, w = spec.in_hw
    x = torch.randn(spec.batch, spec.in_channels, h, w)
    cin, cout = spec.in_channels, spec.out_channels
    if spec.op in ("conv", "dwconv"):
        core: nn.Module = nn.Conv2d(cin, cout, spec.kernel, spec.stride, spec.padding, spec.dilation,
                                    groups=spec.groups, bias=spec.bias)
    elif spec.op == "linear":
        core = nn.Linear(cin * spec.in_mult, cout, bias=spec.bias)
        x = torch.randn(spec.batch, cin * spec.in_mult)
    elif spec.op == "maxpool":
        core = nn.MaxPool2d(spec.kernel, spec.stride, spec.padding)
    elif spec.op == "avgpool":
        core = nn.AvgPool2d(spec.kernel, spec.stride, spec.padding)
    elif spec.op == "gap":
        core = nn.AdaptiveAvgPool2d(1)
    elif spec.op == "add":
        core = _AddConstant(tuple(x.shape))
    elif spec.op == "mul":
        core = _MulChannel(cin)
    elif spec.op in ("bn", "act"):
        core = nn.Identity()
    else:
        raise InvalidValueError(f"no micro-benchmark for op {spec.op!r}")
    channels = cout if spec.op in ("conv", "dwconv", "linear") else cin
    module = nn.Sequential(core, *_epilogue(spec, channels)).eval()
    for m in module.modules():  # non-trivial BN statistics, so nothing folds away to a no-op
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return module, x
