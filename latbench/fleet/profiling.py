"""Profile a fleet of devices at once: one profiling run on every node of a Ray cluster that advertises
``latbench-device``, each profile folder sent back and written under the caller's profile root.

Each node profiles its own device with the same settings (``latbench.profiler.run.profile_device``,
into a temporary folder there), and returns the folder packed as a tar archive; the caller unpacks it
(data members only) next to its destination and renames it into place, so a half-written profile is
never left behind. A node that fails is reported with its error; the others' profiles are kept.
"""

from __future__ import annotations

import io
import socket
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latbench.fleet import FLEET_RESOURCE, PoolError, connect
from latbench.profiler.run import ProfileSettings, profile_device


@dataclass(frozen=True)
class NodeProfile:
    """One node's outcome: the folder written here, or the one-line error it raised."""

    node: str
    host: str
    folder: Path | None = None
    error: str | None = None


def profile_here(settings: ProfileSettings) -> tuple[str, str, bytes]:
    """Run on a node: profile its device into a temporary folder; (folder name, host name, tar.gz bytes)."""
    with tempfile.TemporaryDirectory(prefix="latbench-fleet-") as tmp:
        folder = profile_device(settings, root=tmp, progress=False)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            tar.add(folder, arcname=folder.name)
        return folder.name, socket.gethostname(), buffer.getvalue()


def unpack(name: str, packed: bytes, root: Path, suffix: str) -> Path:
    """Write a packed profile folder under ``root`` as ``name`` (``name-suffix`` if that exists), atomically."""
    root.mkdir(parents=True, exist_ok=True)
    dest = root / name
    if dest.exists():
        dest = root / f"{name}-{suffix}"
    if dest.exists():
        raise PoolError(f"{dest} exists already; move it away or profile into another root")
    with tempfile.TemporaryDirectory(dir=root, prefix=".fleet-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as tar:
            tar.extractall(tmp, filter="data")
        (Path(tmp) / name).rename(dest)
    return dest


def fleet_nodes(ray: Any, only: list[str] | None = None) -> list[dict[str, Any]]:
    """Live nodes advertising ``latbench-device`` (those whose id or host name starts with one of ``only``)."""
    nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get(FLEET_RESOURCE, 0) >= 1]
    if only:
        nodes = [n for n in nodes if any(n["NodeID"].startswith(o) or n.get("NodeManagerHostname", "").startswith(o)
                                         for o in only)]
    if not nodes:
        which = f" matching {', '.join(only)}" if only else ""
        raise PoolError(f"no live node{which} advertises {FLEET_RESOURCE!r}; start each device's node with "
                        f"ray start --resources '{{\"{FLEET_RESOURCE}\": 1}}'")
    return nodes


def profile_fleet(settings: ProfileSettings, address: str | None = None, root: str | Path = "device_profiles",
                  only: list[str] | None = None,
                  on_done: Callable[[NodeProfile], None] | None = None) -> list[NodeProfile]:
    """Profile every fleet node's device with ``settings``; each profile is written under ``root``."""
    ray = connect(address)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    task = ray.remote(num_cpus=0, resources={FLEET_RESOURCE: 1}, max_retries=0)(profile_here)
    running = {}
    for node in fleet_nodes(ray, only):
        strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        running[task.options(scheduling_strategy=strategy).remote(settings)] = node
    outcomes = []
    while running:
        done, _ = ray.wait(list(running), num_returns=1)
        node = running.pop(done[0])
        node_id, host = node["NodeID"], node.get("NodeManagerHostname", "?")
        try:
            name, host, packed = ray.get(done[0])
            outcome = NodeProfile(node_id, host, folder=unpack(name, packed, Path(root), host))
        except (ray.exceptions.RayError, PoolError) as exc:
            cause = exc.as_instanceof_cause() if isinstance(exc, ray.exceptions.RayTaskError) else exc
            outcome = NodeProfile(node_id, host, error=str(cause).strip().splitlines()[-1][:300])
        outcomes.append(outcome)
        if on_done is not None:
            on_done(outcome)
    return outcomes
