"""Learned kernel-level predictors: a regressor over layer features, calibrated on networks.

The regressor learns log latency (engine overhead removed) of the profile's layer samples from
their features (``layer_features``), and so answers
for any channel count, including shapes between and beyond grid points. The sum over a network's
layers is calibrated on the whole-network samples exactly as the LUT's is (``LayerSumPredictor``).

**Models.** ``xgb`` (default): XGBoost gradient-boosted trees. ``rf``: scikit-learn's random
forest. Each is an ensemble of ``ENSEMBLE`` members trained on bootstrap resamples with their
own seeds; the members' spread in log space is a layer's uncertainty.

**Storage.** ``save`` writes ``predictors/<kind>.json`` (feature names, hyper-parameters, a
digest of the training rows, library version) into the profile folder, and for ``xgb`` each
member in XGBoost's own UBJSON format, which later XGBoost versions load. A random forest has no
such format and is refitted on load from ``layers.csv`` with the stored parameters and seeds
(a second or two). Loading checks the digest: a model trained on other rows is refitted, not
trusted. Nothing is pickled.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestRegressor

from latbench.errors import ProfileError, first_line
from latbench.jsonio import dump_json
from latbench.predictors.batch import CandidateBatch
from latbench.predictors.layer_features import FEATURE_NAMES, spec_features, table_features
from latbench.predictors.layer_sum import LayerLookup, LayerSumPredictor, OutOfProfileError, profile_layout_block
from latbench.profile import reference_factors

LEARNED = ("xgb", "rf")
ENSEMBLE = 4
#: fewest layer samples a regressor is trained on
MIN_LAYER_SAMPLES = 30
PARAMS: dict[str, dict[str, Any]] = {
    "xgb": {"n_estimators": 250, "max_depth": 5, "learning_rate": 0.08, "subsample": 0.8, "colsample_bytree": 0.8,
            "min_child_weight": 1.0},
    "rf": {"n_estimators": 150, "min_samples_leaf": 1, "max_features": 0.6},
}


def training_rows(layers, overhead_us: float) -> tuple[Any, np.ndarray]:
    """Layer samples a regressor learns from (reference rows dropped) and their log latency.

    Each row is brought to the reference layer's median machine state, and the engine's per-run
    overhead is removed as in the LUT.
    """
    corrected = layers["median_us"].to_numpy(dtype=float) * reference_factors(layers)
    keep = (layers["shape_key"] != "reference").to_numpy() & np.isfinite(corrected)
    core = np.maximum(corrected[keep] - overhead_us, 0.02 * corrected[keep])
    return layers[keep].reset_index(drop=True), np.log(core)


def rows_digest(rows, target: np.ndarray) -> str:
    """Digest of the training rows' keys and targets: a stored model matches its rows."""
    h = hashlib.sha256()
    h.update("\n".join(map(str, rows["key"])).encode())
    h.update(np.round(target, 6).tobytes())
    return h.hexdigest()[:16]


class _Member:
    """One fitted regressor; ``predict`` gives log latency (us) of feature rows."""

    def __init__(self, kind: str, seed: int) -> None:
        self.kind, self.seed = kind, seed
        self.model: Any = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> _Member:
        rng = np.random.default_rng(self.seed)
        idx = rng.integers(0, len(y), len(y))  # bootstrap resample: the members disagree where data is thin
        if self.kind == "xgb":
            import xgboost as xgb

            self.model = xgb.XGBRegressor(**PARAMS["xgb"], random_state=self.seed, n_jobs=1)
        else:
            self.model = RandomForestRegressor(**PARAMS["rf"], random_state=self.seed, n_jobs=1)
        self.model.fit(x[idx], y[idx])
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model.predict(x), dtype=np.float64)

    def save(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp.ubj")  # XGBoost picks the format by the suffix
        self.model.get_booster().save_model(str(tmp))
        tmp.replace(path)  # atomically: a run killed while saving leaves the previous file

    def load(self, path: Path) -> _Member:
        import xgboost as xgb

        self.model = xgb.XGBRegressor()
        self.model.load_model(str(path))
        return self


class LearnedPredictor(LayerSumPredictor):
    """Per-layer regressor (``xgb`` or ``rf``) summed over a network and calibrated on networks."""

    kind = ""  # set by each registered subclass

    def __init__(self, kind: str, overhead_us: float, step: int, layout_block: int | None = None) -> None:
        if kind not in LEARNED:
            raise ProfileError(f"unknown learned predictor {kind!r}; choose from {', '.join(LEARNED)}")
        super().__init__(layout_block)
        self.name = kind
        self.kind = kind
        self.overhead_us = overhead_us
        self.step = step
        self.members: list[_Member] = []
        self.ops: set[str] = set()
        self.digest = ""
        self.source = ""  # "stored" (loaded from the profile folder) or "trained"

    # --- training and storage ----------------------------------------------------------------
    @classmethod
    def from_profile(cls, meta: dict[str, Any], layers, folder: Path | None = None,
                     kind: str | None = None) -> LearnedPredictor:
        """Load the stored model when it matches the profile's layer samples, else train one
        (``kind`` defaults to the subclass's)."""
        kind = kind or cls.kind
        pred = cls(kind, float(meta.get("overhead_us", 0.0)), int(meta["plan"]["step"]), profile_layout_block(meta))
        rows, target = training_rows(layers, pred.overhead_us)
        if folder is not None and pred._load(folder, rows_digest(rows, target)):
            pred.ops = set(rows["op"])
        else:
            pred.train(rows, target)
        return pred

    def train(self, rows, target: np.ndarray) -> None:
        if len(rows) < MIN_LAYER_SAMPLES:
            raise ProfileError(f"the {self.kind} predictor needs at least {MIN_LAYER_SAMPLES} layer samples; "
                               f"the profile has {len(rows)}")
        x = table_features(rows)
        self.members = [_Member(self.kind, seed).fit(x, target) for seed in range(ENSEMBLE)]
        self.ops = set(rows["op"])
        self.digest = rows_digest(rows, target)
        self.source = "trained"

    def save(self, folder: Path) -> Path:
        """Write the model into ``folder/predictors``; returns the metadata file."""
        out = Path(folder) / "predictors"
        out.mkdir(exist_ok=True)
        library, module = ("xgboost", "xgboost") if self.kind == "xgb" else ("scikit-learn", "sklearn")
        files = []
        if self.kind == "xgb":
            for i, m in enumerate(self.members):
                files.append(f"{self.kind}-{i}.ubj")
                m.save(out / files[-1])
        meta = {"kind": self.kind, "features": list(FEATURE_NAMES), "params": PARAMS[self.kind],
                "seeds": [m.seed for m in self.members], "rows_digest": self.digest,
                "library": library, "library_version": importlib.import_module(module).__version__, "files": files}
        path = out / f"{self.kind}.json"
        dump_json(meta, path)
        return path

    def _load(self, folder: Path, digest: str) -> bool:
        """Members from ``folder/predictors`` if stored for these rows and features (xgb only)."""
        path = Path(folder) / "predictors" / f"{self.kind}.json"
        if self.kind != "xgb" or not path.exists():
            return False
        try:
            meta = json.loads(path.read_text())
            if meta.get("rows_digest") != digest or meta.get("features") != list(FEATURE_NAMES):
                return False
            self.members = [_Member(self.kind, seed).load(path.parent / name)
                            for seed, name in zip(meta["seeds"], meta["files"], strict=True)]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ProfileError(f"corrupt stored {self.kind} model in {path.parent}: {first_line(exc, 200)}") from None
        self.digest = digest
        self.source = "stored"
        return True

    # --- lookup ------------------------------------------------------------------------------
    def log_estimates(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble mean and spread of log latency (us, overhead removed) for feature rows ``x``."""
        logs = np.stack([m.predict(x) for m in self.members])
        return logs.mean(axis=0), logs.std(axis=0)

    def layer_latency(self, batch: CandidateBatch) -> LayerLookup:
        """Per candidate and layer: ensemble mean latency and spread (us), off-layout flags."""
        layers = batch.base.layers
        missing = sorted({layer.spec.op for layer in layers} - self.ops)
        if missing:
            used = [layer.name for layer in layers if layer.spec.op in missing]
            raise OutOfProfileError(f"{batch.base.name}: the profile has no layer samples of op "
                                    f"{', '.join(missing)} (used by {', '.join(used[:4])})")
        n, n_layers = batch.cin.shape
        blocks, inverse = [], []
        for j, layer in enumerate(layers):
            pairs = batch.cin[:, j] * (1 << 20) + batch.cout[:, j]
            unique, inv = np.unique(pairs, return_inverse=True)
            blocks.append(spec_features(layer.spec, unique >> 20, unique & ((1 << 20) - 1)))
            inverse.append(inv)
        log_mean, log_spread = self.log_estimates(np.concatenate(blocks))
        mean = np.exp(log_mean)
        spread_us = mean * log_spread
        lat, unc = np.empty((n, n_layers)), np.empty((n, n_layers))
        pos = 0
        for j, (block, inv) in enumerate(zip(blocks, inverse, strict=True)):
            lat[:, j] = mean[pos:pos + len(block)][inv]
            unc[:, j] = spread_us[pos:pos + len(block)][inv]
            pos += len(block)
        off = np.zeros((n, n_layers), dtype=bool)
        if self.layout_block:
            convs = np.array([layer.spec.op in ("conv", "dwconv") for layer in layers])
            off = convs & (batch.cin % self.layout_block != 0) & (batch.cin > self.layout_block)
        return LayerLookup(lat * batch.active, unc * batch.active, np.zeros((n, n_layers), dtype=bool),
                           off & batch.active)


class XgbPredictor(LearnedPredictor):
    """Per-layer XGBoost ensemble (stored in XGBoost's own format in the profile)."""

    kind = "xgb"

    def __init__(self, kind: str = "xgb", overhead_us: float = 0.0, step: int = 16,
                 layout_block: int | None = None) -> None:
        super().__init__(kind, overhead_us, step, layout_block)


class RandomForestPredictor(LearnedPredictor):
    """Per-layer scikit-learn random forest (refitted from ``layers.csv`` on load)."""

    kind = "rf"

    def __init__(self, kind: str = "rf", overhead_us: float = 0.0, step: int = 16,
                 layout_block: int | None = None) -> None:
        super().__init__(kind, overhead_us, step, layout_block)
