"""The device-profile format, in one place: what the files under ``device_profiles/<name>/`` hold.

- ``meta``: ``profile.json`` (schema, fingerprint, settings, plan, timings, calibration,
  validation) as a typed record with one reader and one writer;
- ``tables``: the columns of ``layers.csv`` and ``models.csv``, a layer spec as CSV cells and
  back, and the validated reader of both files;
- ``keys``: the identity of a layer sample and of its lookup grid;
- ``grid``: the lookup grids of the sampling plan;
- ``state``: the machine state the samples were measured in (reference layer, family anchors),
  and how rows measured at different times are brought to one state;
- ``integrity``: the digests that tie a profile's files together.

(The families themselves, zoo names, factories or ONNX files, are ``latbench.models.family``.)

The profiler writes this format, ``DeviceProfile`` and the predictors read it; none of them is
needed to read or write it.
"""

from latbench.profile.grid import Grid, has_blocked_layout
from latbench.profile.keys import shape_key, spec_key, with_channels
from latbench.profile.meta import SCHEMA, ProfileMeta, new_meta, read_meta, write_meta
from latbench.profile.state import anchor_latencies, normalised_network_latency, reference_factors, reference_us
from latbench.profile.tables import (
    LAYER_COLUMNS,
    MEASURE_COLUMNS,
    MODEL_COLUMNS,
    SPEC_COLUMNS,
    parse_pair,
    read_table,
    row_to_spec,
    spec_to_row,
)

__all__ = [
    "LAYER_COLUMNS",
    "MEASURE_COLUMNS",
    "MODEL_COLUMNS",
    "SCHEMA",
    "SPEC_COLUMNS",
    "Grid",
    "ProfileMeta",
    "anchor_latencies",
    "has_blocked_layout",
    "new_meta",
    "normalised_network_latency",
    "parse_pair",
    "read_meta",
    "read_table",
    "reference_factors",
    "reference_us",
    "row_to_spec",
    "shape_key",
    "spec_key",
    "spec_to_row",
    "with_channels",
    "write_meta",
]
