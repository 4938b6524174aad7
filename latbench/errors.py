"""User-facing errors: each one reads as a single line that names the problem."""

from __future__ import annotations


class LatbenchError(Exception):
    """Base class for errors the command line reports as one line with exit code 2."""


class UnknownBackendError(LatbenchError):
    """A backend name that is not registered."""


class BackendUnavailableError(LatbenchError):
    """A registered backend that cannot run on this machine (says what is missing)."""


class InputShapeError(LatbenchError):
    """A malformed or inconsistent input shape."""


class ModelLoadError(LatbenchError):
    """An ONNX file or model that cannot be read."""


class ExportError(LatbenchError):
    """A network that cannot be exported to the deployment format."""


class UsageError(LatbenchError):
    """A command-line option with a value out of its range."""


class InvalidValueError(LatbenchError, ValueError):
    """A value out of its range or of the wrong kind, given to the Python API (still a ``ValueError``
    for callers that catch one; one line with exit code 2 on the command line)."""


class OutputError(LatbenchError):
    """A result file that cannot be written."""


class ResizeError(LatbenchError):
    """A network that cannot be built at the widths asked for, or whose rebuilt trace differs from them."""


class UnknownModelError(LatbenchError):
    """A model name that is not in the registry."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception message, shortened to ``limit`` characters."""
    text = str(exc).strip() or type(exc).__name__
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), text)
    return line if len(line) <= limit else line[: limit - 3] + "..."


class ProfileError(LatbenchError):
    """A device profile that is missing, corrupt, or not for this machine."""
