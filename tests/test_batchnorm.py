"""Batch-norm recalibration after surgery, and the quick accuracy check built on it."""

from __future__ import annotations

import torch
from torch import nn

from pruners.batchnorm import recalibrate_batchnorm


def batches(n: int, size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 8, 8, generator=g) * 2 + 1, torch.zeros(size, dtype=torch.long)) for _ in range(n)]


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5), nn.Flatten(),
                         nn.LazyLinear(2))


def test_running_statistics_become_the_average_of_the_batch_statistics():
    model = net()
    data = batches(4, 16)
    model(data[0][0])  # materialise the lazy layer
    bn = model[1]
    bn.running_mean.fill_(7.0)
    bn.running_var.fill_(9.0)  # statistics of another network: the state right after surgery
    bn.momentum = 0.3
    model.eval()
    seen = recalibrate_batchnorm(model, data, images=48)
    with torch.no_grad():
        outs = [model[0](x) for x, _ in data[:3]]  # 48 images = the first three batches
    mean = torch.stack([o.mean(dim=(0, 2, 3)) for o in outs]).mean(0)
    var = torch.stack([o.transpose(0, 1).flatten(1).var(dim=1, unbiased=True) for o in outs]).mean(0)
    assert seen == 48
    torch.testing.assert_close(bn.running_mean, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, var, rtol=1e-5, atol=1e-6)
    assert bn.momentum == 0.3 and not model.training and not bn.training  # restored


def test_a_partial_last_batch_is_cut_to_the_images_asked_and_zero_images_changes_nothing():
    model = net()
    data = batches(2, 16)
    model(data[0][0])
    assert recalibrate_batchnorm(model, data, images=20) == 20
    before = model[1].running_mean.clone()
    assert recalibrate_batchnorm(model, data, images=0) == 0
    assert torch.equal(model[1].running_mean, before)
