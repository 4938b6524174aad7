"""The measurement pool on a real local Ray cluster: same decisions as measuring here, jobs spread over the
actors, a dead actor's job run elsewhere or reported, never dropped.

Timings come from a deterministic fake backend (``fakes.ParamClockBackend``), so that measuring here and
through the pool must give identical numbers: what is tested is the carrying, not the engine."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import torch
from fakes import FakePredictor, FakeProfile, ParamClockBackend
from nets import seeded, with_groups
from torch.utils.data import DataLoader, TensorDataset

from latbench.fleet import PoolError, device_resource
from latbench.measure import MeasureSettings
from latbench.measure.jobs import JobRunner, MeasureJob
from pruners.baselines import search_knob, uniform_decision
from pruners.hilp import hilp
from pruners.importance import score
from pruners.method import Problem
from pruners.oracle import LatencyOracle
from pruners.surgery import apply
from pruners.train import TrainConfig

ray = pytest.importorskip("ray")

EXAMPLE = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
PROFILE = "fake-profile"
RESOURCE = device_resource(PROFILE)
SETTINGS = MeasureSettings(target_rel_ci=0.02, budget_s=1.0)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster with two units of the fake profile's device resource; workers import the tests'
    fakes."""
    path = os.pathsep.join([str(Path(__file__).parent), *sys.path])
    ray.init(num_cpus=2, resources={RESOURCE: 2}, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


def pool(backend, actors=2):
    from latbench.fleet.pool import RayPool

    return RayPool(backend, RESOURCE, actors=actors)


def oracle(model, arch, backend, with_pool=None):
    profile = FakeProfile({"lut": FakePredictor(const_us=20.0, us_per_mflop=2.0)}, backend=backend,
                          backend_name=backend.name, name=PROFILE)
    return LatencyOracle(profile, model, arch, EXAMPLE, mode="measure", settings=SETTINGS, pool=with_pool)


def resnet20():
    return with_groups(seeded("resnet20"), EXAMPLE, "resnet20")


def data():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=32)


def jobs(model, arch, groups, ratios):
    scores = score(model, groups, "l1")
    candidates = {f"keep{r}": apply(model, arch, uniform_decision(groups, scores, r), EXAMPLE)[0] for r in ratios}
    return [MeasureJob("ref", model, EXAMPLE, {k: m}, SETTINGS) for k, m in candidates.items()], candidates


def test_a_job_gives_each_candidate_its_latency_over_the_reference():
    model, arch, groups = resnet20()
    backend = ParamClockBackend()
    [job], candidates = jobs(model, arch, groups, [0.5])
    result = JobRunner(backend).run(job)
    expected = backend.latency_us(candidates["keep0.5"]) / backend.latency_us(model)
    ratio, low, high = result.ratios["keep0.5"]
    assert ratio == pytest.approx(expected) and low == pytest.approx(expected) and high == pytest.approx(expected)
    assert result.reference_us == pytest.approx(backend.latency_us(model))


def test_hilp_decides_the_same_through_a_pool_as_here_and_spreads_each_step(cluster, tmp_path):
    model, arch, groups = resnet20()
    backend, loader = ParamClockBackend(), data()

    def run(with_pool, out):
        o = oracle(model, arch, backend, with_pool)
        problem = Problem(model, arch, groups, EXAMPLE, o, 0.93, "latency", loader, loader, TrainConfig(epochs=0),
                          out=out, bn_images=32)
        return hilp(problem, prefilter=3, accuracy_batches=1), o

    here, here_oracle = run(None, tmp_path / "here")
    assert len(here.history) >= 2
    measurements = pool(backend)
    pooled, pooled_oracle = run(measurements, tmp_path / "pool")
    assert pooled.decision.arch(arch).signature() == here.decision.arch(arch).signature()
    assert [s["chosen"] for s in pooled.history] == [s["chosen"] for s in here.history]
    assert [s["measured_ratio"] for s in pooled.history] == pytest.approx([s["measured_ratio"] for s in here.history])
    assert pooled_oracle.counts.measurements == here_oracle.counts.measurements == 3 * len(here.history)
    ran = measurements.describe()["jobs_by_actor"]  # 3 candidates a step: jobs of 2 and 1, one per actor
    assert ran == {f"{RESOURCE}#0": len(here.history), f"{RESOURCE}#1": len(here.history)}
    measurements.shutdown()


def test_the_targeting_loop_lands_on_the_same_knob_through_a_pool(cluster):
    model, arch, groups = resnet20()
    backend = ParamClockBackend(const_us=100.0)  # far from the predictor's: the loop corrects several times
    scores = score(model, groups, "l1")

    def run(with_pool):
        o = oracle(model, arch, backend, with_pool)
        return search_knob(lambda r: uniform_decision(groups, scores, r), arch, o, 0.6, "latency",
                           lambda d: apply(model, arch, d, EXAMPLE, check_arch=False)[0], knob_range=(0.1, 1.0),
                           grid=46)

    here = run(None)
    measurements = pool(backend)
    pooled = run(measurements)
    assert pooled.knob == here.knob
    measured = [h for h in here.history if "measured" in h]
    assert len(measured) >= 2
    assert [h["knob"] for h in pooled.history if "measured" in h] == [h["knob"] for h in measured]
    pooled_measured = [h["measured"] for h in pooled.history if "measured" in h]
    assert pooled_measured == pytest.approx([h["measured"] for h in measured])
    measurements.shutdown()


def test_a_job_whose_actor_dies_runs_on_another_and_nothing_is_dropped(cluster, tmp_path):
    model, arch, groups = resnet20()
    crash = tmp_path / "crashed"
    backend = ParamClockBackend(crash_once=str(crash))  # the first deploy kills its actor
    todo, _ = jobs(model, arch, groups, [0.3, 0.5, 0.7, 0.9])
    measurements = pool(backend)
    results = measurements.measure(todo)
    assert crash.exists() and measurements.retried == 1 and len(measurements) == 1
    expected = [JobRunner(ParamClockBackend()).run(j).ratios for j in todo]
    assert [r.ratios for r in results] == expected
    # the last actor killed too: the unmeasured candidates are named, not dropped
    ray.kill(measurements.actors[0])
    with pytest.raises(PoolError, match=r"keep0\.3, keep0\.5"):
        measurements.measure(todo[:2])


def test_a_pool_without_devices_of_its_kind_is_refused_in_one_line(cluster, monkeypatch):
    from latbench.fleet import pool as pool_module
    from latbench.fleet.pool import RayPool

    monkeypatch.setattr(pool_module, "FREE_WAIT_S", 1.0)
    with pytest.raises(PoolError, match="advertises 'latbench-device:other'"):
        RayPool(ParamClockBackend(), device_resource("other"))
    with pytest.raises(PoolError, match="3 actors asked for, but the cluster has 2"):
        pool(ParamClockBackend(), actors=3)
    holding = pool(ParamClockBackend(), actors=1)
    with pytest.raises(PoolError, match=r"only 1 of the cluster's 2 .* are free"):
        pool(ParamClockBackend(), actors=2)
    holding.shutdown()
    deadline = time.monotonic() + 10  # the device comes back to the cluster
    while ray.available_resources().get(RESOURCE, 0) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get(RESOURCE, 0) == 2


def test_nothing_but_the_fleet_imports_ray():
    import subprocess

    code = ("import sys, latbench.cli, pruners.cli, pruners.prune, pruners.oracle, latbench.fleet, "
            "latbench.fleet.pool; print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_pool_without_ray_installed_says_how_to_install_it(monkeypatch):
    from latbench.fleet.pool import RayPool

    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(PoolError, match=r"pip install 'latbench\[ray\]'"):
        RayPool(ParamClockBackend(), RESOURCE)


def test_prune_on_a_cluster_without_the_profiles_devices_is_one_line(cluster, capsys, shipped_profile, tmp_path):
    from test_cli import assert_one_line_error, run

    code, _, err = run(capsys, "prune", "uniform", "--model", "resnet20", "--weights", str(tmp_path / "w.pt"),
                       "--profile", str(shipped_profile()), "--latency-target", "0.7", "--out", str(tmp_path / "run"),
                       "--ray", "auto")
    assert_one_line_error(code, err, "latbench-device:amd-epyc-1t-onnxruntime-fp32-bs1")



class RecordingPool:
    """Runs a pool's jobs here, one after the other, and keeps them."""

    def __init__(self, backend, actors: int) -> None:
        self.runner, self.actors, self.jobs = JobRunner(backend), actors, []

    def __len__(self) -> int:
        return self.actors

    def measure(self, jobs):
        self.jobs.extend(jobs)
        return [self.runner.run(j) for j in jobs]

    def describe(self):
        return {"actors": self.actors}


def test_a_call_is_dealt_over_the_actors_with_the_budget_shared_by_networks():
    model, arch, groups = resnet20()
    backend = ParamClockBackend()
    scores = score(model, groups, "l1")
    built = [apply(model, arch, uniform_decision(groups, scores, r), EXAMPLE) for r in (0.3, 0.5, 0.7)]
    pooled = RecordingPool(backend, actors=2)
    o = oracle(model, arch, backend, pooled)
    found = o.measure_many(built)
    # 3 candidates on 2 actors: jobs of 2 and 1, each with its own reference; budgets 3/4 and 2/4 of one job's
    assert [len(j.candidates) for j in pooled.jobs] == [2, 1]
    assert [j.settings.budget_s for j in pooled.jobs] == pytest.approx([SETTINGS.budget_s * 3 / 4,
                                                                        SETTINGS.budget_s * 2 / 4])
    expected = [backend.latency_us(m) / backend.latency_us(model) for m, _ in built]
    assert [e.ratio for e in found] == pytest.approx(expected)
    assert o.counts.measurements == 3
