"""Prune a network of your own (defined right here, not in the zoo) to a measured latency target.

    python examples/prune_your_own_network.py
"""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from latbench.device_profile import DeviceProfile
from pruners.prune import prune_module


class Net(nn.Module):  # your network: a residual add around a depthwise-separable pair, then a strided conv
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1, groups=64, bias=False), nn.BatchNorm2d(64), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(64, 64, 1, bias=False), nn.BatchNorm2d(64))
        self.down = nn.Sequential(nn.Conv2d(64, 128, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(128),
                                  nn.ReLU())
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.pw(self.dw(x)))
        return self.head(self.down(x).mean(dim=(2, 3)))


x, y = torch.randn(256, 3, 32, 32), torch.randint(0, 10, (256,))  # your data
train = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True)
val = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=32)


def finetune(module, epochs):  # your training step (optional: without it the built-in trainer runs)
    opt = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)
    module.train()
    for _ in range(epochs):
        for xb, yb in train:
            opt.zero_grad()
            nn.functional.cross_entropy(module(xb), yb).backward()
            opt.step()
    module.eval()


profile = DeviceProfile.load("device_profiles/amd-epyc-1t-onnxruntime-fp32-bs1")
result = prune_module(Net().eval(), torch.randn(1, 3, 32, 32), profile, method="uniform", target=0.6,
                      metric="latency", mode="measure", train_loader=train, val_loader=val, finetune=finetune,
                      finetune_epochs=1,
                      predictor="xgb", out="runs/my-net")
print(result.summary())
