"""GPU paths: run on a machine with CUDA (and TensorRT); skipped cleanly elsewhere."""

import numpy as np
import pytest
import torch

from latbench.backends import require_backend
from latbench.measure import CudaEventTimer, MeasureSettings, compare, measure

QUICK = MeasureSettings(target_rel_ci=0.02, budget_s=5.0)


@pytest.mark.cuda
def test_cuda_event_timer_sees_work_scale():
    a = torch.randn(2048, 2048, device="cuda")
    timer = CudaEventTimer()
    small = np.median(timer.time(lambda: a @ a, 20))
    big = np.median(timer.time(lambda: (a @ a) @ a, 20))
    assert big > 1.5 * small > 0


@pytest.mark.cuda
@pytest.mark.parametrize("cuda_graph", [False, True])
def test_torch_cuda_measures_with_events(small_net, example_input, cuda_graph):
    runnable = require_backend("torch", device="cuda", cuda_graph=cuda_graph).deploy(small_net, example_input)
    with torch.no_grad():
        np.testing.assert_allclose(runnable.output(), small_net(example_input).numpy(), rtol=1e-3, atol=1e-3)
    m = measure(runnable, QUICK)
    assert m.conditions["timer"] == "cuda-events" and m.conditions["gpu"]
    assert m.conditions["cuda_graph"] is cuda_graph and m.median_us > 0


@pytest.mark.cuda
def test_cuda_graph_replay_is_not_slower_than_eager(small_net, example_input):
    eager = require_backend("torch", device="cuda").deploy(small_net, example_input)
    graph = require_backend("torch", device="cuda", cuda_graph=True).deploy(small_net, example_input)
    result = compare({"eager": eager, "graph": graph}, MeasureSettings(target_rel_ci=0.03, budget_s=10))
    assert result.ratios["graph"].ci_low < 1.05


@pytest.mark.cuda
def test_torch_cuda_layer_times(small_net, example_input):
    table = require_backend("torch", device="cuda").deploy(small_net, example_input).layer_times(runs=5)
    assert {"features.0.0", "head"} <= set(table["layer"]) and (table["time_us"] > 0).all()


@pytest.mark.cuda
def test_onnxruntime_cuda_provider(small_net, example_input):
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime build has no CUDA provider")
    runnable = require_backend("onnxruntime", device="cuda").deploy(small_net, example_input)
    with torch.no_grad():
        np.testing.assert_allclose(runnable.output(), small_net(example_input).numpy(), rtol=1e-3, atol=1e-3)
    assert measure(runnable, QUICK).median_us > 0


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_measures_and_profiles_layers(small_net, example_input, precision):
    runnable = require_backend("tensorrt", precision=precision).deploy(small_net, example_input)
    tol = 1e-2 if precision == "fp32" else 5e-2
    with torch.no_grad():
        np.testing.assert_allclose(runnable.output(), small_net(example_input).numpy(), rtol=tol, atol=tol)
    m = measure(runnable, QUICK)
    assert m.conditions["tensorrt"] and m.conditions["timer"] == "cuda-events" and m.median_us > 0
    table = runnable.layer_times(runs=5)
    assert (table["time_us"] > 0).all() and "features.0.0" in set(table["layer"])
