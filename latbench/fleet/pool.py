"""A measurement pool on Ray: one actor per device of a kind, each running one job at a time.

``RayPool.measure(jobs)`` hands each job to an idle actor and the next job to whichever finishes first.
A job whose actor dies (the node went away, the process was killed) goes back to the queue and runs on
another live actor, at most ``retries`` more times; when no actor is left, or a job has failed that
often, a ``PoolError`` names the candidates that were not measured: a job is never dropped silently.
An error raised by the measurement itself (a network the engine refuses) is raised as it is.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from latbench.fleet import PoolError, connect, device_resource
from latbench.measure.jobs import JobResult, JobRunner, MeasureJob

#: seconds a new pool waits for devices another pool has just released
FREE_WAIT_S = 10.0


class _Worker:
    """The actor's body: a ``JobRunner`` on the device this actor owns."""

    def __init__(self, backend: Any, name: str) -> None:
        self.runner = JobRunner(backend, name)

    def run(self, job: MeasureJob) -> JobResult:
        return self.runner.run(job)

    def ping(self) -> str:
        return self.runner.name


class RayPool:
    """``actors`` actors (default: one per unit of ``resource`` in the cluster), each holding one unit.

    ``backend`` is the backend every actor deploys on (the profile's, configured alike); ``address`` is
    a Ray cluster to join (``"auto"``: the one this machine belongs to; ``None``: the running one, else a
    new local one)."""

    def __init__(self, backend: Any, resource: str, actors: int | None = None, address: str | None = None,
                 retries: int = 2) -> None:
        self.ray = connect(address)
        available = int(self.ray.cluster_resources().get(resource, 0))
        if available < 1:
            raise PoolError(f"no node of the Ray cluster advertises {resource!r}; start one device's node with "
                            f"ray start --resources '{{\"{resource}\": 1}}'")
        count = available if actors is None else actors
        if not 1 <= count <= available:
            raise PoolError(f"{count} actors asked for, but the cluster has {available} of {resource!r}")
        deadline = time.monotonic() + FREE_WAIT_S  # units a shut-down pool held come back after a moment
        while (free := int(self.ray.available_resources().get(resource, 0))) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        if count > free:
            raise PoolError(f"{count} actors asked for, but only {free} of the cluster's {available} {resource!r} "
                            f"are free (another pool holds the others; shut it down first)")
        self.resource, self.retries = resource, retries
        remote = self.ray.remote(num_cpus=0, resources={resource: 1}, max_restarts=0)(_Worker)
        self._actors = [remote.remote(backend, f"{resource}#{i}") for i in range(count)]
        self._live = list(self._actors)
        self.retried = 0  # jobs run again after their actor died
        self.jobs_by_actor: dict[str, int] = {}
        self.ray.get([a.ping.remote() for a in self._actors])  # every actor placed and started

    @classmethod
    def for_profile(cls, profile: Any, actors: int | None = None, address: str | None = None,
                    retries: int = 2) -> RayPool:
        """A pool of the devices that advertise ``profile``'s resource, measuring on its backend."""
        return cls(profile.backend(require=False), device_resource(profile.name), actors, address, retries)

    def __len__(self) -> int:
        return len(self._live)

    @property
    def actors(self) -> list[Any]:
        return list(self._live)

    def measure(self, jobs: list[MeasureJob]) -> list[JobResult]:
        """Every job's result, in order; jobs run in parallel, one per actor at a time."""
        ray = self.ray
        results: list[JobResult | None] = [None] * len(jobs)
        queue, attempts = deque(range(len(jobs))), [0] * len(jobs)
        running: dict[Any, tuple[int, Any]] = {}
        idle = deque(self._live)
        while queue or running:
            if not self._live:
                lost = [k for i in [*queue, *(i for i, _ in running.values())] for k in jobs[i].keys]
                raise PoolError(f"every actor of {self.resource!r} is gone; not measured: {', '.join(lost)}")
            while queue and idle:
                i, actor = queue.popleft(), idle.popleft()
                attempts[i] += 1
                running[actor.run.remote(jobs[i])] = (i, actor)
            done, _ = ray.wait(list(running), num_returns=1)
            i, actor = running.pop(done[0])
            try:
                result = results[i] = ray.get(done[0])
                self.jobs_by_actor[result.worker] = self.jobs_by_actor.get(result.worker, 0) + 1
                idle.append(actor)
            except ray.exceptions.RayActorError:
                self._live = [a for a in self._live if a is not actor]
                idle = deque(a for a in idle if a is not actor)
                if attempts[i] > self.retries:
                    raise PoolError(f"measuring {', '.join(jobs[i].keys)} failed {attempts[i]} times: its "
                                    f"actors died") from None
                self.retried += 1
                queue.appendleft(i)
            except ray.exceptions.RayTaskError as exc:
                raise exc.as_instanceof_cause() from None
        return [r for r in results if r is not None]

    def shutdown(self) -> None:
        """Stop the pool's actors (the cluster stays)."""
        for actor in self._live:
            self.ray.kill(actor)
        self._live = []

    def describe(self) -> dict[str, Any]:
        return {"resource": self.resource, "actors": len(self._actors), "live": len(self._live),
                "retried": self.retried, "jobs_by_actor": dict(self.jobs_by_actor)}
