"""Train a zoo network from scratch, and load a trained one back, so pruning starts from real weights.

A trained model is a folder: ``weights.pt`` (``torch.save(model.state_dict())``), ``arch.json``
(its traced ``Arch``) and ``train.json`` (dataset, settings, history, test accuracy, time).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latbench.arch import trace
from latbench.folder_lock import FolderLock
from latbench.jsonio import dump_json
from latbench.models import build_model, get_entry, is_factory, resolve_model
from pruners.data import Splits, load_dataset, loaders
from pruners.distributed import context
from pruners.errors import CheckpointError
from pruners.train import TrainConfig, evaluate, fit, load_weights, read_weights, save_atomic

WEIGHTS = "weights.pt"


def model_for(name: str, splits: Splits) -> nn.Module:
    """A fresh zoo network with the dataset's number of classes (its input must match the dataset's)."""
    entry = get_entry(name)
    if tuple(entry.input_shape[1:]) != tuple(splits.input_shape[1:]) and entry.input_shape[1] < 64:
        raise CheckpointError(f"{name} expects {entry.input_shape[1]}x{entry.input_shape[2]} inputs, "
                              f"{splits.name} gives {splits.input_shape[1]}x{splits.input_shape[2]}")
    return build_model(name, num_classes=splits.num_classes)


def train_zoo_model(name: str, dataset: str = "digits", out: str | Path | None = None,
                    config: TrainConfig | None = None, root: str | Path | None = None,
                    progress: bool = True) -> dict[str, Any]:
    """Train zoo network ``name`` on ``dataset``; write its folder to ``out`` (resuming there if interrupted).
    Under ``torchrun`` every process trains its share (``pruners.distributed``) and rank 0 writes the folder."""
    config = config or TrainConfig()
    splits = load_dataset(dataset, root, seed=config.seed)
    torch.manual_seed(config.seed)
    model = model_for(name, splits)
    train, val, test = loaders(splits, config.batch_size, config.seed)
    out = Path(out or f"runs/{name}-{dataset}")
    ctx = context()
    with FolderLock(out, f"latbench train {name}") if ctx.main else nullcontext():
        start = time.perf_counter()
        history = fit(model, train, val, config, checkpoint_dir=out / "checkpoint", progress=progress,
                      description=f"training {name} on {dataset}")
        seconds = time.perf_counter() - start
        accuracy = evaluate(model, test)
        report = {"model": name, "dataset": dataset, "num_classes": splits.num_classes,
                  "input_shape": list(splits.input_shape), "config": config.to_dict(), "test_accuracy": accuracy,
                  "val_accuracy": history.last_val, "seconds": seconds, "history": history.epochs,
                  "processes": ctx.world}
        if ctx.main:
            save_atomic(model.state_dict(), out / WEIGHTS)
            trace(model.cpu(), torch.zeros(1, *splits.input_shape), name).to_json(out / "arch.json")
            dump_json(report, out / "train.json", indent=1)
    return report


def load_trained(name: str, weights: str | Path, num_classes: int) -> nn.Module:
    """Zoo network ``name`` (or ``torchvision:NAME``, or a user's factory ``module:function`` /
    ``file.py:function``) with ``weights`` (a state dict file or a training folder holding one, loaded weights-only)."""
    path = Path(weights)
    if path.is_dir():
        path = path / WEIGHTS
    # a factory builds its own head; zoo and torchvision networks get one for the dataset's classes
    model = resolve_model(name) if is_factory(name) else resolve_model(name, num_classes=num_classes)
    load_weights(model, read_weights(path), str(path))
    return model.eval()
