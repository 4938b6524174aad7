"""Per-layer tables of an ``Arch``: shapes, FLOPs, parameters and their shares (FLOPs proportion)."""

from __future__ import annotations

import pandas as pd

from latbench.arch.arch import Arch

_WINDOWED = ("conv", "dwconv", "maxpool", "avgpool")
COLUMNS = ["index", "name", "op", "in_shape", "out_shape", "kernel", "flops", "macs", "params", "flops_share",
           "flops_cum_share", "params_share", "params_cum_share", "groups", "block", "removable", "epilogue"]


def layer_table(arch: Arch):
    """One row per active layer, in execution order, with FLOPs and parameter shares.

    ``flops_share``/``params_share`` are fractions of the network's totals and ``*_cum_share``
    their running sums: the FLOPs-proportion analysis. FLOPs follow ``LayerSpec``'s convention
    (2 per multiply-accumulate, conv and linear only).
    """
    removable = {b.name: b.removable for b in arch.blocks}
    rows = []
    for i, layer in enumerate(arch.active_layers()):
        s = arch.spec(layer)
        oh, ow = s.out_hw
        flat = s.op == "linear"
        rows.append({
            "index": i, "name": layer.name, "op": s.op,
            "in_shape": f"{s.in_channels * s.in_mult}" if flat else f"{s.in_channels}x{s.in_hw[0]}x{s.in_hw[1]}",
            "out_shape": f"{s.out_channels}" if flat else f"{s.out_channels}x{oh}x{ow}",
            "kernel": f"{s.kernel[0]}x{s.kernel[1]}/s{s.stride[0]}" if s.op in _WINDOWED else "",
            "flops": s.flops(), "macs": s.macs(), "params": s.params(),
            "groups": ",".join(map(str, layer.out_groups)), "block": layer.block or "",
            "removable": bool(layer.block and removable.get(layer.block)), "epilogue": "+".join(s.epilogue),
        })
    df = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in (
        "flops_share", "flops_cum_share", "params_share", "params_cum_share")])
    for col in ("flops", "params"):
        total = df[col].sum()
        df[f"{col}_share"] = df[col] / total if total else 0.0
        df[f"{col}_cum_share"] = df[f"{col}_share"].cumsum()
    return df[COLUMNS]
