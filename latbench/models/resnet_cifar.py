"""CIFAR ResNets of He et al. 2016 (section 4.2): depth 6n+2, three stages of n BasicBlocks (16-32-64 channels).

Shortcuts are option B: a 1x1 conv + BatchNorm projection where the stride or the width changes, identity
elsewhere. Module names follow torchvision's ResNet (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from latbench.errors import InvalidValueError
from latbench.models._common import Widths, init_weights
from latbench.models.resnet import BasicBlock, make_stage


class CifarResNet(nn.Module):
    """ResNet-``depth`` for 32x32 inputs: 3x3 stem (16), stages of n = (depth - 2) / 6 blocks, pooled linear head."""

    def __init__(self, depth: int = 20, num_classes: int = 10, channels: Mapping[str, int] | None = None) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise InvalidValueError(f"CIFAR ResNet depth must be 6n + 2 with n >= 1, got {depth}")
        n = (depth - 2) // 6
        widths = Widths(channels)
        c = widths("conv1", 16)
        self.conv1 = nn.Conv2d(3, c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        default = 16
        for i, planes in enumerate((16, 32, 64)):
            stage, c, default = make_stage(BasicBlock, c, default, planes, n, 1 if i == 0 else 2, f"layer{i + 1}",
                                           widths)
            self.add_module(f"layer{i + 1}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        self.depth = depth
        widths.check(f"resnet{depth}")
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet20(num_classes: int = 10, channels: Mapping[str, int] | None = None) -> CifarResNet:
    return CifarResNet(20, num_classes, channels)


def resnet32(num_classes: int = 10, channels: Mapping[str, int] | None = None) -> CifarResNet:
    return CifarResNet(32, num_classes, channels)


def resnet56(num_classes: int = 10, channels: Mapping[str, int] | None = None) -> CifarResNet:
    return CifarResNet(56, num_classes, channels)


def resnet110(num_classes: int = 10, channels: Mapping[str, int] | None = None) -> CifarResNet:
    return CifarResNet(110, num_classes, channels)
