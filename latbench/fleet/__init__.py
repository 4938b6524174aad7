"""Scaling measurement out over Ray: a pool of devices of one kind, and profiling a fleet of devices.

A latency measurement must own its device (two on one device corrupt each other), so measurement gets
faster only with more devices. Each device is advertised to Ray as a custom resource, one unit per
device, e.g. ``ray start --resources '{"latbench-device:<profile name>": 1}'``, and gets one actor that
measures one job at a time. Ray is an optional extra (``pip install latbench[ray]``) imported only
here, when a pool or a fleet run is made.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from latbench.errors import LatbenchError

#: the custom resource a node advertises per device: RESOURCE_PREFIX + profile name
RESOURCE_PREFIX = "latbench-device:"
#: the resource a node advertises per device for fleet profiling (any profile)
FLEET_RESOURCE = "latbench-device"


class PoolError(LatbenchError):
    """A measurement pool that cannot start, or a measurement no device of the pool could finish."""


def device_resource(profile_name: str) -> str:
    """The Ray resource a device that measures for profile ``profile_name`` advertises."""
    return f"{RESOURCE_PREFIX}{profile_name}"


def connect(address: str | None = None) -> Any:
    """The ``ray`` module, joined to the cluster at ``address`` unless this process already is (``"auto"``:
    the cluster this machine belongs to; ``None``: a new local one)."""
    try:
        ray = import_module("ray")
    except ImportError:
        raise PoolError("Ray is not installed: pip install 'latbench[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    return ray
