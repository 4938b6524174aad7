"""Errors of the pruning front-end: one line each, reported by the command line with exit code 2."""

from __future__ import annotations

from latbench.errors import LatbenchError


class PruningError(LatbenchError):
    """A pruning decision, target or input that cannot be honoured (says why)."""


class SurgeryError(PruningError):
    """Channel or block surgery that would break the network, or whose result does not match its decision."""


class DatasetError(PruningError):
    """A dataset folder that is missing, incomplete or corrupt (names the expected files)."""


class CheckpointError(PruningError):
    """Weights or a checkpoint that cannot be loaded into the model they are meant for."""
