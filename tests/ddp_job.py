"""A small CNN fitted on digits by the built-in trainer; run as a script, under torchrun or alone (test_distributed).

    python ddp_job.py OUT EPOCHS [KEEP_AT]   -> prints {"val": .., "test": .., "epochs": [...]} from rank 0

``KEEP_AT``: after that epoch the checkpoint is copied to ``checkpoint-KEEP_AT.pt``, the file a run stopped
there would have left.
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from torch import nn

from pruners.data import digits, loaders
from pruners.distributed import context
from pruners.train import TrainConfig, evaluate, fit


def main() -> None:
    out, epochs = sys.argv[1], int(sys.argv[2])
    keep_at = int(sys.argv[3]) if len(sys.argv) > 3 else None
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(32 * 8 * 8, 10))
    train, val, test = loaders(digits(seed=0), 64, seed=0)

    def keep(epoch, _):
        if epoch == keep_at and context().main:
            shutil.copy(Path(out) / "checkpoint.pt", Path(out) / f"checkpoint-{epoch}.pt")

    history = fit(model, train, val, TrainConfig(epochs=epochs, lr=0.05), checkpoint_dir=out, on_epoch_end=[keep],
                  progress=False)
    if context().main:
        print(json.dumps({"val": history.last_val, "test": evaluate(model, test), "epochs": history.epochs,
                          "weights": float(sum(p.double().sum() for p in model.state_dict().values()))}))


if __name__ == "__main__":
    main()
