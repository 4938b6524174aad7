"""Three small CNN families that nothing else in the project names, written as a user would write them: a
ResNet with odd stage widths, a VGG-11-like single-path network and a MobileNet-V2-like network with
expansion 4 (CIFAR-sized inputs). ``predictor_accuracy.py --extend`` adds each to a profile that has never
seen it, e.g. ``--extend benchmarks/user_families.py:odd_resnet``.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1,
            relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]
    return nn.Sequential(*layers, *([nn.ReLU(inplace=True)] if relu else []))


class Basic(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(c_in, c_out, 3, stride), conv_bn(c_out, c_out, relu=False))
        self.short = nn.Identity() if stride == 1 and c_in == c_out else conv_bn(c_in, c_out, 1, stride, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.short(x))


class OddResNet(nn.Module):
    """Three stages of widths 24, 40 and 72, three basic blocks each."""

    def __init__(self, widths: tuple[int, ...] = (24, 40, 72), blocks: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn(3, widths[0])
        layers, c = [], widths[0]
        for i, w in enumerate(widths):
            for b in range(blocks):
                layers.append(Basic(c, w, 2 if i > 0 and b == 0 else 1))
                c = w
        self.layers = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.layers(self.stem(x)))


def odd_resnet() -> nn.Module:
    return OddResNet()


def vgg11_like(num_classes: int = 10) -> nn.Module:
    """VGG-11's layout at half width: eight 3x3 convolutions and five max-pools, one linear layer."""
    layers, c = [], 3
    for v in (32, "M", 64, "M", 128, 128, "M", 256, 256, "M", 256, 256, "M"):
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers.append(conv_bn(c, v))
            c = v
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c, num_classes))


class Inverted(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.body = nn.Sequential(conv_bn(c_in, hidden, 1), conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                  conv_bn(hidden, c_out, 1, relu=False))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) if self.residual else self.body(x)


class SmallMobileNet(nn.Module):
    """MobileNet-V2's inverted residuals with expansion 4: stages (width, blocks, stride)."""

    def __init__(self, stages: tuple[tuple[int, int, int], ...] = ((16, 1, 1), (24, 2, 1), (40, 2, 2), (80, 3, 2),
                                                                   (112, 2, 1)),
                 expansion: int = 4, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn(3, 32)
        blocks, c = [], 32
        for width, count, stride in stages:
            for b in range(count):
                blocks.append(Inverted(c, width, stride if b == 0 else 1, expansion))
                c = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(conv_bn(c, 640, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(640, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def mobilenet_e4() -> nn.Module:
    return SmallMobileNet()
