"""Networks the pruning tests share: zoo networks with visible batch norms, traced with their channel groups."""

from __future__ import annotations

import torch
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
