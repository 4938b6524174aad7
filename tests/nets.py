"""Networks the pruning tests share: zoo networks with visible batch norms, traced with their channel groups, and
a CIFAR ResNet's pruned forward pass built by hand from the original's weights."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from latbench.arch import Arch, trace
from latbench.models import build_model
from pruners.groups import ChannelGroup, channel_groups


def randomized(name: str, seed: int = 0) -> nn.Module:
    """A zoo network in eval mode whose batch norms have random (non-default) affine parameters and statistics,
    so that slicing or zeroing them is visible in the output."""
    torch.manual_seed(seed)
    model = build_model(name)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model.eval()


def seeded(name: str, seed: int = 0) -> nn.Module:
    """A zoo network in eval mode, initialised after ``torch.manual_seed(seed)``."""
    torch.manual_seed(seed)
    return build_model(name).eval()


def with_groups(model: nn.Module, example: torch.Tensor, name: str) -> tuple[nn.Module, Arch, list[ChannelGroup]]:
    """``model``, its trace on ``example`` and its channel groups."""
    arch = trace(model, example, name)
    return model, arch, channel_groups(model, arch, example)


def cifar_resnet_reference(model: nn.Module, keep: dict[str, list[int]], removed: set[str],
                            x: torch.Tensor) -> torch.Tensor:
    """The forward pass of a CIFAR ResNet pruned to ``keep`` (kept channel indices by the first writer of each
    group: ``conv1``, ``layer2.0.conv2``, ``layer3.0.conv2`` for the stages, ``layerS.B.conv1`` inside the blocks),
    built from the original's weights sliced by index, with the blocks in ``removed`` skipped."""
    def conv(c: nn.Conv2d, out: list[int], inp: list[int], h: torch.Tensor) -> torch.Tensor:
        return F.conv2d(h, c.weight[out][:, inp], None, c.stride, c.padding)

    def bn(b: nn.BatchNorm2d, idx: list[int], h: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(h, b.running_mean[idx], b.running_var[idx], b.weight[idx], b.bias[idx], False, 0.0, b.eps)

    stage_keep = [keep["conv1"], keep["layer2.0.conv2"], keep["layer3.0.conv2"]]
    h = F.relu(bn(model.bn1, stage_keep[0], conv(model.conv1, stage_keep[0], [0, 1, 2], x)))
    c_in = stage_keep[0]
    for s, stage in enumerate((model.layer1, model.layer2, model.layer3)):
        c = stage_keep[s]
        for b, block in enumerate(stage):
            if f"layer{s + 1}.{b}" in removed:
                continue
            mid = keep[f"layer{s + 1}.{b}.conv1"]
            y = F.relu(bn(block.bn1, mid, conv(block.conv1, mid, c_in, h)))
            y = bn(block.bn2, c, conv(block.conv2, c, mid, y))
            short = h if block.downsample is None else bn(block.downsample[1], c, conv(block.downsample[0], c, c_in, h))
            h = F.relu(y + short)
            c_in = c
    return F.linear(h.mean((2, 3)), model.fc.weight[:, c_in], model.fc.bias)
