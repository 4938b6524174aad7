"""Random candidates of a network: FLOPs against predicted latency (why FLOPs mislead)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from latbench.sensitivity.latency import kept_channels


def candidates(arch, predictor, n: int = 300, low: float = 0.2, seed: int = 0):
    """``n`` candidates with every prunable group kept at an independent uniform ratio in
    ``[low, 1]``: ``flops``, ``params``, ``predicted_us``, ``rel_sigma`` and ``mean_keep``."""
    rng = np.random.default_rng(seed)
    groups = arch.prunable_groups
    keep = rng.uniform(low, 1.0, (n, len(groups)))
    archs = [arch.with_widths({g.id: kept_channels(arch.widths[g.id], r) for g, r in zip(groups, row, strict=True)})
             for row in keep]
    latency, sigma = predictor.predict_many(archs)
    return pd.DataFrame({"flops": [a.flops() for a in archs], "params": [a.params() for a in archs],
                         "predicted_us": latency, "rel_sigma": sigma, "mean_keep": keep.mean(axis=1)})
