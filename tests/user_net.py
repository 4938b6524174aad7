"""A network that exists only here (not in the zoo): a residual add around a depthwise-separable pair."""

from __future__ import annotations

import torch
from torch import nn


class UserNet(nn.Module):
    def __init__(self, classes: int = 10, width: int = 24, wide: int = 40) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False),
                                nn.BatchNorm2d(width), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(width, width, 1, bias=False), nn.BatchNorm2d(width))
        self.down = nn.Sequential(nn.Conv2d(width, wide, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(wide),
                                  nn.ReLU())
        self.head = nn.Linear(wide, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.relu(x + self.pw(self.dw(x)))
        x = self.down(x)
        return self.head(x.mean(dim=(2, 3)))


def factory() -> nn.Module:
    torch.manual_seed(0)
    return UserNet()


def wide_factory() -> nn.Module:
    """Wide enough that pruning moves latency in small steps (the narrow one has few widths to choose from)."""
    torch.manual_seed(0)
    return UserNet(width=64, wide=128)


def gray_factory() -> nn.Module:
    """Expects one input channel: wrong for a dataset of colour images."""
    return nn.Sequential(nn.Conv2d(1, 8, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


class _Branchy(UserNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:  # control flow on values: torch.fx cannot trace it
            x = -x
        return super().forward(x)


def untraceable_factory() -> nn.Module:
    return _Branchy()
