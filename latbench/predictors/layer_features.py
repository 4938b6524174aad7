"""Numeric features of a layer for learned latency models, vectorised over channel counts.

One function builds them from columns (``layer_columns``), so the profile's layer samples
(``layers.csv``) and the layers of many candidates (one spec, arrays of channel counts) get
exactly the same features. Besides the shape itself there are the quantities latency follows
(FLOPs, weights, bytes in and out, arithmetic intensity) and the channel counts modulo the
vector and tile widths engines pad to (4, 8, 16), which put a layer on one side of a staircase
or the other.
"""

from __future__ import annotations

import numpy as np

from latbench.arch.spec import LayerSpec
from latbench.profile.tables import parse_pair

#: ops with a one-hot column; anything else is "other"
ONE_HOT_OPS = ("conv", "dwconv", "linear", "maxpool", "avgpool", "gap", "add")

FEATURE_NAMES = (
    *(f"op_{op}" for op in ONE_HOT_OPS), "op_other",
    "in_channels", "out_channels", "kernel_h", "kernel_w", "stride", "in_h", "in_w", "out_h", "out_w", "batch",
    "in_mult", "epilogue_ops",
    "log_flops", "log_weights", "log_in_bytes", "log_out_bytes", "log_intensity",
    "in_mod4", "in_mod8", "in_mod16", "out_mod4", "out_mod16", "in_padded16", "out_padded16", "log_padded_flops",
)


def _out_size(size, kernel, stride, padding, dilation, op):
    convolved = (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    return np.where(np.isin(op, ("conv", "dwconv", "maxpool", "avgpool")), convolved,
                    np.where(np.isin(op, ("gap", "linear")), 1, size))


def layer_columns(op, cin, cout, kernel_h, kernel_w, stride, padding, dilation, in_h, in_w, batch, in_mult,
                  epilogue_ops, itemsize) -> np.ndarray:
    """(n, len(FEATURE_NAMES)) features; every argument is an array or a scalar (broadcast)."""
    op = np.asarray(op, dtype=object)
    cin, cout = np.asarray(cin, dtype=np.float64), np.asarray(cout, dtype=np.float64)
    n = np.broadcast_shapes(np.shape(op), cin.shape, cout.shape, np.shape(in_h))
    op = np.broadcast_to(op, n)
    cin, cout = np.broadcast_to(cin, n), np.broadcast_to(cout, n)
    in_h, in_w = np.broadcast_to(np.asarray(in_h, dtype=np.float64), n), np.broadcast_to(np.asarray(in_w, float), n)
    out_h = _out_size(in_h, kernel_h, stride, padding, dilation, op)
    out_w = _out_size(in_w, kernel_w, stride, padding, dilation, op)
    is_conv, is_dw, is_linear = op == "conv", op == "dwconv", op == "linear"
    k = np.asarray(kernel_h, dtype=np.float64) * np.asarray(kernel_w, dtype=np.float64)
    in_features = cin * in_mult

    def macs(c_in, c_out):
        return batch * np.where(is_conv, out_h * out_w * c_out * c_in * k,
                                np.where(is_dw, out_h * out_w * c_out * k,
                                         np.where(is_linear, c_in * in_mult * c_out, 0.0)))

    weights = np.where(is_conv, cout * cin * k, np.where(is_dw, cout * k, np.where(is_linear, in_features * cout, 0.0)))
    flops = 2 * macs(cin, cout)
    in_bytes = batch * np.where(is_linear, in_features, cin * in_h * in_w) * itemsize
    out_bytes = batch * cout * out_h * out_w * itemsize
    intensity = flops / (in_bytes + out_bytes + weights * itemsize)
    padded_in, padded_out = np.ceil(cin / 16) * 16, np.ceil(cout / 16) * 16
    one_hot = [op == name for name in ONE_HOT_OPS]
    columns = [*one_hot, ~np.any(one_hot, axis=0),
               cin, cout, kernel_h, kernel_w, stride, in_h, in_w, out_h, out_w, batch, in_mult, epilogue_ops,
               np.log1p(flops), np.log1p(weights), np.log1p(in_bytes), np.log1p(out_bytes), np.log1p(intensity),
               cin % 4, cin % 8, cin % 16, cout % 4, cout % 16, padded_in, padded_out,
               np.log1p(2 * macs(padded_in, padded_out))]
    return np.stack([np.broadcast_to(np.asarray(c, dtype=np.float64), n) for c in columns], axis=-1)


def spec_features(spec: LayerSpec, cin: np.ndarray, cout: np.ndarray) -> np.ndarray:
    """Features of ``spec`` at each channel pair (``cin``, ``cout``)."""
    return layer_columns(spec.op, cin, cout, spec.kernel[0], spec.kernel[1], spec.stride[0], spec.padding[0],
                         spec.dilation[0], spec.in_hw[0], spec.in_hw[1], spec.batch, spec.in_mult,
                         len(spec.epilogue), np.dtype(spec.dtype).itemsize)


def table_features(layers) -> np.ndarray:
    """Features of every row of a profile's layer table (``layers.csv`` columns)."""
    kernel = np.array([parse_pair(v) for v in layers["kernel"]])
    stride = np.array([parse_pair(v)[0] for v in layers["stride"]])
    padding = np.array([parse_pair(v)[0] for v in layers["padding"]])
    dilation = np.array([parse_pair(v)[0] for v in layers["dilation"]])
    hw = np.array([parse_pair(v) for v in layers["in_hw"]])
    epilogue = np.array([len(str(e).split("+")) if isinstance(e, str) and e else 0 for e in layers["epilogue"]])
    itemsize = np.array([np.dtype(d).itemsize for d in layers["dtype"]])
    return layer_columns(layers["op"].to_numpy(dtype=object), layers["in_channels"].to_numpy(),
                         layers["out_channels"].to_numpy(), kernel[:, 0], kernel[:, 1], stride, padding, dilation,
                         hw[:, 0], hw[:, 1], layers["batch"].to_numpy(), layers["in_mult"].to_numpy(), epilogue,
                         itemsize)

