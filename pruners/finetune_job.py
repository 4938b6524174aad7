"""A pruning run's fine-tuning on N processes under ``torchrun`` (``latbench prune ... --nproc N``).

The run writes what the processes need into ``RUN/finetune``: ``job.json`` (how to rebuild the network:
the model, its weights, the decision, the dataset and the fine-tuning settings) and ``start.pt`` (the
pruned network's weights after batch-norm recalibration, the state fine-tuning starts from), then
launches ``torchrun --standalone --nproc_per_node N -m pruners.finetune_job RUN``. Each process rebuilds
the pruned network, loads ``start.pt`` and fine-tunes its share (``pruners.distributed``); rank 0 writes
the usual checkpoint ``RUN/finetune/checkpoint.pt``, which the run then reads back as the fine-tuned
network (an interrupted launch resumes from it like a one-process run).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latbench.arch import trace
from latbench.jsonio import dump_json
from pruners.data import load_dataset, loaders
from pruners.distributed import context
from pruners.errors import PruningError
from pruners.surgery import Decision, apply
from pruners.train import TrainConfig, fit, load_weights, read_weights, save_atomic
from pruners.trained import load_trained

JOB, START = "job.json", "start.pt"


@dataclass(frozen=True)
class Recipe:
    """How a process rebuilds the unpruned network and its data: what ``pruners.prune.prune`` was given."""

    model: str
    weights: str
    dataset: str
    data_root: str | None
    seed: int


def launch(recipe: Recipe, processes: int, pruned: nn.Module, decision: Decision, config: TrainConfig,
           folder: Path, progress: bool) -> None:
    """Fine-tune ``pruned`` (``decision`` applied to the recipe's network) on ``processes`` torchrun processes
    into ``folder``; returns when they are done (the checkpoint there holds the result)."""
    folder.mkdir(parents=True, exist_ok=True)
    dump_json({"recipe": recipe.__dict__, "decision": decision.to_dict(), "config": config.to_dict(),
               "progress": progress}, folder / JOB)
    save_atomic(pruned.state_dict(), folder / START)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "pruners.finetune_job", str(folder)]
    done = subprocess.run(command, stdout=None, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        last = [ln for ln in done.stderr.splitlines() if ln.strip()][-1:] or ["no message"]
        raise PruningError(f"fine-tuning on {processes} processes failed (exit {done.returncode}): {last[0][:300]}; "
                           f"rerun to resume from {folder}")


def _run(folder: Path) -> None:
    job: dict[str, Any] = json.loads((folder / JOB).read_text())
    recipe, config = Recipe(**job["recipe"]), TrainConfig(**job["config"])
    splits = load_dataset(recipe.dataset, recipe.data_root, seed=recipe.seed)
    model = load_trained(recipe.model, recipe.weights, splits.num_classes)
    example = torch.zeros(1, *splits.input_shape)
    pruned = apply(model, trace(model, example, recipe.model), Decision.from_dict(job["decision"]), example,
                   check_arch=False)[0]
    load_weights(pruned, read_weights(folder / START), str(folder / START))
    train, val, _ = loaders(splits, config.batch_size, recipe.seed)
    ctx = context()
    fit(pruned, train, val, config, checkpoint_dir=folder, progress=bool(job["progress"]) and ctx.main,
        description=f"fine-tuning on {ctx.world} processes")
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    _run(Path(sys.argv[1]))
