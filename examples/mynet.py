"""A network of your own behind a factory: ``latbench ... --model examples/mynet.py:make`` (README, "Your own
networks"). Any ``path/file.py:function`` or ``package.module:function`` returning an ``nn.Module`` works."""

import torch
from torch import nn


class MyNet(nn.Module):  # a residual add around a depthwise-separable pair, then a strided conv
    def __init__(self, width: int = 24, wide: int = 48, classes: int = 10) -> None:
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
        return self.head(self.down(x).mean(dim=(2, 3)))


def make() -> nn.Module:
    torch.manual_seed(0)
    return MyNet()
