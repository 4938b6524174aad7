"""What a pruning method is: it is given a ``Problem`` and its ``Options``, and returns a ``Search``.

A method is one module that defines an options dataclass (every field with a default and a
``help`` in its metadata: the command line makes a flag of each) and
``search(problem, options) -> Search``, and exposes them as ``METHOD = Method(name, summary,
Options, search)``; ``pruners.methods`` registers it with one line. ``prune`` (``pruners.prune``)
does everything around the search: loading, the target check, cutting, fine-tuning, the final
side-by-side measurement and the run folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latbench.arch import Arch
from latbench.cli.values import bounded
from pruners.batchnorm import RECALIBRATION_IMAGES, recalibrate_batchnorm
from pruners.errors import PruningError
from pruners.groups import ChannelGroup
from pruners.oracle import LatencyOracle
from pruners.surgery import Decision, apply
from pruners.train import TrainConfig, evaluate, fit, sgd_steps


@dataclass
class Problem:
    """What a method is given: the trained network, its trace and groups, the oracle, the data, the target."""

    model: nn.Module
    arch: Arch
    groups: list[ChannelGroup]
    example: torch.Tensor
    oracle: LatencyOracle | None
    target: float  # a ratio of the original's latency (metric "latency") or FLOPs ("flops")
    metric: str
    train_loader: Any
    val_loader: Any
    finetune: TrainConfig
    out: Path | None = None
    progress: bool = False
    bn_images: int = RECALIBRATION_IMAGES  # training images batch norms are re-estimated on after surgery
    fine_tune_fn: Callable[[nn.Module, int], None] | None = None  # the user's finetune(module, epochs)
    accuracy_checks: int = 0  # quick accuracy checks run (cached ones not counted)
    search_cost: dict[str, Any] | None = None  # what the search spent (measurements, seconds), kept on resume
    _accuracy: dict[str, float] = field(default_factory=dict, repr=False)

    def recalibrate(self, module: nn.Module, images: int | None = None) -> int:
        """Re-estimate ``module``'s batch-norm statistics on ``images`` (default ``bn_images``) training images
        (after surgery); none when ``bn_images`` is 0."""
        if self.train_loader is None or self.bn_images == 0:
            return 0
        return recalibrate_batchnorm(module, self.train_loader, self.bn_images if images is None else images)

    def quick_accuracy(self, module: nn.Module, key: str, batches: int = 4, images: int | None = None,
                       steps: int = 0) -> float:
        """Top-1 accuracy (%) of a freshly cut ``module`` on the first ``batches`` validation batches,
        after batch-norm recalibration (on ``images`` training images, default ``bn_images``) and, with
        ``steps``, that many SGD steps at the fine-tuning learning rate (``module`` is trained in place);
        cached by ``key`` (e.g. the candidate's signature) and counted."""
        if key not in self._accuracy:
            self.recalibrate(module, images)
            if steps:
                if self.train_loader is None:
                    raise PruningError("a quick check with training steps needs training data (a train_loader)")
                sgd_steps(module, self.train_loader, steps, self.finetune.lr)
            self._accuracy[key] = evaluate(module, self.val_loader, max_batches=batches)
            self.accuracy_checks += 1
        return self._accuracy[key]

    def build(self, decision: Decision) -> nn.Module:
        """The pruned module of ``decision`` (for measuring; the arch check is skipped for speed)."""
        return apply(self.model, self.arch, decision, self.example, check_arch=False)[0]

    def step_fine_tune(self, module: nn.Module, step: int, epochs: int = 1) -> None:
        """Fine-tune ``module`` in place between the steps of an iterative schedule (``epochs`` epochs,
        checkpointed under ``out/steps/<step>`` so an interrupted search resumes)."""
        self.recalibrate(module)
        if self.fine_tune_fn is not None:
            self.fine_tune_fn(module, epochs)
            return
        config = replace(self.finetune, epochs=epochs)
        folder = self.out / "steps" / str(step) if self.out else None
        fit(module, self.train_loader, self.val_loader, config, checkpoint_dir=folder, progress=self.progress,
            description=f"fine-tuning (step {step})")


@dataclass
class Search:
    """A method's answer: the knob or budget it settled on, the decision and the candidate it gives, every
    step of the search; ``model`` is the pruned module when the search already built (and trained) it, as
    iterative schedules do."""

    knob: float
    decision: Decision
    arch: Arch
    history: list[dict[str, Any]]
    model: nn.Module | None = None


@dataclass(frozen=True)
class NoOptions:
    """Options of a method that takes none."""


@dataclass(frozen=True)
class Method:
    """A registered pruning method: its name, a one-line summary, its options dataclass and its search."""

    name: str
    summary: str
    Options: type
    search: Callable[[Problem, Any], Search]

    def option_fields(self) -> list[dataclasses.Field]:
        return list(dataclasses.fields(self.Options))

    def options(self, given: dict[str, Any]) -> Any:
        """The method's options from ``given`` (names as in the dataclass; None means the default)."""
        given = {k: v for k, v in given.items() if v is not None}
        names = [f.name for f in self.option_fields()]
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise PruningError(f"{self.name} takes no option {', '.join(unknown)}"
                               f"{'; it takes ' + ', '.join(names) if names else ''}")
        for f in self.option_fields():
            if f.name in given and option_type(self.Options, f.name) in (int, float):
                try:
                    option_parser(self.Options, f)(str(given[f.name]))
                except argparse.ArgumentTypeError as exc:
                    raise PruningError(f"{self.name} option --{f.name.replace('_', '-')}: {exc}") from None
        return self.Options(**given)


def option_type(options_type: type, name: str) -> type:
    """The value type of one option (``int`` for ``int | None``)."""
    hint = typing.get_type_hints(options_type)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    return args[0] if args else hint


def option(default: Any, help: str, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> Any:
    """A field of an options dataclass, with the help text the command line shows and, for a number, its range
    (``[low, high]``, ``(low, high]`` with ``low_open``), checked on the command line and in ``Method.options``."""
    bounds = {"low": low, "high": high, "low_open": low_open} if low is not None or high is not None else {}
    return field(default=default, metadata={"help": help, **bounds})


def option_parser(options_type: type, f: dataclasses.Field):
    """The value parser of one option: its type, within its range (``latbench.cli.values.bounded``)."""
    kind = option_type(options_type, f.name)
    if kind in (int, float):
        return bounded(kind, f.metadata.get("low"), f.metadata.get("high"), f.metadata.get("low_open", False))
    return kind


def options_given(flags: list[str], method: str) -> dict[str, Any]:
    """The ``METHOD.NAME=VALUE`` flags (``--option``) addressed to ``method``, values read as JSON where they
    parse (numbers, booleans), else kept as strings."""
    out: dict[str, Any] = {}
    for item in flags:
        key, _, value = item.partition("=")
        owner, _, name = key.partition(".")
        if owner == method:
            try:
                out[name] = json.loads(value)
            except json.JSONDecodeError:
                out[name] = value
    return out
