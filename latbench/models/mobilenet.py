"""MobileNet v1 (Howard et al. 2017) and v2 (Sandler et al. 2018), for ImageNet and in CIFAR adaptations.

CIFAR adaptations (32x32 inputs, 10 classes):

* ``mobilenet_v1_cifar``: the stem conv and the first two stride-2 blocks (blocks 2 and 4, to 128 and 256 channels)
  run at stride 1; the remaining stride-2 blocks (to 512 and 1024) take 32x32 down to 8x8.
* ``mobilenet_v2_cifar``: the stem conv and the second stage (t=6, c=24, n=2) run at stride 1; the remaining
  stride-2 stages (32, 64, 160 channels) take 32x32 down to 4x4.

Module names follow torchvision's ``mobilenet_v2``: ``features.0.0`` is the stem conv; an inverted residual block
``features.i`` holds ``conv.0.0`` (1x1 expand, absent when t=1), the depthwise ``conv.1.0`` (``conv.0.0`` when
t=1), then the 1x1 projection ``conv.2`` (``conv.1``) and its BatchNorm; ``features.18.0`` is the last 1x1 conv.
In v1, ``features.0.0`` is the stem conv and block ``features.i`` (i = 1..13) has ``dw.0`` and ``pw.0``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from latbench.models._common import Widths, conv_bn_act, init_weights

#: MobileNet v1 separable blocks as (pointwise out channels, depthwise stride).
V1_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
)
#: The same with the first two stride-2 blocks at stride 1 (CIFAR).
V1_BLOCKS_CIFAR: tuple[tuple[int, int], ...] = tuple(
    (c, 1) if i in (1, 3) else (c, s) for i, (c, s) in enumerate(V1_BLOCKS)
)
#: MobileNet v2 stages as (expansion t, out channels c, repeats n, first stride s), the paper's table 2.
V2_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)
#: The same with the second stage at stride 1 (CIFAR).
V2_SETTING_CIFAR: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)


class DepthwiseSeparable(nn.Sequential):
    """``dw`` (depthwise 3x3-BN-ReLU, carries the stride) then ``pw`` (1x1-BN-ReLU)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__(OrderedDict(
            dw=conv_bn_act(c_in, c_in, 3, stride, groups=c_in),
            pw=conv_bn_act(c_in, c_out, 1),
        ))


class MobileNetV1(nn.Module):
    """Stem conv 3x3 (32), 13 depthwise-separable blocks, global average pool, ``classifier = Linear(1024, n)``."""

    def __init__(
        self, num_classes: int = 1000, channels: Mapping[str, int] | None = None, stem_stride: int = 2,
        blocks: Sequence[tuple[int, int]] = V1_BLOCKS,
    ) -> None:
        super().__init__()
        widths = Widths(channels)
        c = widths("features.0.0", 32)
        layers: list[nn.Module] = [conv_bn_act(3, c, 3, stem_stride)]
        for width, stride in blocks:
            out = widths(f"features.{len(layers)}.pw.0", width)
            layers.append(DepthwiseSeparable(c, out, stride))
            c = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)
        widths.check(type(self).__name__)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class InvertedResidual(nn.Module):
    """1x1 expand-BN-ReLU6 (omitted when t=1), depthwise 3x3-BN-ReLU6, 1x1 project-BN; residual add when enabled."""

    def __init__(
        self, c_in: int, default_in: int, default_out: int, stride: int, t: int, path: str, widths: Widths,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        hidden = c_in
        if t != 1:
            hidden = widths(f"{path}.conv.0.0", default_in * t)
            layers.append(conv_bn_act(c_in, hidden, 1, act=nn.ReLU6))
        layers.append(conv_bn_act(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6))
        self.out_channels = widths(f"{path}.conv.{len(layers)}", default_out)
        layers += [nn.Conv2d(hidden, self.out_channels, 1, bias=False), nn.BatchNorm2d(self.out_channels)]
        self.conv = nn.Sequential(*layers)
        # decided by the default widths, so the module graph does not depend on the chosen widths
        self.use_res_connect = stride == 1 and default_in == default_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """Stem conv 3x3 (32), 17 inverted residual blocks, 1x1 conv to 1280, pool, ``classifier`` (dropout, linear)."""

    def __init__(
        self, num_classes: int = 1000, channels: Mapping[str, int] | None = None, stem_stride: int = 2,
        setting: Sequence[tuple[int, int, int, int]] = V2_SETTING, dropout: float = 0.2,
    ) -> None:
        super().__init__()
        widths = Widths(channels)
        c, default = widths("features.0.0", 32), 32
        layers: list[nn.Module] = [conv_bn_act(3, c, 3, stem_stride, act=nn.ReLU6)]
        for t, width, n, s in setting:
            for i in range(n):
                block = InvertedResidual(c, default, width, s if i == 0 else 1, t, f"features.{len(layers)}", widths)
                layers.append(block)
                c, default = block.out_channels, width
        last = widths(f"features.{len(layers)}.0", 1280)
        layers.append(conv_bn_act(c, last, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last, num_classes))
        widths.check(type(self).__name__)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v1(num_classes: int = 1000, channels: Mapping[str, int] | None = None) -> MobileNetV1:
    return MobileNetV1(num_classes, channels)


def mobilenet_v1_cifar(num_classes: int = 10, channels: Mapping[str, int] | None = None) -> MobileNetV1:
    """Stem and blocks 2 and 4 at stride 1 (see the module docstring)."""
    return MobileNetV1(num_classes, channels, stem_stride=1, blocks=V1_BLOCKS_CIFAR)


def mobilenet_v2(num_classes: int = 1000, channels: Mapping[str, int] | None = None,
                 dropout: float = 0.2) -> MobileNetV2:
    return MobileNetV2(num_classes, channels, dropout=dropout)


def mobilenet_v2_cifar(num_classes: int = 10, channels: Mapping[str, int] | None = None,
                       dropout: float = 0.2) -> MobileNetV2:
    """Stem and the second stage at stride 1 (see the module docstring)."""
    return MobileNetV2(num_classes, channels, stem_stride=1, setting=V2_SETTING_CIFAR, dropout=dropout)
