"""A small CIFAR-sized conv network: quick to export and time, used by examples and tests."""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from latbench.models._common import Widths


def conv_bn_relu(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SmallConvNet(nn.Module):
    """``depth`` conv-BN-ReLU layers per stage, three stages of ``width``, 2x, 4x channels.

    ``channels`` overrides conv widths by path (``features.0.0``, ``features.1.0``, ...).
    """

    def __init__(self, width: int = 16, depth: int = 1, num_classes: int = 10, in_channels: int = 3,
                 channels: Mapping[str, int] | None = None) -> None:
        super().__init__()
        widths = Widths(channels)
        layers, c = [], in_channels
        for stage, mult in enumerate((1, 2, 4)):
            for i in range(depth):
                out = widths(f"features.{len(layers)}.0", width * mult)
                layers.append(conv_bn_relu(c, out, stride=2 if stage and i == 0 else 1))
                c = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(c, num_classes)
        widths.check(type(self).__name__)

    def forward(self, x):
        return self.head(self.pool(self.features(x)).flatten(1))
