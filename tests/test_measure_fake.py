"""The adaptive method's rules, checked against a fake clock so no result depends on this machine."""

import json

import numpy as np
import pytest

from latbench.measure import Measurement, MeasureSettings, compare, measure, measure_fixed


def noisy(median: float, sigma: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    return lambda i: median * rng.lognormal(0.0, sigma)


def test_converges_when_the_ci_reaches_the_target(fake):
    clock, make = fake
    m = measure(lambda: None, MeasureSettings(target_rel_ci=0.01, budget_s=10), timer=make(noisy(1000, 0.05)),
                clock=clock)
    assert m.stop_reason == "converged"
    assert m.rel_ci_halfwidth <= 0.01
    assert m.median_us == pytest.approx(1000, rel=0.02)
    assert m.runs >= 10


def test_tighter_target_needs_more_runs(fake):
    clock, make = fake
    loose = measure(lambda: None, MeasureSettings(target_rel_ci=0.02), timer=make(noisy(1000, 0.1, 1)), clock=clock)
    tight = measure(lambda: None, MeasureSettings(target_rel_ci=0.005), timer=make(noisy(1000, 0.1, 1)), clock=clock)
    assert loose.converged and tight.converged
    assert tight.runs > 4 * loose.runs


def test_stops_at_the_time_budget_and_says_so(fake):
    clock, make = fake
    m = measure(lambda: None, MeasureSettings(target_rel_ci=0.001, budget_s=2.0), timer=make(noisy(10_000, 0.5)),
                clock=clock)
    assert m.stop_reason == "time_budget"
    assert 2.0 <= m.wall_time_s < 2.1
    assert m.rel_ci_halfwidth > 0.001


def test_stops_at_max_runs(fake):
    clock, make = fake
    m = measure(lambda: None, MeasureSettings(target_rel_ci=1e-4, min_runs=10, max_runs=50, budget_s=1e6),
                timer=make(noisy(1000, 0.5)), clock=clock)
    assert m.stop_reason == "max_runs"
    assert 50 <= m.runs < 50 + 30


def test_warm_up_absorbs_a_sharp_cold_start(fake):
    clock, make = fake

    def cold_start(i):  # first 30 calls are 10x slower (allocation, caches), then steady
        return 1000.0 if i < 30 else 100.0

    m = measure(lambda: None, MeasureSettings(block_s=0.002), timer=make(cold_start), clock=clock)
    assert m.warmup_settled
    assert m.warmup_runs >= 30
    assert max(m.samples_us) == 100.0


def test_a_slow_transient_is_excluded_by_warm_up_or_drift_check(fake):
    clock, make = fake

    def slow_decay(i):  # 200 calls getting faster, then steady at 100 us
        return 100.0 * (1 + 9 * max(0.0, 1 - i / 200))

    m = measure(lambda: None, MeasureSettings(block_s=0.002), timer=make(slow_decay), clock=clock)
    assert m.warmup_runs + m.discarded_runs >= 150
    assert m.median_us == pytest.approx(100.0, rel=0.02)


def test_warm_up_that_never_settles_is_reported(fake):
    clock, make = fake
    m = measure(lambda: None, MeasureSettings(budget_s=1.0, block_s=0.001, warmup_max_frac=0.2),
                timer=make(lambda i: 100.0 * 1.02**i), clock=clock)  # every call 2% slower
    assert not m.warmup_settled


def test_drift_discards_the_older_state(fake):
    clock, make = fake
    rng = np.random.default_rng(3)

    def step(i):  # machine gets 20% slower after 3000 calls (e.g. another tenant starts)
        return (100.0 if i < 3000 else 120.0) * rng.lognormal(0.0, 0.05)

    m = measure(lambda: None, MeasureSettings(target_rel_ci=0.001, block_s=0.005), timer=make(step), clock=clock)
    assert m.discarded_runs > 0
    assert m.median_us == pytest.approx(120.0, rel=0.01)
    assert abs(m.drift) < 0.02


def test_a_steady_machine_discards_nothing(fake):
    clock, make = fake
    m = measure(lambda: None, MeasureSettings(target_rel_ci=0.002), timer=make(noisy(100, 0.05, 4)), clock=clock)
    assert m.converged and m.discarded_runs == 0


def test_fixed_method_takes_exactly_the_runs_asked(fake):
    clock, make = fake
    timer = make(noisy(50, 0.1))
    m = measure_fixed(lambda: None, runs=25, warmup=5, timer=timer, clock=clock)
    assert m.runs == 25 and m.warmup_runs == 5 and timer.calls == 30
    assert m.stop_reason == "fixed" and m.target_rel_ci is None


def test_json_round_trip(fake, tmp_path):
    clock, make = fake
    m = measure(lambda: None, timer=make(noisy(1000, 0.05)), clock=clock, name="net",
                conditions={"backend": "fake", "threads": 2, "batch": 1, "dtype": "float32"})
    path = tmp_path / "m.json"
    m.to_json(path)
    back = Measurement.from_json(path)
    assert back.to_dict() == m.to_dict()
    assert back.conditions["threads"] == 2 and back.conditions["timer"] == "fake"
    fixed = measure_fixed(lambda: None, runs=3, timer=make(noisy(1, 0.1)), clock=clock)
    assert json.loads(fixed.to_json())["target_rel_ci"] is None
    assert Measurement.from_json(fixed.to_json()).to_dict() == fixed.to_dict()


def test_json_of_another_kind_is_refused():
    with pytest.raises(ValueError, match="not a latbench measurement"):
        Measurement.from_dict({"schema": "something/else"})


def test_settings_are_validated():
    with pytest.raises(ValueError, match="target_rel_ci"):
        MeasureSettings(target_rel_ci=0)
    with pytest.raises(ValueError, match="budget_s"):
        MeasureSettings(budget_s=-1)


class _Paired:
    """Two fake timers sharing one clock and a common drift, as on a shared machine."""

    def __init__(self, clock, base, factor, seed):
        self.clock, self.base, self.factor = clock, base, factor
        self.rng = np.random.default_rng(seed)
        self.name = "fake"

    def time(self, fn, n):
        out = []
        for _ in range(n):
            drift = 1.0 + 0.3 * np.sin(self.clock.t / 2.0)  # +-30% slow drift of the machine
            v = self.base * self.factor * drift * self.rng.lognormal(0.0, 0.03)
            self.clock.t += v / 1e6
            out.append(v)
        return out


def test_interleaved_ratio_cancels_drift(fake):
    clock, _ = fake

    class R:
        def __init__(self, factor, seed):
            self.timer = _Paired(clock, 1000.0, factor, seed)
            self.conditions = {}

        def __call__(self):
            return None

    result = compare({"a": R(1.0, 1), "b": R(1.5, 2)}, MeasureSettings(target_rel_ci=0.01, budget_s=60),
                     clock=clock)
    r = result.ratios["b"]
    assert result.stop_reason == "converged"
    assert r.ratio == pytest.approx(1.5, rel=0.02)
    assert r.ci_low <= 1.5 <= r.ci_high * 1.01
    assert r.excludes_one
    assert result.ratios["a"].ratio == 1.0


def test_ci_comes_from_block_medians_so_slow_wander_widens_it(fake):
    """Thousands of correlated samples must not claim a tight CI while the machine wanders."""
    clock, make = fake
    rng = np.random.default_rng(5)

    def wander(i):  # +-5% slow wander (period ~20k calls) and tiny per-call noise
        return 100.0 * (1 + 0.05 * np.sin(i / 3000)) * rng.lognormal(0.0, 0.002)

    m = measure(lambda: None, MeasureSettings(target_rel_ci=0.002, budget_s=1.0, drift_tol=1.0), timer=make(wander),
                clock=clock)
    assert m.summary.ci_method == "blocks" and len(m.block_medians_us) >= 10
    from latbench.measure.stats import median_ci

    lo, hi = median_ci(m.samples_us)
    naive_rel = (hi - lo) / (2 * m.median_us)
    assert naive_rel < 0.002  # the per-sample CI would have claimed convergence ...
    assert m.stop_reason == "time_budget" and m.rel_ci_halfwidth > 0.002  # ... the block CI does not


def test_ctrl_c_keeps_what_was_measured(fake):
    clock, make = fake
    calls = {"n": 0}

    def interrupt_later():
        calls["n"] += 1
        if calls["n"] == 5000:
            raise KeyboardInterrupt

    m = measure(interrupt_later, MeasureSettings(target_rel_ci=1e-4, block_s=0.01), timer=make(noisy(100, 0.1)),
                clock=clock)
    assert m.stop_reason == "interrupted"
    assert m.runs > 0 and m.median_us == pytest.approx(100, rel=0.05)


def test_ctrl_c_during_warm_up_propagates(fake):
    clock, make = fake

    def interrupt_at_once():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        measure(interrupt_at_once, timer=make(noisy(100, 0.1)), clock=clock)


class _SwitchCost:
    """Runnables of one fake machine whose first 3 calls after switching runnable cost double."""

    def __init__(self, clock):
        self.clock, self.last, self.streak = clock, None, 0

    def runnable(self, name: str, base_us: float):
        machine = self

        def call() -> float:
            if machine.last != name:
                machine.last, machine.streak = name, 0
            machine.streak += 1
            cost = base_us * (2.0 if machine.streak <= 3 else 1.0)
            machine.clock.t += cost / 1e6
            return cost

        class Timer:
            name = "fake"

            def time(self, fn, n):
                return [call() for _ in range(n)]

        class R:
            timer, conditions = Timer(), {}

            def __call__(self):
                return call()

        return R()


@pytest.mark.parametrize(("rewarm_s", "median_a", "ratio_b"), [(0.0, 2000.0, 0.25), (0.004, 1000.0, 0.5)])
def test_each_block_is_rewarmed_after_a_switch(fake, rewarm_s, median_a, ratio_b):
    """Blocks of 4 calls for ``a``, 8 for ``b`` and ``c``: without re-warming, 3 of a's 4 timed calls
    pay the switch and the comparison is distorted; with it, every timed call is steady."""
    clock, _ = fake
    machine = _SwitchCost(clock)
    settings = MeasureSettings(target_rel_ci=0.01, budget_s=5, block_s=0.004, rewarm_s=rewarm_s)
    runnables = {name: machine.runnable(name, us) for name, us in (("a", 1000.0), ("b", 500.0), ("c", 500.0))}
    result = compare(runnables, settings, min_rounds=5, clock=clock)
    assert result.measurements["a"].median_us == pytest.approx(median_a)
    assert result.ratios["b"].ratio == pytest.approx(ratio_b)
