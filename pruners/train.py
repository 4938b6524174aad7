"""Train, fine-tune and evaluate classifiers: SGD with a cosine schedule, optional distillation.

``fit`` saves a checkpoint after every epoch (weights, optimiser, schedule, random states and the
history so far) and, given the same folder again, resumes from the last finished epoch: an
interrupted run continues as if it had not stopped. Checkpoints are plain tensors and numbers,
loaded with ``weights_only=True``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from pruners.distributed import context, local_device, module_device
from pruners.errors import CheckpointError

CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Fine-tuning and training settings (defaults: the usual CIFAR recipe, shortened)."""

    epochs: int = 30
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    seed: int = 0
    warmup_epochs: int = 0
    distill: float = 0.0  #: weight of the distillation loss (0 = off; needs a teacher)
    temperature: float = 4.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class History:
    """Per-epoch records: epoch, lr, train loss and accuracy, validation accuracy, seconds."""

    epochs: list[dict[str, float]] = field(default_factory=list)

    @property
    def last_val(self) -> float | None:
        return self.epochs[-1]["val_acc"] if self.epochs else None


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, max_batches: int | None = None) -> float:
    """Top-1 accuracy in percent over ``loader`` (eval mode; the model's mode is restored)."""
    was_training = model.training
    model.eval()
    correct = total = 0
    device = module_device(model)
    for i, (x, y) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        x, y = x.to(device), y.to(device)
        correct += int((model(x).argmax(1) == y).sum())
        total += int(y.numel())
    model.train(was_training)
    return 100.0 * correct / max(total, 1)


def sgd_steps(model: nn.Module, loader: Iterable, steps: int, lr: float, momentum: float = 0.9) -> int:
    """Train ``model`` in place for up to ``steps`` plain SGD steps (constant ``lr``, cross-entropy) on the
    first batches of one pass of ``loader``; the number of steps taken. A short window, not a schedule: for
    scoring filters by how they move, or ranking pruned networks by how they recover."""
    model.train()
    device = module_device(model)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    done = 0
    for x, y in loader:
        if done >= steps:
            break
        opt.zero_grad()
        F.cross_entropy(model(x.to(device)), y.to(device)).backward()
        opt.step()
        done += 1
    return done


def _lr_at(config: TrainConfig, step: int, total: int, per_epoch: int) -> float:
    warm = config.warmup_epochs * per_epoch
    if step < warm:
        return config.lr * (step + 1) / warm
    progress = (step - warm) / max(total - warm, 1)
    return 0.5 * config.lr * (1 + math.cos(math.pi * progress))


def _loss(logits: torch.Tensor, y: torch.Tensor, teacher_logits: torch.Tensor | None, config: TrainConfig):
    ce = F.cross_entropy(logits, y)
    if teacher_logits is None or config.distill <= 0:
        return ce
    t = config.temperature
    kd = F.kl_div(F.log_softmax(logits / t, 1), F.softmax(teacher_logits / t, 1), reduction="batchmean") * t * t
    return (1 - config.distill) * ce + config.distill * kd


def fit(model: nn.Module, train_loader: DataLoader, val_loader: Iterable, config: TrainConfig,
        checkpoint_dir: str | Path | None = None, teacher: nn.Module | None = None,
        on_epoch_end: Sequence[Callable[[int, nn.Module], None]] = (), progress: bool = True,
        description: str = "training") -> History:
    """Train ``model`` in place for ``config.epochs``; resume from ``checkpoint_dir`` if it holds a checkpoint.

    ``train_loader`` must shuffle with its own ``generator`` (as ``pruners.data.loaders`` builds it) for
    a resumed run to see the same batches. ``on_epoch_end(epoch, model)`` callbacks run after each epoch.
    Under ``torchrun`` the processes train one network data-parallel (``pruners.distributed``); rank 0
    writes the checkpoints, every process reads them to resume, and only rank 0 shows progress.
    """
    if config.distill > 0 and teacher is None:
        raise CheckpointError("distillation weight > 0 needs a teacher network")
    device = module_device(model)
    if device.type == "cuda":
        device = local_device(device)
        model.to(device)
    ctx = context(device)
    torch.manual_seed(config.seed)
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay, nesterov=config.momentum > 0)
    history = History()
    start = 0
    ckpt = Path(checkpoint_dir) / CHECKPOINT if checkpoint_dir else None
    if ckpt is not None and ckpt.exists():
        start = _resume(ckpt, model, opt, train_loader, config, history)
    else:  # a loader used before starts over: the same call gives the same run
        for gen in _generators(train_loader):
            gen.manual_seed(config.seed)
    batches = ctx.loader(train_loader, config.seed)
    net = ctx.wrap(model)
    per_epoch = max(len(batches), 1)
    total = config.epochs * per_epoch
    if teacher is not None:
        teacher.eval()
    bar = progress_bar(progress and ctx.main, description, total, start * per_epoch)
    try:
        for epoch in range(start, config.epochs):
            t0 = time.perf_counter()
            net.train()
            ctx.set_epoch(batches, epoch)
            loss_sum = correct = seen = 0.0
            for i, (x, y) in enumerate(batches):
                x, y = x.to(device), y.to(device)
                for g in opt.param_groups:
                    g["lr"] = _lr_at(config, epoch * per_epoch + i, total, per_epoch)
                logits = net(x)
                with torch.no_grad():
                    t_logits = teacher(x) if teacher is not None and config.distill > 0 else None
                loss = _loss(logits, y, t_logits, config)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += float(loss.detach()) * len(y)
                correct += int((logits.argmax(1) == y).sum())
                seen += len(y)
                if bar:
                    info = f"epoch {epoch + 1}/{config.epochs} loss {float(loss.detach()):.3f}"
                    bar[0].update(bar[1], advance=1, info=info)
            loss_sum, correct, seen = ctx.sum([loss_sum, correct, seen])
            val = evaluate(model, val_loader)
            history.epochs.append({"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"],
                                   "train_loss": loss_sum / max(seen, 1), "train_acc": 100.0 * correct / max(seen, 1),
                                   "val_acc": val, "seconds": time.perf_counter() - t0})
            if ckpt is not None and ctx.main:
                _save(ckpt, model, opt, train_loader, config, history, epoch + 1)
            ctx.barrier()
            for callback in on_epoch_end:
                callback(epoch + 1, model)
    finally:
        if bar:
            bar[0].stop()
    model.eval()
    return history


def progress_bar(enabled: bool, description: str, total: int, done: int):
    """A started rich progress bar and its task (None when ``enabled`` is false); the caller stops it."""
    if not enabled:
        return None
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=True)
    bar.start()
    return bar, bar.add_task(description, total=total, completed=done, info="")


def _generators(loader: DataLoader) -> list[torch.Generator]:
    """The random generators a resumed run must restore: the shuffler's and the augmentation's."""
    found = [loader.generator] if getattr(loader, "generator", None) is not None else []
    aug = getattr(loader.dataset, "generator", None)
    if isinstance(aug, torch.Generator):
        found.append(aug)
    return found


def _save(path: Path, model: nn.Module, opt: torch.optim.Optimizer, loader: DataLoader, config: TrainConfig,
          history: History, epoch: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
             "config": config.to_dict(), "history": history.epochs, "torch_rng": torch.get_rng_state(),
             "generators": [g.get_state() for g in _generators(loader)]}
    save_atomic(state, path)


def save_atomic(state: Any, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file: a run killed while saving keeps the previous one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _resume(path: Path, model: nn.Module, opt: torch.optim.Optimizer, loader: DataLoader, config: TrainConfig,
            history: History) -> int:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many kinds for a corrupt or foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {str(exc).splitlines()[0]}") from None
    saved = state.get("config", {})
    if saved != config.to_dict():
        changed = sorted(k for k in set(saved) | set(config.to_dict()) if saved.get(k) != config.to_dict().get(k))
        raise CheckpointError(f"checkpoint {path} was written with other settings ({', '.join(changed)}); "
                              f"use another folder or the same settings")
    load_weights(model, state["model"], str(path))
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    for gen, s in zip(_generators(loader), state.get("generators", []), strict=False):
        gen.set_state(s)
    history.epochs.extend(state.get("history", []))
    return int(state["epoch"])


def load_weights(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict`` into ``model`` or raise one line naming the first mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        what = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise CheckpointError(f"weights {source} do not match the model ({what}; "
                              f"{len(missing)} missing, {len(unexpected)} unexpected keys)")
    for k, v in state_dict.items():
        if own[k].shape != v.shape:
            raise CheckpointError(f"weights {source} do not match the model: {k} is {list(v.shape)} "
                                  f"in the file, {list(own[k].shape)} in the model")
    model.load_state_dict(state_dict)


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict saved with ``torch.save(model.state_dict())``, loaded with ``weights_only=True``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no weights file {path}") from None
    except Exception as exc:  # noqa: BLE001 - a pickle with objects, or a corrupt file
        raise CheckpointError(f"cannot read weights {path}: {str(exc).splitlines()[0]}") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a training checkpoint
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors")
    return state
