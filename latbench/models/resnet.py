"""ImageNet ResNets (He et al. 2016) with torchvision's layout and module names; stride on the 3x3 conv (v1.5)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from latbench.models._common import Widths, init_weights


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)


def conv1x1(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, stride, bias=False)


def _downsample(c_in: int, planes: int, stride: int, path: str, widths: Widths) -> nn.Sequential:
    """Option-B projection shortcut: ``Sequential(conv1x1, BatchNorm2d)``."""
    out = widths(f"{path}.downsample.0", planes)
    return nn.Sequential(conv1x1(c_in, out, stride), nn.BatchNorm2d(out))


def _add_shortcut(block: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """A residual block's ending: its input (projected where the block has a ``downsample``) added, then ReLU."""
    identity = x if block.downsample is None else block.downsample(x)
    return block.relu(out + identity)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a residual add; ``out_channels`` is what the block produces."""

    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int, path: str, widths: Widths, downsample: bool) -> None:
        super().__init__()
        mid = widths(f"{path}.conv1", planes)
        self.out_channels = widths(f"{path}.conv2", planes)
        self.conv1 = conv3x3(c_in, mid, stride)
        self.bn1 = nn.BatchNorm2d(mid)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(mid, self.out_channels)
        self.bn2 = nn.BatchNorm2d(self.out_channels)
        self.downsample = _downsample(c_in, planes, stride, path, widths) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return _add_shortcut(self, x, self.bn2(self.conv2(out)))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carries the stride), 1x1 expand by 4, and a residual add."""

    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int, path: str, widths: Widths, downsample: bool) -> None:
        super().__init__()
        w1 = widths(f"{path}.conv1", planes)
        w2 = widths(f"{path}.conv2", planes)
        self.out_channels = widths(f"{path}.conv3", planes * self.expansion)
        self.conv1 = conv1x1(c_in, w1)
        self.bn1 = nn.BatchNorm2d(w1)
        self.conv2 = conv3x3(w1, w2, stride)
        self.bn2 = nn.BatchNorm2d(w2)
        self.conv3 = conv1x1(w2, self.out_channels)
        self.bn3 = nn.BatchNorm2d(self.out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            _downsample(c_in, planes * self.expansion, stride, path, widths) if downsample else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return _add_shortcut(self, x, self.bn3(self.conv3(out)))


def make_stage(
    block: type[BasicBlock | Bottleneck], c_in: int, default_in: int, planes: int, blocks: int, stride: int,
    prefix: str, widths: Widths,
) -> tuple[nn.Sequential, int, int]:
    """One stage of ``blocks`` residual blocks named ``prefix.0`` ...; returns it, its out channels, default width.

    Whether a block gets a projection shortcut depends on the default widths only, so the module tree (and the set
    of valid ``channels`` keys) is the same whatever widths are chosen.
    """
    layers = []
    for i in range(blocks):
        s = stride if i == 0 else 1
        default_out = planes * block.expansion
        unit = block(c_in, planes, s, f"{prefix}.{i}", widths, s != 1 or default_in != default_out)
        layers.append(unit)
        c_in, default_in = unit.out_channels, default_out
    return nn.Sequential(*layers), c_in, default_in


class ResNet(nn.Module):
    """ResNet for 224x224 inputs: 7x7/2 stem, max-pool, four stages (64-128-256-512 planes), pooled linear head."""

    def __init__(
        self, block: type[BasicBlock | Bottleneck], layers: tuple[int, int, int, int], num_classes: int = 1000,
        channels: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        widths = Widths(channels)
        c = widths("conv1", 64)
        self.conv1 = nn.Conv2d(3, c, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        default = 64
        for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stage, c, default = make_stage(block, c, default, planes, n, 1 if i == 0 else 2, f"layer{i + 1}", widths)
            self.add_module(f"layer{i + 1}", stage)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, num_classes)
        widths.check(type(self).__name__)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def resnet18(num_classes: int = 1000, channels: Mapping[str, int] | None = None) -> ResNet:
    """ResNet-18: BasicBlocks (2, 2, 2, 2)."""
    return ResNet(BasicBlock, (2, 2, 2, 2), num_classes, channels)


def resnet34(num_classes: int = 1000, channels: Mapping[str, int] | None = None) -> ResNet:
    """ResNet-34: BasicBlocks (3, 4, 6, 3)."""
    return ResNet(BasicBlock, (3, 4, 6, 3), num_classes, channels)


def resnet50(num_classes: int = 1000, channels: Mapping[str, int] | None = None) -> ResNet:
    """ResNet-50 (v1.5): Bottlenecks (3, 4, 6, 3)."""
    return ResNet(Bottleneck, (3, 4, 6, 3), num_classes, channels)
