"""VGG with BatchNorm (Simonyan & Zisserman 2015), CIFAR variant: five max-pools take 32x32 to 1x1, one linear head."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from latbench.models._common import Widths, init_weights

#: Conv widths per configuration; ``"M"`` is a 2x2 max-pool.
CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"),
}


class VGG(nn.Module):
    """``features`` (conv3x3-BN-ReLU triples and max-pools, flat: convs at ``features.0``, ``features.3``, ...),
    then flatten and ``classifier = Linear(last width, num_classes)``."""

    def __init__(
        self, config: str | Sequence[int | str] = "vgg16", num_classes: int = 10,
        channels: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        cfg = CONFIGS[config] if isinstance(config, str) else tuple(config)
        widths = Widths(channels)
        layers: list[nn.Module] = []
        c = 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            out = widths(f"features.{len(layers)}", int(v))
            layers += [nn.Conv2d(c, out, 3, 1, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            c = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)
        widths.check(config if isinstance(config, str) else "VGG")
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def vgg16(num_classes: int = 10, channels: Mapping[str, int] | None = None) -> VGG:
    return VGG("vgg16", num_classes, channels)


def vgg19(num_classes: int = 10, channels: Mapping[str, int] | None = None) -> VGG:
    return VGG("vgg19", num_classes, channels)
