"""latbench: measure, model and predict the latency of neural networks on real deployment engines."""

from latbench.errors import LatbenchError
from latbench.measure import Measurement, MeasureSettings, compare, measure

__version__ = "0.1.0"

__all__ = ["LatbenchError", "MeasureSettings", "Measurement", "__version__", "compare", "measure"]
