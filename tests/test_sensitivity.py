"""The sensitivity analysis: its tables against known truths, its report against its tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from latbench.arch import trace
from latbench.device_profile import DeviceProfile
from latbench.models import build_candidate, build_model
from latbench.sensitivity import measure_sensitivity, proportion, rank_groups, sensitivity, staircase_curves
from latbench.sensitivity.report import agreement, write_report
from latbench.sensitivity.staircase import key_layers, sweep_widths

PROFILE = Path(__file__).parent.parent / "device_profiles" / "amd-epyc-1t-onnxruntime-fp32-bs1"


@pytest.fixture(scope="module")
def shipped():
    return DeviceProfile.load(PROFILE, check_fingerprint=False)


@pytest.fixture(scope="module")
def resnet56(shipped):
    return shipped.family_archs["resnet56"]


class GroupCost:
    """A predictor whose network latency is ``sum over groups of cost_g * width_g``: a known truth."""

    def __init__(self, arch, seed: int = 0) -> None:
        self.cost = np.random.default_rng(seed).uniform(0.5, 3.0, len(arch.width_tuple))

    def predict_many(self, archs):
        lat = np.array([np.dot(self.cost, a.width_tuple) for a in archs])
        return lat, np.full(len(archs), 0.05)


def test_sensitivity_of_a_linear_cost_is_each_groups_share_of_it(resnet56):
    pred = GroupCost(resnet56)
    table = sensitivity(resnet56, pred)
    full = float(np.dot(pred.cost, resnet56.width_tuple))
    expected = pred.cost[table["group"]] * table["channels"] / full  # removing all of g saves cost_g * C_g
    np.testing.assert_allclose(table["sensitivity"], expected, rtol=1e-9)
    np.testing.assert_allclose(table["saved_us"], pred.cost[table["group"]] * (table["channels"] - table["kept"]))
    assert set(table["group"]) == {g.id for g in resnet56.prunable_groups}
    assert (table["kept"] < table["channels"]).all() and table["ratio"].between(0.1, 0.9).all()
    ranking = rank_groups(table)
    assert ranking["sensitivity"].is_monotonic_decreasing and ranking["ratio"].eq(0.5).all()
    best = int(np.argmax([pred.cost[g.id] * g.channels for g in resnet56.prunable_groups]))
    assert ranking["group"].iloc[0] == resnet56.prunable_groups[best].id


def test_predicted_sensitivity_on_the_shipped_profile_grows_as_more_is_removed(shipped, resnet56):
    table = sensitivity(resnet56, shipped.predictor("lut"), ratios=(0.75, 0.5, 0.25))
    saved = table.pivot(index="group", columns="ratio", values="saved_us")
    assert (saved[0.25] >= saved[0.75] - 1e-6).mean() > 0.9  # pruning more rarely costs time
    stage = table[table["channels"] == 64].groupby("group")["saved_share"].max()
    assert stage.max() > 0.05  # a residual stage group feeds many layers


def test_proportion_shares_sum_to_one_and_flags_follow_their_definition(shipped, resnet56):
    table = proportion(resnet56, shipped.predictor("lut"))
    assert table["flops_share"].sum() == pytest.approx(1.0) and table["predicted_share"].sum() == pytest.approx(1.0)
    assert len(table) == len(resnet56.active_layers())
    heavy = table[table["flag"] == "latency-heavy"]
    assert (heavy["predicted_share"] >= 2 * heavy["flops_share"]).all() and (heavy["predicted_share"] >= 0.01).all()
    light = table[table["flag"] == "latency-light"]
    assert (light["predicted_share"] * 2 <= light["flops_share"]).all()
    assert (table[table["op"] == "add"]["latency_to_flops"] == np.inf).all()


class FakeRunnable:
    """Stands in for a deployed network: per-layer times as an engine profiler reports them."""

    def __init__(self, times: dict[str, float]) -> None:
        self.times = times

    def layer_times(self, runs: int = 20):
        return pd.DataFrame({"layer": list(self.times), "time_us": list(self.times.values())})


def test_measured_shares_come_from_the_engine_profiler_and_drive_the_flags(shipped, resnet56):
    names = [layer.name for layer in resnet56.active_layers()]
    times = dict.fromkeys(names, 1.0)
    times[names[-1]] = 500.0  # the classifier, made slow by the engine
    times[""] = 100.0  # a layout reorder with no source module
    table = proportion(resnet56, shipped.predictor("lut"), FakeRunnable(times))
    total = sum(times.values())
    row = table.set_index("name").loc[names[-1]]
    assert row["measured_share"] == pytest.approx(500.0 / total) and row["flag"] == "latency-heavy"
    assert table["measured_share"].sum() == pytest.approx((total - 100.0) / total)


def test_staircase_sweeps_and_the_luts_blocks(shipped, resnet56):
    assert sweep_widths(64, 1) == list(range(1, 65))
    widths = sweep_widths(1280, max_points=64)
    assert widths[0] == 1 and len(widths) == 64 and widths[-48:] == list(range(1233, 1281))
    assert sweep_widths(40, step=8) == [1, 8, 16, 24, 32, 40]
    layers = key_layers(resnet56, shipped.predictor("lut"), 3)
    assert len(layers) == 3 and len(set(layers)) == 3
    curves = staircase_curves(resnet56, layers, predictor=shipped.predictor("lut"))
    step = int(shipped.meta["plan"]["step"])
    for _, c in curves.groupby("layer"):
        assert list(c["out_channels"]) == list(range(1, c["full_channels"].iloc[0] + 1))
        assert c["measured_us"].isna().all() and (c["predicted_us"] > 0).all()
        inner = c[(c["out_channels"] > step) & (c["out_channels"] % step != 0)]  # rounded up to its block
        block_end = {int(np.ceil(w / step) * step): v for w, v in zip(c["out_channels"], c["predicted_us"],
                                                                         strict=True) if w % step == 0}
        np.testing.assert_allclose(inner["predicted_us"], [block_end[int(np.ceil(w / step) * step)]
                                                           for w in inner["out_channels"]], rtol=1e-9)
    with pytest.raises(ValueError, match="no layer named"):
        staircase_curves(resnet56, ["nope"], predictor=shipped.predictor("lut"))


def test_agreement_ranks_the_top_groups():
    measured = pd.DataFrame({"group": range(8), "ratio": 0.5, "sensitivity": [8, 7, 6, 5, 4, 3, 2, 1.0],
                             "saved_share": 0.1})
    predicted = measured.assign(sensitivity=[7, 8, 6, 5, 1, 4, 3, 2.0])
    joined, a = agreement(predicted, measured)
    assert len(joined) == 8 and a["top5_overlap"] == 4  # group 4 falls out of the predicted top 5
    assert a["spearman_top5"] == pytest.approx(0.9)  # ranks (5,4,3,2,1) vs (4,5,3,2,1): 1 - 6*2/(5*24)
    assert 0.5 < a["spearman_all"] < 1.0


def test_measured_sensitivity_sees_a_big_cut_on_the_backend():
    from latbench.backends import require_backend

    base = trace(build_model("smallconv", width=64), torch.zeros(1, 3, 32, 32), "smallconv")
    biggest = max(base.prunable_groups, key=lambda g: g.channels)
    table = measure_sensitivity(base, lambda a: build_candidate("smallconv", a, width=64),
                                require_backend("onnxruntime", threads=1), ratios=(0.25,), groups=[biggest.id],
                                seconds_each=2.0)
    row = table.iloc[0]
    assert row["kept"] == biggest.channels // 4 and row["saved_share"] > 0.1
    assert row["saved_share_low"] <= row["saved_share"] <= row["saved_share_high"]
    assert table.attrs["full_us"] > 0


def test_report_files_hold_values_computed_from_the_predictor_directly(shipped, resnet56, tmp_path):
    from torch.utils.flop_counter import FlopCounterMode

    write_report(resnet56, shipped, tmp_path, staircase_layers=2, log=lambda _: None)
    lut = shipped.predictor("lut")
    full_us = lut.predict(resnet56).latency_us
    table = pd.read_csv(tmp_path / "sensitivity.csv")
    groups = {g.id: g for g in resnet56.prunable_groups}
    assert set(table["group"]) == set(groups) and len(table) == 9 * len(groups)  # every group at 0.9, ..., 0.1
    mine = {}  # group -> (kept, saved us, sensitivity) at ratio 0.5
    for row in table.itertuples():  # each row: one group alone cut to round(ratio * C), priced one at a time
        g = groups[row.group]
        kept = max(1, round(row.ratio * g.channels))
        saved = full_us - lut.predict(resnet56.with_widths({g.id: kept})).latency_us
        sens = saved / full_us / (1 - kept / g.channels)
        assert (row.group_name, row.layers, row.channels, row.kept) == (g.name, len(g.layers), g.channels, kept)
        assert row.saved_us == pytest.approx(saved, rel=1e-6, abs=1e-6)
        assert row.sensitivity == pytest.approx(sens, rel=1e-6, abs=1e-9)
        if row.ratio == 0.5:
            mine[g.id] = (kept, saved, sens)
    ranking = pd.read_csv(tmp_path / "ranking.csv")  # most sensitive first; equal layers of a stage tie
    assert ranking["sensitivity"].tolist() == pytest.approx(sorted((v[2] for v in mine.values()), reverse=True))
    assert ranking["sensitivity"].tolist() == pytest.approx([mine[g][2] for g in ranking["group"]])
    assert ranking["group"].head(3).tolist() == [22, 12, 1]  # stages 3, 2, 1 (10 layers each), no ties among them
    assert [groups[g].name for g in (22, 12, 1)] == ["layer3.0.conv2", "layer2.0.conv2", "conv1"]
    summary = (tmp_path / "summary.md").read_text()
    for gid in ranking["group"].head(5):  # the summary's table of the five most sensitive groups
        g, (kept, saved, sens) = groups[gid], mine[gid]
        assert (f"| {g.name} | {len(g.layers)} | {g.channels} | {kept} | {saved:.1f} | "
                f"{100 * saved / full_us:.1f}% | {sens:.3f} |") in summary
    with FlopCounterMode(display=False) as counter:  # FLOPs as torch counts them; parameters of ResNet-56 by hand
        build_model("resnet56").eval()(torch.zeros(1, 3, 32, 32))
    assert f"**{full_us:,.1f} µs**" in summary
    assert f"{counter.get_total_flops() / 1e6:,.1f} MFLOPs, 855,770 parameters" in summary
    prop = pd.read_csv(tmp_path / "proportion.csv").set_index("name")
    assert prop.loc["conv1", "flops_share"] == pytest.approx(2 * 32 * 32 * 27 * 16 / counter.get_total_flops())
    assert prop.loc["fc", "flops_share"] == pytest.approx(2 * 64 * 10 / counter.get_total_flops())
    for png in ("proportion", "sensitivity", "staircase", "candidates"):
        assert (tmp_path / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
    assert "Predicted against measured" not in summary  # nothing was measured


def test_analyze_command_writes_the_report_and_names_the_top_group(tmp_path, capsys, shipped_profile):
    from latbench.cli import main

    profile = shipped_profile()

    assert main(["analyze", "--model", "resnet56", "--profile", str(profile), "--out", str(tmp_path / "r"),
                 "--staircase-layers", "1"]) == 0
    ranking = pd.read_csv(tmp_path / "r" / "ranking.csv")
    assert ranking["group_name"].iloc[0] in capsys.readouterr().out
    assert main(["analyze", "--model", "nosuchnet", "--profile", str(profile)]) == 2
    assert "nosuchnet" in capsys.readouterr().err
