"""A network of your own behind a factory: ``latbench ... --model examples/mynet.py:make`` (README, "Your own
networks"). Any ``path/file.py:function`` or ``package.module:function`` returning an ``nn.Module`` works."""

import torch
from torch import nn


def conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


def make(width: int = 32, classes: int = 10) -> nn.Module:
    """A small plain CNN: two 3x3 convs, a max-pool, a wider 3x3 conv, global average pooling, a classifier."""
    torch.manual_seed(0)
    return nn.Sequential(conv(3, width), conv(width, width), nn.MaxPool2d(2), conv(width, 2 * width),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, classes))
