"""Built-in networks, by name. Each entry knows its default input shape (C, H, W) and its number of classes.

Every constructor takes ``num_classes`` and ``channels``: a mapping from the module path of a (non-depthwise)
``Conv2d`` to its out-channel count; the layers it feeds follow. ``resolve_model`` also accepts
``torchvision:<name>`` when torchvision is installed.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latbench.errors import ModelLoadError, UnknownModelError, first_line

TORCHVISION_PREFIX = "torchvision:"


@dataclass(frozen=True)
class ModelEntry:
    factory: Callable[..., Any]
    input_shape: tuple[int, int, int]
    description: str
    num_classes: int = 10


def _lazy(module: str, function: str) -> Callable[..., Any]:
    """A factory that imports ``latbench.models.<module>`` only when a model is built."""

    def factory(**kwargs: Any) -> Any:
        return getattr(importlib.import_module(f"latbench.models.{module}"), function)(**kwargs)

    factory.__name__ = function
    return factory


_CIFAR = (3, 32, 32)
_IMAGENET = (3, 224, 224)

_CIFAR_RESNET = "CIFAR ResNet-{} (He et al.), 3x{} BasicBlocks at 16-32-64 channels, 1x1 projections"
#: name, module, constructor, input shape, classes, description
_ZOO = [
    ("smallconv", "small", "SmallConvNet", _CIFAR, 10, "3 conv-BN-ReLU stages (16-32-64 channels) and a linear head"),
    *((f"resnet{d}", "resnet_cifar", f"resnet{d}", _CIFAR, 10, _CIFAR_RESNET.format(d, (d - 2) // 6))
      for d in (20, 32, 56, 110)),
    *((f"vgg{d}", "vgg", f"vgg{d}", _CIFAR, 10, f"VGG-{d} with BatchNorm, CIFAR head Linear(512, 10)")
      for d in (16, 19)),
    ("mobilenetv1", "mobilenet", "mobilenet_v1", _IMAGENET, 1000,
     "MobileNet v1 (Howard et al.), 13 depthwise-separable blocks, ImageNet"),
    ("mobilenetv1_cifar", "mobilenet", "mobilenet_v1_cifar", _CIFAR, 10,
     "MobileNet v1 for CIFAR: stem and blocks 2 and 4 at stride 1"),
    ("mobilenetv2", "mobilenet", "mobilenet_v2", _IMAGENET, 1000,
     "MobileNet v2 (Sandler et al.), 17 inverted residual blocks with ReLU6, ImageNet"),
    ("mobilenetv2_cifar", "mobilenet", "mobilenet_v2_cifar", _CIFAR, 10,
     "MobileNet v2 for CIFAR: stem and the second stage (24 channels) at stride 1"),
    ("resnet18", "resnet", "resnet18", _IMAGENET, 1000,
     "ResNet-18, torchvision layout (BasicBlocks 2-2-2-2), ImageNet"),
    ("resnet50", "resnet", "resnet50", _IMAGENET, 1000,
     "ResNet-50 v1.5, torchvision layout (Bottlenecks 3-4-6-3), ImageNet"),
]
REGISTRY: dict[str, ModelEntry] = {name: ModelEntry(_lazy(module, constructor), shape, description, classes)
                                   for name, module, constructor, shape, classes, description in _ZOO}


def model_names() -> list[str]:
    return sorted(REGISTRY)


def get_entry(name: str) -> ModelEntry:
    if name not in REGISTRY:
        raise UnknownModelError(f"unknown model {name!r}; available: {', '.join(model_names())}")
    return REGISTRY[name]


def build_model(name: str, **kwargs: Any):
    """A fresh, randomly initialised instance of a built-in network (eval mode); kwargs go to its constructor."""
    return get_entry(name).factory(**kwargs).eval()


def is_factory(name: str) -> bool:
    """``package.module:function`` or ``path/to/file.py:function``: a user's network factory."""
    return ":" in name and not name.startswith(TORCHVISION_PREFIX)


def build_from_factory(spec: str):
    """Call the user's factory ``package.module:function`` or ``path/to/file.py:function`` (no arguments);
    it must return an ``nn.Module``. Every failure is one ``ModelLoadError`` line."""
    from torch import nn

    target, _, function = spec.rpartition(":")
    try:
        if target.endswith(".py"):
            path = Path(target)
            if not path.is_file():
                raise ModelLoadError(f"model factory {spec!r}: no file {target}")
            module_spec = importlib.util.spec_from_file_location(f"latbench_user_{path.stem}", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(target)
        factory = getattr(module, function)
        model = factory()
    except ModelLoadError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the user's code raises becomes one line
        raise ModelLoadError(f"model factory {spec!r} failed: {type(exc).__name__}: {first_line(exc, 200)}") from None
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"model factory {spec!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def resolve_model(name: str, **kwargs: Any):
    """``build_model(name)``; for ``torchvision:<name>`` an untrained ``torchvision.models.<name>``; for
    ``package.module:function`` or ``path/to/file.py:function`` what that factory returns; for ``file.onnx``
    the file's graph as a module (``latbench.models.onnx_import``); eval mode."""
    if name.lower().endswith(".onnx"):
        from latbench.models.onnx_import import module_from_onnx

        return module_from_onnx(name)
    if is_factory(name):
        return build_from_factory(name)
    if not name.startswith(TORCHVISION_PREFIX):
        return build_model(name, **kwargs)
    arch = name[len(TORCHVISION_PREFIX):]
    try:
        import torchvision.models as tv_models
    except ImportError:
        raise UnknownModelError(
            f"torchvision is not installed; install it to use {name!r}, or pick a built-in model: "
            f"{', '.join(model_names())}"
        ) from None
    except (RuntimeError, OSError) as exc:  # a torchvision built for another torch fails at import
        raise UnknownModelError(f"torchvision cannot be imported ({first_line(exc, 200)}); {name!r} needs it") from None
    known = set(tv_models.list_models()) if hasattr(tv_models, "list_models") else None
    builder = getattr(tv_models, arch, None) if arch and not arch.startswith("_") else None
    usable = builder is not None and callable(builder) and not isinstance(builder, type)
    if not usable or (known is not None and arch not in known):
        raise UnknownModelError(f"torchvision has no model {arch!r}; see torchvision.models.list_models()")
    return builder(weights=None, **kwargs).eval()


def build_candidate(name: str, arch, **kwargs: Any):
    """The real module for a candidate ``Arch`` of a built-in network: its widths, and each
    removed residual block replaced by ``nn.Identity`` (exact, since a removable block's shortcut
    is its own input)."""
    from torch import nn

    model = build_model(name, channels=arch.channels(), **kwargs)
    for block in sorted(arch.removed):
        model.set_submodule(block, nn.Identity())
    return model
