"""Batch-norm recalibration: re-estimate running statistics after surgery.

Cutting channels changes what every later layer sees, so the running means and variances the
batch norms learned no longer describe their inputs, and a freshly pruned network answers one
class whatever it was shown. Re-estimating them on a few hundred training images (no gradient,
no weight changes) gives an accuracy right after surgery that says something about the cut,
which methods that rank candidates by accuracy need.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from pruners.distributed import module_device

#: images recalibration runs by default
RECALIBRATION_IMAGES = 512


def recalibrate_batchnorm(model: nn.Module, batches: Iterable, images: int = RECALIBRATION_IMAGES) -> int:
    """Reset every batch norm's running statistics of ``model`` and re-estimate them as the plain
    average over ``(x, y)`` batches until ``images`` inputs were seen; returns how many were. Other
    layers run in eval mode; modes and momenta are restored. ``images`` 0 leaves the model as it is."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if images <= 0 or not norms:
        return 0
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in norms}
    device = module_device(model)
    seen = 0
    try:
        model.eval()
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the batches seen
            m.train()
        with torch.no_grad():
            for x, _ in batches:
                if x.shape[0] > images - seen:
                    x = x[: max(images - seen, 2)]  # a batch of one has no batch statistics
                model(x.to(device))
                seen += int(x.shape[0])
                if seen >= images:
                    break
    finally:
        for m, momentum in momenta.items():
            m.momentum = momentum
        for m, mode in modes.items():
            m.train(mode)
    return seen
