"""Data-parallel training under ``torchrun``: PyTorch's DistributedDataParallel, nothing home-made.

Launched by ``torchrun`` (which sets ``WORLD_SIZE``, ``RANK`` and the rendezvous), :func:`context` joins
the process group (NCCL for a network on a CUDA device, placed on the process's ``LOCAL_RANK`` GPU; else
gloo) and the built-in trainer (``pruners.train.fit``) then wraps the network in DDP, gives each process
its share of every epoch (``DistributedSampler``, seeded, per-process batch ``ceil(batch_size / world)``
so the global batch and the schedule stay those of one process), sums the training metrics over
processes, and writes checkpoints from rank 0 only. Outside ``torchrun`` everything is the
single-process path.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader


@dataclass(frozen=True)
class Context:
    """This process's rank among ``world`` processes (``world`` 1: not distributed)."""

    rank: int = 0
    world: int = 1

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Whether this process writes files and prints (rank 0)."""
        return self.rank == 0

    def loader(self, loader: DataLoader, seed: int) -> DataLoader:
        """``loader``'s dataset split over the processes, reshuffled per epoch (``set_epoch``) from ``seed``."""
        if not self.active:
            return loader
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(loader.dataset, num_replicas=self.world, rank=self.rank, shuffle=True,
                                     seed=seed, drop_last=False)
        return DataLoader(loader.dataset, batch_size=math.ceil((loader.batch_size or 1) / self.world),
                          sampler=sampler, num_workers=loader.num_workers, collate_fn=loader.collate_fn)

    def set_epoch(self, loader: DataLoader, epoch: int) -> None:
        if self.active:
            loader.sampler.set_epoch(epoch)

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in DDP (gradients averaged over processes), or itself."""
        if not self.active:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device = module_device(model)
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def sum(self, values: list[float]) -> list[float]:
        """``values`` summed over every process."""
        if not self.active:
            return values
        t = torch.tensor(values, dtype=torch.float64)
        torch.distributed.all_reduce(t)
        return t.tolist()

    def barrier(self) -> None:
        if self.active:
            torch.distributed.barrier()


def context(device: torch.device | None = None) -> Context:
    """This process's place in a ``torchrun`` launch, joining its process group once (for a network on
    ``device``); ``Context()`` outside one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    dist = torch.distributed
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device is not None and device.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size())


def module_device(model: nn.Module) -> torch.device:
    """Where ``model``'s parameters are (the CPU for a module without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def local_device(device: torch.device) -> torch.device:
    """Where this process trains: its own GPU (``LOCAL_RANK``) for a CUDA network under ``torchrun``."""
    if device.type != "cuda" or "LOCAL_RANK" not in os.environ:
        return device
    local = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    torch.cuda.set_device(local)
    return local

