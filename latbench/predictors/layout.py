"""Where ONNX Runtime's CPU engine converts tensor layouts inside a candidate network.

On x86 CPUs ONNX Runtime rewrites convolutions to its blocked NCHWc layout (channels in blocks of
``block``: 16 with AVX-512, 8 with AVX2) and inserts ``ReorderInput`` / ``ReorderOutput`` nodes
where a blocked tensor meets an operator that needs plain NCHW, or the reverse. A pruned network
whose widths leave the blocked path pays for these conversions between layers, a cost that no
isolated layer measurement contains; and the isolated measurement of a blocked layer contains two
conversions that a chain of blocked layers does not pay. Which path a layer takes depends only on
its channel counts, so the conversions are cheap to replay for every candidate. The rules, checked
against ONNX Runtime's own optimised graphs by ``tests/test_layout.py``:

- conv with fewer than ``block`` input channels: reads NCHW, writes NCHWc;
- conv whose input channels are a multiple of 4: reads and writes NCHWc (channels padded);
- any other conv: plain NCHW;
- depthwise conv: NCHWc when its channels are a multiple of 4, else NCHW (one channel: a conv);
- max/avg pooling: NCHWc when its channels are a multiple of ``block``, else NCHW; global pooling
  the same, but only when its input is already NCHWc (or is the network input);
- residual add: NCHWc (fused into the conv before it) when both inputs are NCHWc, else NCHW
  (fused into a plain conv, or alone), with its NCHWc inputs converted;
- activation: follows its input; linear layers and anything else: NCHW; the network's output: NCHW.

A tensor is converted at most once per direction, however many consumers need the other layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latbench.predictors.batch import CandidateBatch

_POOLS = ("maxpool", "avgpool", "gap")


@dataclass
class Conversions:
    """Layout conversions of N candidates: in the network, and summed over their isolated layers."""

    count: np.ndarray  # (N,) conversion nodes the engine runs in the network
    elements: np.ndarray  # (N,) elements those nodes move
    isolated_count: np.ndarray  # (N,) conversions inside the active layers' isolated measurements
    isolated_elements: np.ndarray
    blocked: np.ndarray  # (N, L) the layer runs on the blocked layout (an add: fused into its conv)


def _tensor_elements(batch: CandidateBatch) -> np.ndarray:
    """(L + 1, N) elements of every layer's output; row L is the network input."""
    base = batch.base
    n, n_layers = batch.cout.shape
    out = np.zeros((n_layers + 1, n))
    for j, layer in enumerate(base.layers):
        s = layer.spec
        oh, ow = s.out_hw if s.op != "linear" else (1, 1)
        out[j] = batch.cout[:, j] * oh * ow * s.batch
    out[n_layers] = float(np.prod(base.input_shape))
    return out


def conversions(batch: CandidateBatch, block: int) -> Conversions:
    """Replay the engine's layout choices for every candidate of ``batch``."""
    base = batch.base
    n, n_layers = batch.cin.shape
    zeros = np.zeros(n)
    if not base.layers or not all(layer.inputs for layer in base.layers):
        # no dataflow known: nothing to replay
        return Conversions(zeros, zeros, zeros.copy(), zeros.copy(), np.zeros((n, n_layers), dtype=bool))
    rows = np.arange(n)
    col = lambda i: n_layers if i < 0 else i  # noqa: E731 - column of a producer (-1: network input)
    # tensors are rows of these (L + 1, N) arrays; a producer is one row for the whole batch, or,
    # where blocks are removed, a row per candidate (``alias``: removed blocks pass their input on)
    elements = _tensor_elements(batch)
    blocked = np.zeros((n_layers + 1, n), dtype=bool)  # native layout of each tensor
    converted = np.zeros((n_layers + 1, n), dtype=bool)  # its other layout has been made
    alias = None if batch.active.all() else np.tile(np.arange(n_layers + 1)[:, None], (1, n))
    count, moved = np.zeros(n), np.zeros(n)
    iso_count, iso_moved = np.zeros(n), np.zeros(n)

    def at(table: np.ndarray, src: int | np.ndarray) -> np.ndarray:
        return table[src] if isinstance(src, int) else table[src, rows]

    def need(src: int | np.ndarray, want: np.ndarray, where: np.ndarray) -> None:
        new = where & (at(blocked, src) != want) & ~at(converted, src)
        count[:] += new
        moved[:] += np.where(new, at(elements, src), 0.0)
        if isinstance(src, int):
            converted[src] |= new
        else:
            converted[src[new], rows[new]] = True

    for j, layer in enumerate(base.layers):
        s, act = layer.spec, batch.active[:, j]
        srcs = [col(i) if alias is None else alias[col(i)] for i in layer.inputs]
        src = srcs[0]
        cin = batch.cin[:, j]
        in_el, out_el = at(elements, src), elements[j]
        if s.op == "add":
            out = np.logical_and.reduce([at(blocked, sk) for sk in srcs])
            for sk in srcs:
                need(sk, out, act)
            iso = iso_pair = np.zeros(n, dtype=bool)
        elif s.op in ("conv", "dwconv"):
            direct = (cin < block) if s.op == "conv" else cin == 1  # one channel: an ordinary conv
            reads_blocked = ~direct & (cin % 4 == 0)
            need(src, reads_blocked, act)
            out = direct | reads_blocked
            iso, iso_pair = out, reads_blocked
        elif s.op in _POOLS:
            aligned = cin % block == 0
            out = aligned & (at(blocked, src) | (np.asarray(src) == n_layers)) if s.op == "gap" else aligned
            need(src, out, act)
            iso, iso_pair = aligned, aligned
        elif s.op == "act":
            out = at(blocked, src)
            iso = iso_pair = np.zeros(n, dtype=bool)
        else:
            for sk in srcs:
                need(sk, np.zeros(n, dtype=bool), act)
            out = np.zeros(n, dtype=bool)
            iso = iso_pair = out
        blocked[j] = out & act
        # isolated sample: network input NCHW -> layer -> NCHW output
        iso_count += act * (iso.astype(float) + iso_pair)
        iso_moved += act * (np.where(iso, out_el, 0.0) + np.where(iso_pair, in_el, 0.0))
        if alias is not None and not act.all():  # a removed block's output is its input
            outside = [i for i in layer.inputs if i < 0 or base.layers[i].block != layer.block]
            alias[j, ~act] = alias[col((outside or layer.inputs)[0]), ~act]
    last = n_layers - 1 if alias is None else alias[n_layers - 1]
    need(last, np.zeros(n, dtype=bool), np.ones(n, dtype=bool))
    return Conversions(count, moved, iso_count, iso_moved, blocked[:n_layers].T.copy())
