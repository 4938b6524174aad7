"""Any network at other widths by surgery: equal to the zoo's own constructor, right shapes on a user's net."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from user_net import UserNet

from latbench.arch import trace
from latbench.errors import ResizeError
from latbench.models import build_candidate, build_model
from latbench.models.resize import resize

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(("name", "seed"), [("resnet20", 0), ("resnet20", 1), ("mobilenetv2_cifar", 2), ("vgg16", 3)])
def test_resize_builds_what_the_zoo_constructor_builds(name, seed):
    """The same candidate two ways: surgery on the full network, and the constructor given the widths."""
    model = build_model(name)
    arch = trace(model, X[:1], name)
    rng = np.random.default_rng(seed)
    widths = {g.id: int(rng.integers(1, g.channels + 1)) for g in arch.prunable_groups}
    removable = [b.name for b in arch.blocks if b.removable]
    removed = list(rng.choice(removable, size=min(2, len(removable)), replace=False)) if removable else []
    candidate = arch.with_widths(widths).without_blocks(removed)
    built = resize(model, arch, candidate, X[:1])
    assert trace(built, X[:1], name).effective() == trace(build_candidate(name, candidate), X[:1], name).effective()
    assert built(X).shape == model(X).shape
    assert trace(model, X[:1], name).effective() == arch.effective()  # the original is left as it was


def test_resize_narrows_every_layer_a_group_couples_on_a_users_network():
    model = UserNet().eval()
    arch = trace(model, X[:1], "usernet")
    stem = arch.base.group_by_key["stem.0"]
    down = arch.base.group_by_key["down.0"]
    built = resize(model, arch, arch.with_widths({stem: 5, down: 7}), X[:1])
    # the stem's channels run through the depthwise conv, the residual add and into the 1x1 and the downsampling
    assert tuple(built.stem[0].weight.shape) == (5, 3, 3, 3)
    assert tuple(built.dw[0].weight.shape) == (5, 1, 3, 3) and built.dw[0].groups == 5
    assert tuple(built.pw[0].weight.shape) == (5, 5, 1, 1)
    assert tuple(built.down[0].weight.shape) == (7, 5, 3, 3)
    assert tuple(built.head.weight.shape) == (10, 7)
    assert built.stem[1].num_features == 5 and built.down[1].num_features == 7
    # kept channels are the first ones, weights copied
    assert torch.equal(built.stem[0].weight, model.stem[0].weight[:5])
    assert torch.equal(built.head.weight, model.head.weight[:, :7])


def test_resize_refuses_what_it_cannot_build():
    model = UserNet().eval()
    arch = trace(model, X[:1], "usernet")
    stem = arch.base.group_by_key["stem.0"]
    wider = type(arch)(arch.base, tuple(w + 1 if i == stem else w for i, w in enumerate(arch.width_tuple)))
    with pytest.raises(ResizeError, match="wider than the network"):
        resize(model, arch, wider, X[:1])
    other = trace(build_model("resnet20"), X[:1], "resnet20")
    with pytest.raises(ResizeError, match="not a variant"):
        resize(model, arch, other, X[:1])
