"""Real deployments of a small conv network on both CPU backends."""

import numpy as np
import pytest
import torch

from latbench.backends import get_backend, list_backends, require_backend
from latbench.backends.export import export_onnx
from latbench.measure import MeasureSettings, compare, measure

QUICK = MeasureSettings(target_rel_ci=0.02, budget_s=3.0)


@pytest.fixture(scope="module", params=["onnxruntime", "torch"])
def deployed(request, small_net, example_input):
    backend = require_backend(request.param, threads=1)
    return request.param, backend.deploy(small_net, example_input)


def test_deployed_network_computes_what_torch_computes(deployed, small_net, example_input):
    _, runnable = deployed
    with torch.no_grad():
        expected = small_net(example_input).numpy()
    np.testing.assert_allclose(runnable.output(), expected, rtol=1e-4, atol=1e-4)


def test_real_measurement_records_its_conditions(deployed):
    name, runnable = deployed
    m = measure(runnable, QUICK, name="small")
    samples = np.asarray(m.samples_us)  # what was timed: the summary is of these
    assert m.runs == samples.size >= QUICK.min_runs and m.median_us == np.median(samples)
    assert (m.summary.min, m.summary.max) == (samples.min(), samples.max()) and samples.min() > 0
    c = m.conditions
    assert c["backend"] == name and c["device"] == "cpu"
    assert c["threads"] == 1 and c["batch"] == 1 and c["dtype"] == "float32"
    assert c["timer"] == "host-perf_counter" and c["cpu"]
    assert m.stop_reason in ("converged", "time_budget")


def test_measuring_a_deployed_network_summarises_the_times_its_timer_gives(deployed, fake):
    """The deployed network runs, a fake timer says how long each call took: 1000, 1100, 1600 us in turn."""
    name, runnable = deployed
    clock, make_timer = fake
    timer = make_timer(lambda i: (1000.0, 1100.0, 1600.0)[i % 3])
    settings = MeasureSettings(target_rel_ci=0.02, budget_s=1.0, warmup_min_s=1e-4, block_s=0.003, min_blocks=4,
                               min_time_s=0.03)
    m = measure(runnable, settings, timer=timer, clock=clock, name="small")
    # warm-up: 1 call, then windows of 3 (block_s / first call = 3 calls) with medians 1100, 1100: settled after 7.
    # Blocks of round(3000 / 1100) = 3 calls, one of each time, 3.7 ms; every block median is 1100 (CI width 0)
    # and the 4-block minimum is met, but 0.03 s of blocks take 9 of them (8 are 0.0296 s).
    assert (m.warmup_runs, m.warmup_settled, m.runs, m.stop_reason) == (7, True, 27, "converged")
    assert timer.calls == 34 and sorted(m.samples_us) == [1000.0] * 9 + [1100.0] * 9 + [1600.0] * 9
    assert m.block_medians_us == [1100.0] * 9 and m.ci_us == (1100.0, 1100.0) and m.drift == 0.0
    s = m.summary
    assert (s.median, s.min, s.max, s.p90, s.iqr) == (1100.0, 1000.0, 1600.0, 1600.0, 600.0)
    assert s.mean == pytest.approx(3700.0 / 3, rel=1e-12)  # not the median: the slow third pulls it up
    dev2 = 9 * ((1000 - 3700 / 3) ** 2 + (1100 - 3700 / 3) ** 2 + (1600 - 3700 / 3) ** 2)
    assert s.std == pytest.approx((dev2 / 26) ** 0.5, rel=1e-12)
    assert m.wall_time_s == pytest.approx((11 * 3700 + 1000) / 1e6, rel=1e-9)  # 34 calls: 11 cycles and a 1000
    assert m.conditions["backend"] == name and m.conditions["timer"] == "fake"


def test_layer_times_map_back_to_source_modules(deployed, small_net):
    _name, runnable = deployed
    table = runnable.layer_times(runs=5)
    modules = {n for n, _ in small_net.named_modules()}
    assert set(table["layer"]) - {""} <= modules
    convs = {f"features.{i}.0" for i in range(3)}
    assert convs <= set(table["layer"])  # every conv is timed, fused or not
    assert (table["time_us"] > 0).all()
    assert table["share"].sum() == pytest.approx(1.0)


def test_onnxruntime_fuses_conv_bn_relu(small_net, example_input):
    table = require_backend("onnxruntime", threads=1).deploy(small_net, example_input).layer_times(runs=3)
    assert not table["op"].isin(["BatchNormalization", "Relu"]).any()


def test_batch_size_is_recorded(small_net):
    runnable = require_backend("onnxruntime", threads=1).deploy(small_net, torch.randn(4, 3, 32, 32))
    assert runnable.conditions["batch"] == 4 and runnable.output().shape == (4, 10)


def test_onnx_file_deploys_with_its_own_static_shape(tmp_path, small_net, example_input):
    path = tmp_path / "net.onnx"
    path.write_bytes(export_onnx(small_net, example_input))
    runnable = require_backend("onnxruntime", threads=1).deploy(path, None)
    assert runnable.conditions["input_shape"] == [1, 3, 32, 32]
    assert runnable.output().shape == (1, 10)


def test_interleaved_comparison_sees_twice_the_work(small_net, example_input):
    runnable = require_backend("onnxruntime", threads=1).deploy(small_net, example_input)

    def twice():
        runnable()
        runnable()

    twice.timer, twice.conditions = runnable.timer, runnable.conditions
    result = compare({"once": runnable, "twice": twice}, MeasureSettings(target_rel_ci=0.03, budget_s=8.0))
    r = result.ratios["twice"]
    assert r.excludes_one and r.ci_low > 1.0
    assert 1.6 < r.ratio < 2.4
    assert result.measurements["twice"].median_us > result.measurements["once"].median_us


def test_listing_says_why_a_backend_is_unavailable():
    rows = {(r["backend"], r["device"]): r for r in list_backends()}
    assert rows[("onnxruntime", "cpu")]["available"]
    assert rows[("torch", "cpu")]["available"]
    for row in rows.values():
        assert row["available"] or row["reason"]
    if not torch.cuda.is_available():
        assert "CUDA" in rows[("torch", "cuda")]["reason"]
        assert not rows[("tensorrt", "cuda")]["available"]


def test_fingerprint_names_the_device_and_library_versions():
    fp = get_backend("onnxruntime", threads=2).fingerprint()
    assert fp["cpu"] and fp["onnxruntime"] and fp["threads"] == 2 and fp["logical_cpus"] >= 1
    fp = get_backend("torch").fingerprint()
    assert fp["torch"] == torch.__version__


def test_layer_times_resolve_layers_inside_nested_sequentials(example_input):
    from collections import OrderedDict

    from torch import nn

    class Block(nn.Module):  # MobileNet-V2's shape: scopes like /features/features.1/conv/conv.0/conv.0.0
        def __init__(self, cin: int, cout: int) -> None:
            super().__init__()
            self.conv = nn.Sequential(nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                                                    nn.BatchNorm2d(cout), nn.ReLU6()), nn.Conv2d(cout, cout, 1))

        def forward(self, x):
            return self.conv(x)

    net = nn.Sequential(OrderedDict(features=nn.Sequential(Block(3, 8), Block(8, 8)))).eval()
    table = require_backend("onnxruntime", threads=1).deploy(net, example_input).layer_times(runs=3)
    convs = {f"features.{i}.conv.{leaf}" for i in range(2) for leaf in ("0.0", "1")}
    assert convs <= set(table["layer"])  # the conv itself, not the enclosing Sequential


def test_layer_times_map_fused_convs_off_the_blocked_layout_to_themselves(example_input):
    from torch import nn

    # 18 and 17 input channels (16 or more, not multiples of 4) keep the last two convs off ONNX
    # Runtime's NCHWc layout: they run as FusedConv nodes named after the ONNX conv
    net = nn.Sequential(nn.Conv2d(3, 18, 3, padding=1), nn.ReLU(), nn.Conv2d(18, 17, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(17, 6, 3, padding=1), nn.ReLU()).eval()
    table = require_backend("onnxruntime", threads=1).deploy(net, example_input).layer_times(runs=3)
    assert "FusedConv" in set(table["op"])
    convs = table[table["op"].isin(["Conv", "FusedConv"])]
    assert sorted(convs["layer"]) == ["0", "2", "4"]
