"""``LayerSpec``: one layer as a deployment engine sees it, and what it costs in FLOPs and parameters.

FLOPs convention (the one ``torch.utils.flop_counter`` uses): a multiply-accumulate counts as 2
FLOPs, and only convolutions and linear layers are counted. Bias, batch norm, activations,
pooling and element-wise additions count 0 FLOPs. ``macs`` is FLOPs / 2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

#: op kinds a ``LayerSpec`` can have
OPS = ("conv", "dwconv", "linear", "maxpool", "avgpool", "gap", "add", "mul", "bn", "act")
WEIGHTED_OPS = ("conv", "dwconv", "linear")


@dataclass(frozen=True)
class LayerSpec:
    """A layer's shape and fused epilogue. Frozen and hashable: it is the key of a latency table.

    ``in_mult`` is for a linear layer fed by a flattened C x H x W map: ``in_features =
    in_channels * in_mult``. ``epilogue`` lists what an engine fuses into the layer, in order
    (e.g. ``("bn", "relu")``).
    """

    op: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1
    dilation: tuple[int, int] = (1, 1)
    in_hw: tuple[int, int] = (1, 1)
    batch: int = 1
    dtype: str = "float32"
    bias: bool = False
    epilogue: tuple[str, ...] = ()
    in_mult: int = 1

    @property
    def out_hw(self) -> tuple[int, int]:
        if self.op in ("conv", "dwconv", "maxpool", "avgpool"):
            return tuple(  # type: ignore[return-value]
                (size + 2 * p - d * (k - 1) - 1) // s + 1
                for size, p, d, k, s in zip(self.in_hw, self.padding, self.dilation, self.kernel, self.stride,
                                            strict=True)
            )
        if self.op in ("gap", "linear"):
            return (1, 1)
        return self.in_hw

    def macs(self) -> int:
        """Multiply-accumulates of one forward pass at this batch size."""
        if self.op in ("conv", "dwconv"):
            oh, ow = self.out_hw
            return (self.batch * oh * ow * self.out_channels * (self.in_channels // self.groups)
                    * self.kernel[0] * self.kernel[1])
        if self.op == "linear":
            return self.batch * self.in_channels * self.in_mult * self.out_channels
        return 0

    def flops(self) -> int:
        """FLOPs, counted as ``torch.utils.flop_counter`` does (2 per multiply-accumulate)."""
        return 2 * self.macs()

    def params(self) -> int:
        """Learnable parameters, including a fused batch norm's scale and shift."""
        bn = 2 * self.out_channels if "bn" in self.epilogue else 0
        bias = self.out_channels if self.bias else 0
        if self.op in ("conv", "dwconv"):
            return self.out_channels * (self.in_channels // self.groups) * self.kernel[0] * self.kernel[1] + bias + bn
        if self.op == "linear":
            return self.in_channels * self.in_mult * self.out_channels + bias + bn
        if self.op == "bn":
            return 2 * self.out_channels
        return 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerSpec:
        kwargs = {}
        for f in fields(cls):
            if f.name in d:
                v = d[f.name]
                kwargs[f.name] = tuple(v) if isinstance(v, list) else v
        return cls(**kwargs)
