"""Latency predictors read a device profile and answer in microseconds, without building modules.

Every predictor follows ``Predictor`` (``protocol.py``) and is registered here by name; the
command line's choices come from this registry. Adding one is a class with ``from_profile``,
``fit``, ``predict`` and ``predict_many``, and one ``register_predictor`` call.
"""

from latbench.errors import InvalidValueError, ProfileError
from latbench.predictors.flops import FlopsPredictor
from latbench.predictors.layer_sum import LayerSumPredictor, OutOfProfileError
from latbench.predictors.learned import LearnedPredictor, RandomForestPredictor, XgbPredictor
from latbench.predictors.lut import LutPredictor
from latbench.predictors.metrics import accuracy, spearman
from latbench.predictors.protocol import Prediction, Predictor
from latbench.predictors.rescaled import Rescaled

#: every predictor kind by name, in the order reports list them
PREDICTORS: dict[str, type[Predictor]] = {
    "lut": LutPredictor,
    "xgb": XgbPredictor,
    "rf": RandomForestPredictor,
    "flops": FlopsPredictor,
}


def register_predictor(name: str, cls: type[Predictor]) -> None:
    """Add a predictor kind (a class following ``Predictor``) under ``name``."""
    if not isinstance(name, str) or not name or name == "all":
        raise InvalidValueError(f"a predictor needs a name other than {name!r}")
    PREDICTORS[name] = cls


def layer_sum_kinds() -> list[str]:
    """Kinds that sum per-layer latencies (the ones with a per-layer breakdown and layer tables)."""
    return [k for k, cls in PREDICTORS.items() if issubclass(cls, LayerSumPredictor)]


def build_predictor(kind: str, meta: dict, layers, folder=None) -> Predictor:
    """An uncalibrated predictor of ``kind`` from a profile's metadata and layer samples
    (``folder``: where a stored model may be loaded from)."""
    if kind not in PREDICTORS:
        raise ProfileError(f"unknown predictor {kind!r}; choose from {', '.join(PREDICTORS)}")
    return PREDICTORS[kind].from_profile(meta, layers, folder)


__all__ = [
    "PREDICTORS",
    "FlopsPredictor",
    "LayerSumPredictor",
    "LearnedPredictor",
    "LutPredictor",
    "OutOfProfileError",
    "Prediction",
    "Predictor",
    "RandomForestPredictor",
    "Rescaled",
    "XgbPredictor",
    "accuracy",
    "build_predictor",
    "layer_sum_kinds",
    "register_predictor",
    "spearman",
]
