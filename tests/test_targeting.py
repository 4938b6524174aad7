"""The measure-and-correct loop every pruning method ends with."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pruners.targeting import measure_toward


def run(truth, target=0.5, first=0.5, **kw):
    grid = np.linspace(0.0, 1.0, 201)
    calls = []

    def measure_at(x):
        calls.append(x)
        return truth(x), {"knob": x, "measured": truth(x)}, f"{x:.4f}"

    reached = measure_toward(target, grid, grid, first, measure_at, lambda x: x,
                             fallback=lambda corrected: 0, **kw)
    return reached, calls


def test_a_constant_bias_is_corrected_with_one_more_measurement():
    reached, calls = run(lambda x: 1.3 * x)
    expected = np.floor(0.5 / 1.3 * 200) / 200  # the largest grid knob whose corrected estimate meets 0.5
    assert calls == [0.5, pytest.approx(expected)]
    assert reached.knob == pytest.approx(expected) and abs(reached.measured / 0.5 - 1) <= 0.025


def test_it_stops_at_the_budget_and_keeps_the_closest():
    truth = lambda x: 0.3 + 0.5 * x + 0.08 * np.sin(40 * x)  # noqa: E731 - wiggles the correction never fits
    reached, calls = run(truth, max_measurements=3, tolerance=0.001)
    assert len(calls) <= 3 and reached.history == [{"knob": c, "measured": truth(c)} for c in calls]
    assert abs(reached.measured / 0.5 - 1) == min(abs(truth(c) / 0.5 - 1) for c in calls)


def test_an_unreachable_target_walks_down_and_reports_the_miss():
    reached, calls = run(lambda x: 0.6 + 0.4 * x, target=0.3)  # nothing measures under 0.6
    assert len(calls) == 6 and all(a > b for a, b in itertools.pairwise(calls))
    assert reached.knob == calls[-1] and reached.measured == pytest.approx(0.6 + 0.4 * calls[-1])
    assert reached.measured > 0.3 * 1.05  # the caller sees the target missed and says so


def test_a_step_the_correction_puts_over_the_target_is_measured_once_when_everything_is_under():
    """Estimates in steps of 0.1 (0.5 on knobs (0.4, 0.5], 0.6 on (0.5, 0.6]); on this machine the 0.5 step
    measures 0.45 and the 0.6 step 0.5. The log error at knob 0.5 corrects the 0.6 step to 0.54, over the
    target, and the correction points back at 0.5; with everything measured 10% under, the next step up
    (knob 0.505, the first grid knob with another estimate) is measured and lands on the target."""
    grid = np.linspace(0.0, 1.0, 201)
    estimate = np.ceil(np.round(grid * 10, 9)) / 10
    truth = {0.5: 0.45, 0.6: 0.5, 0.7: 0.58}
    calls = []

    def measure_at(x):
        calls.append(x)
        m = truth[float(np.ceil(round(x * 10, 9)) / 10)]
        return m, {"knob": x, "measured": m}, f"{x:.4f}"

    reached = measure_toward(0.5, grid, estimate, 0.5, measure_at, lambda x: float(np.ceil(round(x * 10, 9)) / 10),
                             fallback=lambda corrected: 0)
    assert calls == [0.5, pytest.approx(0.505)]
    assert reached.knob == pytest.approx(0.505) and reached.measured == 0.5

    # the step up measures over the target: the loop stops there and keeps the closer of the two
    truth[0.6] = 0.6
    calls.clear()
    reached = measure_toward(0.5, grid, estimate, 0.5, measure_at, lambda x: float(np.ceil(round(x * 10, 9)) / 10),
                             fallback=lambda corrected: 0)
    assert calls == [0.5, pytest.approx(0.505)]
    assert reached.knob == 0.5 and reached.measured == 0.45
