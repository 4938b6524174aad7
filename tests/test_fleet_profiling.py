"""Fleet profiling on a real local Ray cluster whose one node advertises a device: its profile comes back
whole, and a cluster without such nodes is refused in one line."""

from __future__ import annotations

import json

import pytest
from test_cli import assert_one_line_error, run

from latbench.fleet import FLEET_RESOURCE
from latbench.fleet.profiling import profile_fleet
from latbench.profiler.run import ProfileSettings

ray = pytest.importorskip("ray")


def test_fleet_profiling_writes_each_nodes_profile_back_and_refuses_a_cluster_without_devices(capsys, tmp_path):
    settings = ProfileSettings(families=["smallconv"], threads=1, budget_min=0.2, networks_per_family=4,
                               min_networks_per_family=4, passes=1, step=16, refine=False, network_seconds=4)
    ray.init(num_cpus=2, resources={FLEET_RESOURCE: 1}, include_dashboard=False, log_to_driver=False)
    try:
        [outcome] = profile_fleet(settings, root=tmp_path / "profiles")
        assert outcome.error is None and outcome.folder.parent == tmp_path / "profiles"
        meta = json.loads((outcome.folder / "profile.json").read_text())
        assert meta["status"] == "complete" and meta["settings"]["families"] == ["smallconv"]
        assert (outcome.folder / "layers.csv").exists() and (outcome.folder / "models.csv").exists()
        assert not [p for p in (tmp_path / "profiles").iterdir() if p.name.startswith(".")]  # no leftovers
        code, _, err = run(capsys, "profile", "--models", "smallconv", "--ray", "auto", "--ray-nodes", "nosuchnode")
        assert_one_line_error(code, err, "no live node matching nosuchnode advertises 'latbench-device'")
    finally:
        ray.shutdown()
