"""Profiling sized for GPUs, checked without one: the staircase probe and candidates, misaligned grids
and their lookup, budget-truncated grids, and the committed H100 and H200 profiles' held-out accuracy."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from latbench.arch import trace
from latbench.arch.spec import LayerSpec
from latbench.device_profile import DeviceProfile
from latbench.predictors.batch import CandidateBatch
from latbench.predictors.lut import LutPredictor, _table
from latbench.profile import Grid, read_meta, shape_key, spec_key, with_channels
from latbench.profiler import channel_step
from latbench.profiler.plan import layer_grids, layer_samples, misaligned_values

PROFILES = Path(__file__).resolve().parent.parent / "device_profiles"
H100 = PROFILES / "nvidia-h100-80gb-hbm3-torch-graph-fp16-bs32"
H200 = PROFILES / "nvidia-h200-torch-graph-fp16-bs32"


def test_gpu_staircase_uses_a_larger_probe_at_the_profile_batch_and_steps_up_to_64():
    gpu, cpu = channel_step.probe("cuda", batch=32), channel_step.probe("cpu", batch=32)
    assert cpu == channel_step.PROBE and cpu.batch == 1
    assert gpu.batch == 32 and gpu.in_channels * gpu.in_hw[0] * gpu.in_hw[1] > 10 * cpu.in_channels * 16 * 16
    assert max(channel_step.candidate_steps("cuda")) == 64 and max(channel_step.candidate_steps("cpu")) == 32
    lat = {c: 50.0 + 9.0 * ((c - 1) // 64) for c in range(1, 129)}  # a tile of 64 output channels
    assert channel_step.detect_step(lat, candidates=channel_step.candidate_steps("cuda"))[:1] == (64,)
    assert channel_step.detect_step(lat)[0] == 32  # the CPU candidates stop short of the tile


def test_reference_layer_is_read_from_the_profile_or_defaults_to_the_cpu_probe():
    gpu = channel_step.probe("cuda", 8)
    assert channel_step.reference_layer({"reference_layer": gpu.to_dict()}) == gpu
    assert channel_step.reference_layer({}) == channel_step.PROBE


def test_misaligned_values_sit_one_below_each_end_and_half_the_smallest():
    assert misaligned_values(((64, 1), (160, 2), (256, 1)), fixed=False) == ((31, 1), (63, 1), (255, 1))
    assert misaligned_values(((16, 1),), fixed=False) == ((7, 1), (15, 1))
    assert misaligned_values(((3, 1),), fixed=True) == ((3, 1),)


def test_misaligned_grids_are_planned_on_gpu_only_and_survive_the_profile_file():
    arch = trace(torch.nn.Sequential(torch.nn.Conv2d(3, 64, 3, padding=1), torch.nn.Conv2d(64, 256, 1),
                                     torch.nn.Conv2d(256, 10, 1)), torch.zeros(2, 3, 16, 16))
    plain = layer_grids([arch], 64, 3, ())
    gpu = layer_grids([arch], 64, 3, (), misaligned=True)
    assert all(g.misaligned is None for g in plain)
    first, second, third = gpu
    assert first.misaligned == (((3, 1),), ((31, 1), (63, 1)))  # the network's input channels are fixed
    assert second.misaligned == (((31, 1), (63, 1)), ((31, 1), (63, 1), (255, 1)))
    assert third.misaligned == (((31, 1), (63, 1), (255, 1)), ((10, 1),))  # ... and so are its outputs
    extra = {spec_key(s) for s, _ in layer_samples(gpu)} - {spec_key(s) for s, _ in layer_samples(plain)}
    expected = ({spec_key(with_channels(first.template, 3, co)) for co in (31, 63)}
                | {spec_key(with_channels(second.template, ci, co)) for ci in (31, 63) for co in (31, 63, 255)}
                | {spec_key(with_channels(third.template, ci, 10)) for ci in (31, 63, 255)})
    assert extra == expected
    assert [Grid.from_dict(g.to_dict()) for g in gpu] == gpu


def _conv_lut():
    """A 1x1 conv whose aligned table is 1 us per 64x64 channels and whose misaligned one is 3x that."""
    template = LayerSpec("conv", 128, 128, in_hw=(8, 8))
    ins = outs = [64, 128]
    mis = [31, 63, 127]
    measured = {spec_key(with_channels(template, ci, co)): ci * co / 4096 for ci in ins for co in outs}
    measured |= {spec_key(with_channels(template, ci, co)): 3 * ci * co / 4096 for ci in mis for co in mis}
    grid = Grid(shape_key(template), template, ((64, 1), (128, 1)), ((64, 1), (128, 1)),
                misaligned=(tuple((c, 1) for c in mis), tuple((c, 1) for c in mis)))
    meta = {"plan": {"grids": [grid.to_dict()], "step": 64}, "overhead_us": 0.0, "settings": {"backend": "torch"}}
    layers = pd.DataFrame({"key": list(measured), "shape_key": shape_key(template),
                           "median_us": list(measured.values())})
    return LutPredictor.from_profile(meta, layers)


def test_lut_prices_misaligned_widths_from_the_misaligned_grid():
    lut = _conv_lut()
    arch = trace(torch.nn.Sequential(torch.nn.Conv2d(128, 128, 1, bias=False)), torch.zeros(1, 128, 8, 8))
    pairs = [(64, 128), (128, 128), (63, 63), (47, 63), (64, 63), (127, 127)]
    batch = CandidateBatch(arch.base, np.array([[ci] for ci, _ in pairs]), np.array([[co] for _, co in pairs]),
                           np.ones((len(pairs), 1), dtype=bool))
    got = lut.layer_latency(batch).latency[:, 0]
    assert got[0] == pytest.approx(2.0) and got[1] == pytest.approx(4.0)  # aligned: the aligned table
    assert got[2] == pytest.approx(3 * 63 * 63 / 4096)
    # 47 is halfway between the measured 31 and 63 on the misaligned input axis: linear, no rounding
    assert got[3] == pytest.approx(3 * (31 + 63) / 2 * 63 / 4096)
    # an aligned input with a misaligned output: the misaligned grid, interpolated toward 64 along its input axis
    assert got[4] == pytest.approx(3 * (63 + (64 - 63) / (127 - 63) * 64) * 63 / 4096)
    assert got[5] == pytest.approx(3 * 127 * 127 / 4096)


def test_a_grid_cut_after_its_first_pass_keeps_its_complete_coarse_table():
    template = LayerSpec("conv", 16, 32, (3, 3), (1, 1), (1, 1), in_hw=(8, 8))
    grid = Grid("k", template, ((8, 1), (12, 3), (16, 1)), ((8, 1), (16, 2), (24, 3), (32, 1)))
    measured = {spec_key(with_channels(template, ci, co)): ci * 100 + co for ci in (8, 16) for co in (8, 32)}
    measured[spec_key(with_channels(template, 8, 16))] = 816  # one point of the second pass
    table = _table(grid, [8, 12, 16], [8, 16, 24, 32], measured)
    assert table.in_values.tolist() == [8, 16] and table.out_values.tolist() == [8, 32]
    assert table.table.tolist() == [[808, 832], [1608, 1632]]


def test_gpu_grids_lose_their_off_layout_probes_and_cpu_onnxruntime_keeps_them():
    arch = trace(torch.nn.Sequential(torch.nn.Conv2d(3, 32, 1), torch.nn.Conv2d(32, 64, 3, padding=1),
                                     torch.nn.Conv2d(64, 10, 1)), torch.zeros(1, 3, 8, 8))
    from latbench.profile import has_blocked_layout

    assert has_blocked_layout({"backend": "onnxruntime", "device": "cpu"})
    assert not has_blocked_layout({"backend": "torch", "device": "cuda"})
    assert not has_blocked_layout({"backend": "onnxruntime", "device": "cuda"})
    assert layer_grids([arch], 8)[1].off_layout and not layer_grids([arch], 8, layout_units=())[1].off_layout


@pytest.mark.skipif(not H100.exists(), reason="the H100 profile is not in this checkout")
def test_committed_h100_profile_predicts_its_held_out_networks():
    """The README's GPU claim, recomputed from the committed measurements."""
    meta = read_meta(H100)
    assert meta["fingerprint"]["gpu"].startswith("NVIDIA H100") and meta["reference_layer"]["batch"] == 32
    profile = DeviceProfile.load(H100, check_fingerprint=False)
    validation = profile.validate()
    assert validation["lut"]["n"] >= 16 and validation["lut"]["within_10pct"] >= 0.95
    assert validation["lut"]["within_10pct"] == pytest.approx(meta["validation"]["lut"]["within_10pct"])
    # the misaligned grids are what make it: without them the LUT misprices pruned widths
    plain = {**meta, "plan": {**meta["plan"], "grids": [{k: v for k, v in g.items() if k != "misaligned"}
                                                         for g in meta["plan"]["grids"]]}}
    lut = LutPredictor.from_profile(plain, profile.layers)
    lut.fit(*profile.network_samples("calib"))
    archs, measured = profile.network_samples("valid")
    errors = np.abs(lut.predict_many(archs)[0] / measured - 1)
    assert np.mean(errors <= 0.10) < validation["lut"]["within_10pct"]


@pytest.mark.skipif(not (H100.exists() and H200.exists()), reason="the GPU profiles are not in this checkout")
def test_committed_h200_profile_and_the_h100_profile_rescaled_predict_the_h200():
    """The README's H200 claims: its own LUT, and the H100's LUT scaled by one factor fitted on the
    H200's calibration networks, both put the H200's held-out networks within ±10%."""
    meta = read_meta(H200)
    assert meta["fingerprint"]["gpu"] == "NVIDIA H200" and meta["reference_layer"]["batch"] == 32
    h200 = DeviceProfile.load(H200, check_fingerprint=False)
    validation = h200.validate()
    assert validation["lut"]["n"] >= 10 and validation["lut"]["within_10pct"] >= 0.95
    assert validation["lut"]["within_10pct"] == pytest.approx(meta["validation"]["lut"]["within_10pct"])
    h100_lut = DeviceProfile.load(H100, check_fingerprint=False).predictor("lut")
    calib_archs, calib_measured = h200.network_samples("calib")
    factor = float(np.median(calib_measured / h100_lut.predict_many(calib_archs)[0]))
    assert 0.85 < factor < 1.0  # the H200 runs these networks a little faster than the H100
    archs, measured = h200.network_samples("valid")
    errors = np.abs(factor * h100_lut.predict_many(archs)[0] / measured - 1)
    assert len(errors) >= 10 and errors.max() <= 0.05
