"""Predictors that sum per-layer latencies and calibrate the sum on whole networks.

Where a layer's latency comes from is the subclass's business (a lookup table, a learned
regressor); what happens to the sum is shared here.

**Calibration.** Layers measured alone pay the engine's per-run overhead (``overhead_us``,
measured on a trivial model), which is subtracted. Inside a network they are fused and
scheduled together, so the network latency is fitted on the profile's whole-network samples as
``intercept + sum over op kinds of scale_kind * (summed latency of that kind) + per_layer * active
layers + the layout conversions, weight traffic and folded adds the isolated layers did not see``,
by non-negative least squares on relative error (fewer terms when there are few networks, or all
terms held toward another profile's when adapting one, see ``latbench.profiler.adapt``). The
kinds (3x3-style convs, 1x1 convs, depthwise convs, element-wise ops, the rest) fuse differently: ONNX Runtime folds a
residual add into the conv before it, so the add's isolated time mostly disappears in context.
Layer samples are first brought to one machine state with the profile's reference layer, and
network samples with their family anchor (see ``DeviceProfile``).

**Uncertainty.** The relative spread is the root sum of squares of the calibration's
residual spread and each layer's own uncertainty as the subclass reports it. A network whose family
has no network sample in the calibration (a user's network, before ``profile --extend``) also
carries the *family-transfer* spread ``FAMILY_TRANSFER_SIGMA``: calibrated on other families, a
family's networks are predicted off by a level of their own, measured at 6-13% for families whose
op kinds the profile knows (``benchmarks/family_transfer.py``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from latbench.arch import Arch
from latbench.arch.spec import LayerSpec
from latbench.errors import LatbenchError
from latbench.predictors.batch import CandidateBatch, group_by_base
from latbench.predictors.calibration import fit_relative, fit_toward, leave_one_out_spread
from latbench.predictors.layout import conversions
from latbench.predictors.protocol import Prediction, interval
from latbench.profile.grid import has_blocked_layout

#: calibration features: intercept, summed layer latency per op kind, number of active layers,
#: summed latency of layers whose input channels are off the engine's blocked layout, and the
#: layout conversions the network runs beyond those its isolated layers ran (count, elements / 1000)
FEATURES = ("intercept_us", "conv", "pointwise", "depthwise", "eltwise", "other", "per_layer_us", "off_layout_us",
            "conversion_us", "conversion_us_per_kelem", "us_per_kweight", "fused_eltwise")


def feature_column(spec: LayerSpec) -> int:
    """Column of ``FEATURES`` that a layer's latency is summed into."""
    if spec.op == "conv":
        return 2 if spec.kernel == (1, 1) else 1
    if spec.op == "dwconv":
        return 3
    if spec.op in ("add", "mul"):
        return 4
    return 5


#: calibration samples needed per fitted term
SAMPLES_PER_FEATURE = 4
#: relative spread of the level of a family no calibration network came from: the RMS of the median relative
#: errors of three user families (odd-width ResNet, VGG-11-like, MobileNet-V2-like), each left out of its extended
#: Intel Xeon profile and predicted by the LUT and the learned predictors calibrated on the zoo's families
#: (``benchmarks/family_transfer.py``, ``benchmarks/results/family_transfer_xeon.json``: 6.3-13.1%)
FAMILY_TRANSFER_SIGMA = 0.11
#: columns of the fit, most terms first: every feature, or intercept + scale per kind, or intercept + one scale
TIERS = ([[i] for i in range(len(FEATURES))], [[0], [1], [2], [3], [4], [5]], [[0], [1, 2, 3, 4, 5]])


def fit_columns(features: np.ndarray, measured: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Coefficients of every feature (0 where not fitted), the RMS relative residual and the number of terms
    fitted: as many as ``SAMPLES_PER_FEATURE`` allows for the number of networks."""
    columns = next((t for t in TIERS if len(measured) >= SAMPLES_PER_FEATURE * len(t)), TIERS[-1])
    design = np.stack([features[:, c].sum(axis=1) for c in columns], axis=1)
    fitted, sigma = fit_relative(design, measured, nonnegative=True)
    coef = np.zeros(len(FEATURES))
    for c, value in zip(columns, fitted, strict=True):
        coef[c] = value
    return coef, sigma, len(columns)


def profile_layout_block(meta: dict[str, Any]) -> int | None:
    """The channel block of the blocked layout a profile's engine uses (ONNX Runtime on CPU), else None."""
    return int(meta["plan"]["step"]) if has_blocked_layout(meta.get("settings", {})) else None


class LayerLookup(NamedTuple):
    """(N, L) arrays for N candidates and L layers."""

    latency: np.ndarray  # us, engine overhead removed, 0 for removed layers
    uncertainty: np.ndarray  # us, from interpolation and clamping
    out_of_range: np.ndarray  # bool: channels clamped to the grid
    off_layout: np.ndarray  # bool: input channels off the engine's blocked layout


class OutOfProfileError(LatbenchError):
    """A layer shape the profile never measured."""


class LayerSumPredictor(ABC):
    """Calibrated sum of per-layer latencies; subclasses provide ``layer_latency``."""

    name = "layer-sum"

    def __init__(self, layout_block: int | None = None) -> None:
        self.layout_block = layout_block
        additive = ("intercept_us", "per_layer_us", "conversion_us", "conversion_us_per_kelem", "us_per_kweight",
                    "fused_eltwise")
        self.calibration: dict[str, Any] = {
            "coefficients": dict.fromkeys(FEATURES, 1.0) | dict.fromkeys(additive, 0.0), "rel_sigma": 0.0}

    @abstractmethod
    def layer_latency(self, batch: CandidateBatch) -> LayerLookup:
        """Per candidate and layer: latency (engine overhead removed), uncertainty, flags."""

    def features(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, len(FEATURES)) calibration features, (N, kinds) uncertainty, out-of-range flags."""
        lookup = self.layer_latency(batch)
        feats, unc = self._features(batch, lookup)
        return feats, unc, lookup.out_of_range

    def _features(self, batch: CandidateBatch, lookup: LayerLookup) -> tuple[np.ndarray, np.ndarray]:
        lat, unc = lookup.latency, lookup.uncertainty
        kinds = np.array([feature_column(layer.spec) for layer in batch.base.layers])
        feats = np.zeros((len(lat), len(FEATURES)))
        feats[:, 0] = 1.0
        feats[:, 6] = batch.active.sum(axis=1)
        feats[:, 7] = (lat * lookup.off_layout).sum(axis=1)
        fused = np.zeros(lat.shape, dtype=bool)
        if self.layout_block:
            conv = conversions(batch, self.layout_block)
            feats[:, 8] = conv.count - conv.isolated_count
            feats[:, 9] = (conv.elements - conv.isolated_elements) / 1000.0
            fused = conv.blocked & (kinds == 4)  # an add on the blocked layout is folded into its conv
        feats[:, 10] = batch.weights().sum(axis=1) / 1000.0
        feats[:, 11] = (lat * fused).sum(axis=1)
        unc_by_kind = np.zeros((len(lat), len(FEATURES)))
        for k in range(1, 6):
            feats[:, k] = (lat[:, kinds == k] * ~fused[:, kinds == k]).sum(axis=1)
            unc_by_kind[:, k] = np.sqrt((unc[:, kinds == k] ** 2).sum(axis=1))
        return feats, unc_by_kind

    def fit(self, archs: Sequence[Arch], measured_us: np.ndarray, prior: dict[str, float] | None = None) -> None:
        """Fit the calibration; few networks fit fewer terms (all of them from 4 per feature on).

        With ``prior`` (another profile's coefficients, see ``latbench.profiler.adapt``), every
        term is fitted, held toward the prior's (``fit_toward``), and the spread is the
        leave-one-out error."""
        groups, order = group_by_base(archs)
        feats = np.concatenate([self.features(CandidateBatch.of(group))[0] for group in groups])
        measured = np.asarray(measured_us, dtype=float)[order]
        n = len(order)
        families = [group[0].base.layers_digest for group in groups]
        if prior is not None:
            start = np.array([float(prior[f]) for f in FEATURES])
            coef = fit_toward(feats, measured, start)
            sigma = leave_one_out_spread(lambda f, m: fit_toward(f, m, start), feats, measured)
            self.calibration = {"coefficients": dict(zip(FEATURES, map(float, coef), strict=True)),
                                "rel_sigma": sigma, "n": n, "terms": len(FEATURES), "prior": dict(prior),
                                "families": families}
            return
        coef, sigma, terms = fit_columns(feats, measured)
        self.calibration = {"coefficients": dict(zip(FEATURES, map(float, coef), strict=True)), "rel_sigma": sigma,
                            "n": n, "terms": terms, "families": families}

    # --- prediction --------------------------------------------------------------------------
    def _calibrated(self, batch: CandidateBatch) -> tuple[np.ndarray, np.ndarray, LayerLookup]:
        """(latency_us, rel_sigma) of every candidate in ``batch``, and the layer lookup behind them; a
        latency that is not a positive finite number (a regressor far outside its data) is refused."""
        c = self.calibration
        coef = np.array([c["coefficients"][f] for f in FEATURES])
        lookup = self.layer_latency(batch)
        feats, unc = self._features(batch, lookup)
        pred = feats @ coef
        bad = ~(np.isfinite(pred) & (pred > 0))
        if bad.any():
            raise OutOfProfileError(f"{batch.base.name}: the {self.name} predictor gives no usable latency for "
                                    f"{int(bad.sum())} candidate(s): their shapes are far outside what the "
                                    f"profile measured")
        interp = np.sqrt(((unc * coef) ** 2).sum(axis=1)) / np.maximum(pred, 1e-9)
        return pred, np.sqrt(c["rel_sigma"] ** 2 + self.transfer_sigma(batch.base) ** 2 + interp**2), lookup

    def transfer_sigma(self, base) -> float:
        """``FAMILY_TRANSFER_SIGMA`` for networks of ``base`` (an ``ArchBase``) when no calibration network was of
        its family, else 0 (and 0 before any calibration)."""
        known = self.calibration.get("families")
        return FAMILY_TRANSFER_SIGMA if known is not None and base.layers_digest not in known else 0.0

    def predict_many(self, archs: Sequence[Arch]) -> tuple[np.ndarray, np.ndarray]:
        """(latency_us, rel_sigma), each (N,), in the order of ``archs``."""
        groups, order = group_by_base(archs)
        lat = np.empty(len(archs))
        sig = np.empty(len(archs))
        pos = 0
        for group in groups:
            idx = order[pos:pos + len(group)]
            lat[idx], sig[idx], _ = self._calibrated(CandidateBatch.of(group))
            pos += len(group)
        return lat, sig

    def predict(self, arch: Arch) -> Prediction:
        batch = CandidateBatch.of([arch])
        (pred,), (sig,), lookup = self._calibrated(batch)
        lat, oor = lookup.latency, lookup.out_of_range
        lo, hi = interval(np.array([pred]), np.array([sig]))
        names = [layer.name for layer in arch.base.layers]
        scale = [self.calibration["coefficients"][FEATURES[feature_column(layer.spec)]] for layer in arch.base.layers]
        breakdown = [{"layer": names[j], "latency_us": float(lat[0, j] * scale[j]),
                      "share": float(lat[0, j] / lat[0].sum()) if lat[0].sum() else 0.0}
                     for j in range(len(names)) if batch.active[0, j]]
        clamped = [names[j] for j in np.flatnonzero(oor[0])]
        notes = [f"{len(clamped)} layer(s) with channels outside the profiled range, clamped (uncertainty widened): "
                 f"{', '.join(clamped[:4])}{' ...' if len(clamped) > 4 else ''}"] if clamped else []
        transfer = self.transfer_sigma(arch.base)
        if transfer:
            notes.append(f"{arch.base.name}: no network of this family was calibrated, so its level carries the "
                         f"family-transfer spread (±{transfer:.0%}, uncertainty widened); "
                         f"`latbench profile --extend` measures it")
        return Prediction(float(pred), float(lo[0]), float(hi[0]), float(sig), self.name, breakdown, notes, transfer)
