"""Options and inputs shared by several commands: models and input shapes, widths files, profiles
(loading, fingerprint warning, re-anchoring), candidates to measure."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import torch

from latbench.anchoring import DEFAULT_SECONDS
from latbench.arch import Arch
from latbench.backends import DEFAULT_BACKEND, backend_names
from latbench.backends.inputs import parse_shape
from latbench.cli.console import console, progress_bar
from latbench.cli.values import positive_float, positive_int
from latbench.device_profile import DeviceProfile, ProfileMismatchWarning
from latbench.errors import InputShapeError, UsageError
from latbench.models import REGISTRY, resolve_model
from latbench.models.family import Family, family


def example_shape(args: argparse.Namespace, default_chw: tuple[int, ...] | None) -> tuple[int, ...] | None:
    shape = parse_shape(args.input_shape) if args.input_shape is not None else default_chw
    if shape is None:
        if args.batch is not None:
            raise InputShapeError("--batch needs --input-shape for an ONNX file")
        return None
    if len(shape) == 3:
        return (args.batch or 1, *shape)
    if len(shape) == 4:
        if args.batch is not None and args.batch != shape[0]:
            raise InputShapeError(f"--batch {args.batch} contradicts input shape {'x'.join(map(str, shape))}")
        return shape
    raise InputShapeError(f"input shape {'x'.join(map(str, shape))} must be CxHxW or NxCxHxW")


def model_and_shape(name: str, input_shape: str | None, batch: int | None):
    """A built-in (or ``torchvision:``) network and its example input shape, batch included."""
    model = resolve_model(name)
    entry = REGISTRY.get(name)
    default = entry.input_shape if entry is not None else None
    if name.lower().endswith(".onnx"):
        from latbench.models.onnx_import import onnx_input_shape

        default = onnx_input_shape(name)
    if default is None and input_shape is None:
        raise InputShapeError(f"{name}: give the input shape (e.g. 3x224x224)")
    return model, example_shape(argparse.Namespace(input_shape=input_shape, batch=batch), default)


def read_widths(path: str) -> dict[str, int]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read widths file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"widths file {path} must hold a JSON object {{group or layer: channels}}")
    return data


def profile_path(name: str) -> Path:
    """A profile folder given as a path, or by its name under device_profiles/."""
    path = Path(name)
    if not path.exists() and (Path("device_profiles") / name).exists():
        path = Path("device_profiles") / name
    return path


def load_profile(name: str, strict: bool, reanchor: float | None = None, will_reanchor: bool = False):
    """Load a profile, printing its fingerprint warning once; with ``reanchor`` seconds, bring it to
    the machine's state now and say by how much the machine has moved (``will_reanchor``: the
    caller re-anchors it itself)."""
    path = profile_path(name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ProfileMismatchWarning)
        profile = DeviceProfile.load(path, strict=strict)
    for w in caught:
        if issubclass(w.category, ProfileMismatchWarning):
            hint = "" if reanchor or will_reanchor else " (--reanchor measures how far predictions have moved)"
            print(f"latbench: warning: {w.message}{hint}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if reanchor is not None:
        reanchor_profile(profile, reanchor)
    return profile


def reanchor_profile(profile, seconds: float, extra: dict[str, Any] | None = None, progress: bool = True):
    """Re-anchor ``profile`` with a progress bar unless ``progress`` is false (``extra`` runnables measured in
    the same run) and print the factor, prominently past the threshold."""
    if not seconds > 0:
        raise UsageError(f"--reanchor takes a positive number of seconds, got {seconds:g}")
    if not progress:
        anchoring = profile.reanchor(seconds, extra=extra)
    else:
        with progress_bar() as bar:
            task = bar.add_task(f"re-anchoring {profile.name}", total=seconds, info="deploying")
            anchoring = profile.reanchor(seconds, extra=extra, progress=lambda p: bar.update(
                task, completed=min(p["elapsed_s"], seconds), info=f"{p['rounds']} rounds"))
    line = anchoring.describe(profile.meta.get("created", ""))
    console(stderr=True).print(f"[bold yellow]note: {line}[/]" if anchoring.notable else line, soft_wrap=True)
    return anchoring


def add_profile_checks(parser: argparse.ArgumentParser, reanchor_note: str = "") -> None:
    parser.add_argument("--strict", action="store_true",
                        help="refuse a profile made on another configuration (an engine patch release only warns)")
    add_reanchor(parser, reanchor_note)


def add_reanchor(parser: argparse.ArgumentParser, default_note: str = "") -> None:
    parser.add_argument("--reanchor", type=positive_float, nargs="?", const=DEFAULT_SECONDS, default=None,
                        metavar="SECONDS",
                        help="first re-measure the profile's anchor networks for SECONDS (default "
                             f"{DEFAULT_SECONDS:g}) and rescale predictions to this machine's speed now{default_note}")


def model_family(name: str, profile, input_shape: str | None) -> Family:
    """The family of ``--model``: one of the profile's own (its recorded input shape), a built-in network,
    or a factory / ``torchvision:NAME`` with ``--input-shape`` C x H x W."""
    if name in profile.families and input_shape is None:
        return profile.families[name]
    return family(name, parse_shape(input_shape) if input_shape is not None else None)


def traced_model(name: str, profile, input_shape: str | None) -> tuple[Family, Arch, tuple[int, ...]]:
    """The family of ``--model``, its full-width ``Arch`` at the profile's batch, and that input shape."""
    fam = model_family(name, profile, input_shape)
    batch = int(profile.meta["settings"].get("batch", 1))
    return fam, fam.trace(batch), (batch, *fam.input_shape)


def deploy_candidate(profile, fam: Family, arch, shape):
    return profile.backend().deploy(fam.build(arch), torch.randn(*shape))


def add_engine_options(parser: argparse.ArgumentParser, device_help: str = "cpu or cuda",
                       precision_help: str = "fp32 (default) or fp16 where supported") -> None:
    """The engine to run on: backend, device, precision and CPU threads."""
    parser.add_argument("--backend", default=DEFAULT_BACKEND, help=f"one of {', '.join(backend_names())}")
    parser.add_argument("--device", default=None, help=device_help)
    parser.add_argument("--precision", default=None, help=precision_help)
    parser.add_argument("--threads", type=positive_int, help="CPU threads for the engine (default: the engine's own)")
