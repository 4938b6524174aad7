"""LAP: the agent against random search on a toy problem, the wall, gate gradients and regrowth, resuming."""

from __future__ import annotations

import copy
import json
import statistics

import numpy as np
import pytest
import torch
from nets import seeded, with_groups
from torch import nn

from latbench.measure import MeasureSettings
from pruners.ddpg import DDPG, DDPGSettings
from pruners.dynamic_selection import DROPPED_GATE, gate_gradients, regrow
from pruners.errors import PruningError
from pruners.groups import ChannelGroup
from pruners.lap import (
    AIM_BOUNDS,
    AIM_MOVE,
    AIM_ROUNDS,
    LOG,
    Environment,
    aim_for,
    calibration_networks,
    calibration_widths,
    correction_points,
    lap,
    run_episode,
    scaled_widths,
)
from pruners.method import Problem
from pruners.oracle import LatencyOracle
from pruners.train import TrainConfig, sgd_steps

EXAMPLE = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))

pytestmark = pytest.mark.usefixtures("one_thread")


# --- the agent ----------------------------------------------------------------------------------------------------
OPTIMUM = np.array([0.2, 0.9, 0.5, 0.7, 0.3])


def _toy_reward(actions) -> float:
    return -float(((np.asarray(actions) - OPTIMUM) ** 2).sum())


def _toy_walk(act):
    states, actions, prev = [], [], 1.0
    for t in range(len(OPTIMUM)):
        s = np.zeros(len(OPTIMUM) + 1, np.float32)
        s[t], s[-1] = 1.0, prev
        prev = act(s)
        states.append(s)
        actions.append(prev)
    return states, actions


def test_the_agent_finds_a_known_optimum_better_than_random_search_at_equal_episodes():
    episodes, agent_best, random_best = 200, [], []
    for seed in range(3):
        agent = DDPG(len(OPTIMUM) + 1, DDPGSettings(warmup=30), seed)
        best = -np.inf
        for _ in range(episodes):
            states, actions = _toy_walk(agent.act)
            reward = _toy_reward(actions)
            best = max(best, reward)
            agent.learn_episode(states, actions, reward)
        agent_best.append(best)
        rng = np.random.default_rng(seed)
        random_best.append(max(_toy_reward(rng.uniform(0, 1, len(OPTIMUM))) for _ in range(episodes)))
    assert np.mean(agent_best) > np.mean(random_best)
    assert np.mean(agent_best) > -0.05  # within about 0.1 of the optimum in every coordinate


def test_an_agent_restored_from_its_state_acts_and_learns_as_the_original():
    a, b = DDPG(4, DDPGSettings(warmup=1, batch_size=4), 3), DDPG(4, DDPGSettings(warmup=1, batch_size=4), 9)
    s = np.linspace(0, 1, 4, dtype=np.float32)
    for _ in range(3):
        a.learn_episode([s, s], [a.act(s), a.act(s)], -0.5)
    b.load_state_dict(a.state_dict())
    assert b.episode == a.episode and b.sigma == a.sigma and b.baseline == a.baseline
    for _ in range(2):
        a.learn_episode([s, s], [a.act(s), a.act(s)], -0.2)
        b.learn_episode([s, s], [b.act(s), b.act(s)], -0.2)
    assert a.policy(s) == b.policy(s)


# --- the environment ------------------------------------------------------------------------------------------------
def _problem(profile_and_data, target, out=None):
    profile, data = profile_and_data
    model, arch, groups = with_groups(seeded("resnet20"), EXAMPLE, "resnet20")
    oracle = LatencyOracle(profile, model, arch, EXAMPLE, mode="auto",
                           settings=MeasureSettings(target_rel_ci=0.02, budget_s=2.0))
    return Problem(model, arch, groups, EXAMPLE, oracle, target, "latency", data, data, TrainConfig(epochs=0),
                   out=out, bn_images=32)


#: ResNet-20's group widths and, by hand, the widths LAP may keep on a 16-channel step with keep ratios from 0.2:
#: multiples of min(16, C / 4), then C, from ceil(0.2 C) up
MENUS = {16: (4, 8, 12, 16), 32: (8, 16, 24, 32), 64: (16, 32, 48, 64)}


def test_every_group_keeps_a_width_of_its_menu_and_snaps_to_the_nearest(profile_and_data):
    problem = _problem(profile_and_data, 0.5)
    env = Environment(problem.arch, [g.id for g in problem.groups], problem.oracle, 0.5, step=16)
    assert {env.menus[g] for g in env.group_ids} == set(MENUS.values())
    wide = next(g for g in env.group_ids if problem.arch.width_tuple[g] == 64)
    assert [env.snap(wide, w) for w in (1, 23, 24, 25, 40, 57, 64)] == [16, 16, 32, 32, 48, 64, 64]


def test_the_targeting_knob_keeps_every_group_on_its_menu_and_moves_them_one_at_a_time(profile_and_data):
    problem = _problem(profile_and_data, 0.5)
    env = Environment(problem.arch, [g.id for g in problem.groups], problem.oracle, 0.5, step=16)
    channels = problem.arch.width_tuple
    ratios = {g: 0.3 + 0.6 * (i % 3) / 2 for i, g in enumerate(env.group_ids)}  # 0.3, 0.6 and 0.9
    totals = []
    for k in np.linspace(0.25, 3.5, 66):
        widths = scaled_widths(env, ratios, k)
        assert all(w in MENUS[channels[g]] for g, w in widths.items())
        totals.append(sum(MENUS[channels[g]].index(w) for g, w in widths.items()))
    assert totals == sorted(totals) and totals[-1] == sum(len(MENUS[channels[g]]) - 1 for g in env.group_ids)
    # by hand: one 64-channel group wants 24 channels (halfway from 16 to 32 on its menu), one 16-channel group 10
    # (halfway from 8 to 12), the others their full width; the halves sum to one step, which goes to the earlier
    wide = next(g for g in env.group_ids if channels[g] == 64)
    narrow = next(g for g in env.group_ids if channels[g] == 16)
    half = {g: 1.0 for g in env.group_ids} | {wide: 24 / 64, narrow: 10 / 16}
    widths = scaled_widths(env, half, 1.0)
    assert (widths[wide], widths[narrow]) == ((32, 8) if wide < narrow else (16, 12))
    assert all(widths[g] == channels[g] for g in env.group_ids if g not in (wide, narrow))


@pytest.mark.parametrize("target", [0.7, 0.5])
def test_the_wall_keeps_every_episode_within_the_target(profile_and_data, target):
    problem = _problem(profile_and_data, target)
    env = Environment(problem.arch, [g.id for g in problem.groups], problem.oracle, target, step=16)
    rng = np.random.default_rng(0)
    for act in [lambda s: 1.0, lambda s: 0.0, *[lambda s: float(rng.uniform()) for _ in range(6)]]:
        ep = run_episode(env, act)
        recomputed = problem.oracle.predict(problem.arch.with_widths(ep.widths)).ratio
        assert ep.predicted == pytest.approx(recomputed) and recomputed <= target
        assert all(w in MENUS[problem.arch.width_tuple[g]] for g, w in ep.widths.items())
    greedy = run_episode(env, lambda s: 1.0)  # keeps everything it can: the first groups stay wide
    assert greedy.widths[env.group_ids[0]] == problem.arch.width_tuple[env.group_ids[0]]


@pytest.mark.parametrize("aim", [0.8, 0.3])
def test_the_aim_is_measured_on_a_uniform_network_on_the_channel_step(profile_and_data, aim):
    problem = _problem(profile_and_data, aim)
    env = Environment(problem.arch, [g.id for g in problem.groups], problem.oracle, aim, step=16)
    chosen = calibration_widths(env, aim)
    channels = {g: problem.arch.width_tuple[g] for g in env.group_ids}
    assert all(w in MENUS[channels[g]] for g, w in chosen.items())
    predicted = problem.oracle.predict(problem.arch.with_widths(chosen)).ratio

    def nearest(c: int, width: float) -> int:  # ties go to the wider
        return min(MENUS[c], key=lambda w: (abs(w - width), -w))

    # the uniform networks on the menus, keep r = 0.05 ... 1
    others = [problem.oracle.predict(problem.arch.with_widths(
        {g: nearest(c, k / 20 * c) for g, c in channels.items()})).ratio for k in range(1, 21)]
    within = [p for p in others if p <= aim]
    assert predicted == pytest.approx(max(within) if within else min(others))  # nearest from below, else smallest


def _round(predicted: list[float], ratio: float, aim: float = 0.5) -> dict:
    return {"aim": aim, "predicted": predicted, "measured": [p / ratio for p in predicted]}


def test_the_aim_interpolates_the_rounds_corrections_in_the_predicted_ratio():
    floor = _round([0.37, 0.376, 0.38], 2.0)  # median prediction 0.376
    wide = _round([0.55, 0.6, 0.7, 0.65], 1.26)  # median 0.625
    # one round: its correction everywhere, so p / 2 <= 0.35 up to p = 0.7
    assert aim_for(0.35, [floor]) == pytest.approx(0.7, abs=5e-4)
    # two rounds: c(p) = 2 - (0.74 / 0.249) (p - 0.376) between them; p = 0.35 c(p) solved by hand
    slope = 0.74 / 0.249
    expected = 0.35 * (2.0 + slope * 0.376) / (1 + 0.35 * slope)
    got = aim_for(0.35, [wide, floor])
    assert got == pytest.approx(expected, abs=5e-4) and got / (2.0 - slope * (got - 0.376)) <= 0.35
    # beyond the widest round its correction holds, and the aim stops at the original network
    assert aim_for(0.5, [floor, wide]) == pytest.approx(0.63, abs=5e-4)
    assert aim_for(0.85, [floor, wide]) == 1.0


def test_rounds_at_one_size_pool_their_networks_and_corrections_stay_bounded():
    # medians 0.5 and 0.53 are within 10%: one point, the median of six predictions and of six ratios
    pooled = correction_points([_round([0.52, 0.53, 0.54], 1.1), _round([0.5, 0.5, 0.5], 1.3)])
    assert pooled == [(pytest.approx(0.51), pytest.approx(1.2))]
    assert aim_for(0.5, [_round([0.52, 0.53, 0.54], 1.1), _round([0.5, 0.5, 0.5], 1.3)]) == pytest.approx(0.6, abs=5e-4)
    # 0.5 and 0.56 are not: two points; a ratio of 3 is cut to the bound 2
    apart = correction_points([_round([0.56, 0.56], 3.0), _round([0.5, 0.5, 0.5], 1.3)])
    assert apart == [(pytest.approx(0.5), pytest.approx(1.3)), (pytest.approx(0.56), AIM_BOUNDS[1])]


def test_the_aim_networks_are_the_uniform_one_and_distinct_random_episodes_within_the_wall(profile_and_data):
    problem = _problem(profile_and_data, 0.6)
    env = Environment(problem.arch, [g.id for g in problem.groups], problem.oracle, 0.9, step=16)
    networks = calibration_networks(env, 0.6, 4, seed=0)
    assert len(networks) == 4 and networks[0] == calibration_widths(env, 0.6)
    assert env.target == 0.9  # the wall was moved to the aim for the draws only
    randoms = [tuple(sorted(w.items())) for w in networks[1:]]
    assert len(set(randoms)) == 3 and all(dict(r) != networks[0] for r in randoms)
    for widths in networks[1:]:
        assert problem.oracle.predict(problem.arch.with_widths(widths)).ratio <= 0.6


def test_sgd_steps_take_plain_sgd_steps_on_the_first_batches_and_stop_at_the_end_of_the_loader():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    batches = [(torch.randn(4, 3), torch.randint(0, 2, (4,))) for _ in range(3)]
    w, b = model.weight.detach().clone(), model.bias.detach().clone()
    x, y = batches[0]
    logits = x @ w.T + b  # the first step by hand: momentum's buffer starts at the gradient, so w - lr * grad
    p = torch.softmax(logits, 1)
    p[torch.arange(4), y] -= 1.0
    grad_w, grad_b = p.T @ x / 4, p.sum(0) / 4
    assert sgd_steps(model, batches, 1, lr=0.5) == 1
    assert torch.allclose(model.weight, w - 0.5 * grad_w, atol=1e-6)
    assert torch.allclose(model.bias, b - 0.5 * grad_b, atol=1e-6)
    assert sgd_steps(nn.Linear(3, 2), batches, 10, lr=0.5) == 3  # one pass, no more


def test_a_target_under_the_floor_is_refused_with_it(profile_and_data):
    with pytest.raises(PruningError, match=r"every group at the lowest keep ratio 0.2 is predicted at 0\.\d{3}"):
        lap(_problem(profile_and_data, 0.05), episodes=1, warmup=1)


# --- filter selection ---------------------------------------------------------------------------------------------
def test_gate_gradients_are_the_loss_change_of_switching_a_channel_by_finite_differences():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 3)).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    group = ChannelGroup(0, "0", 5, ("0",), ("1",), ("3",))
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    keep = (0, 2, 3)
    grads = gate_gradients(model, [group], {0: keep}, [(x, y)], batches=1)[0]

    exact = copy.deepcopy(model).double()  # finite differences in float64

    def loss(gate: torch.Tensor) -> float:
        with torch.no_grad():
            h = exact[1](exact[0](x.double())) * gate
            return float(nn.functional.cross_entropy(exact[3](exact[2](h)), y))

    base = torch.full((5,), DROPPED_GATE, dtype=torch.float64)
    base[list(keep)] = 1.0
    delta = 1e-6
    for c in range(5):
        up, down = base.clone(), base.clone()
        up[c] += delta
        down[c] -= delta if c in keep else 0.0  # a dropped channel: the one-sided change of restoring it
        expected = abs(loss(up) - loss(down)) / (2 * delta if c in keep else delta)
        assert float(grads[c]) == pytest.approx(expected, rel=5e-3)
    assert all(float(grads[c]) > 0 for c in range(5))  # ReLU after the gate: restoring is still priced


def test_regrowth_swaps_the_strongest_dropped_for_the_weakest_kept_while_it_is_stronger():
    grads = {0: torch.tensor([0.1, 0.5, 0.05, 0.9])}
    kept, swaps = regrow({0: (0, 1)}, grads, fraction=1.0)
    assert kept[0] == (1, 3) and swaps[0] == [(3, 0)]  # 2 (0.05) is weaker than 1 (0.5): no second swap
    kept, swaps = regrow({0: (0, 2)}, grads, fraction=0.5)  # at most ceil(0.5 * 2) = 1 swap
    assert kept[0] == (0, 3) and swaps[0] == [(3, 2)]
    kept, swaps = regrow({0: (1, 3)}, grads, fraction=1.0)
    assert kept[0] == (1, 3) and swaps == {}


# --- the search -----------------------------------------------------------------------------------------------------
def test_a_resumed_search_continues_from_its_checkpoint(profile_and_data, tmp_path):
    first = lap(_problem(profile_and_data, 0.6, tmp_path), episodes=3, warmup=2, dynamics_batches=1, regrow_batches=1,
                accuracy_batches=1)
    log = json.loads((tmp_path / LOG).read_text())
    assert [r["episode"] for r in log] == [0, 1, 2]
    resumed = lap(_problem(profile_and_data, 0.6, tmp_path), episodes=5, warmup=2, dynamics_batches=1, regrow_batches=1,
                  accuracy_batches=1)
    again = json.loads((tmp_path / LOG).read_text())
    assert again[:3] == log and [r["episode"] for r in again] == [0, 1, 2, 3, 4]
    summary = resumed.history[-1]["lap"]
    assert summary["episodes"] == 5 and first.history[-1]["lap"]["episodes"] == 3
    # the aim measured before the search is kept, not measured again: the resumed episodes aim where the first did
    assert summary["search_target"] == first.history[-1]["lap"]["search_target"]
    rounds = summary["calibration_rounds"]
    corrections = []
    for r in rounds:
        assert len(r["measured"]) == len(r["predicted"]) == 4  # the default aim_networks
        median = statistics.median(p / m for p, m in zip(r["predicted"], r["measured"], strict=True))
        corrections.append(min(max(median, AIM_BOUNDS[0]), AIM_BOUNDS[1]))
    assert [r["correction"] for r in rounds] == corrections
    assert rounds[0]["aim"] == max(0.6, summary["floor"])
    for i in range(1, len(rounds)):  # each later round at the aim of the rounds before it, far from their aims
        assert rounds[i]["aim"] == pytest.approx(max(summary["floor"], aim_for(0.6, rounds[:i])), rel=1e-9)
        assert all(max(rounds[i]["aim"] / r["aim"], r["aim"] / rounds[i]["aim"]) > AIM_MOVE for r in rounds[:i])
    if len(rounds) < AIM_ROUNDS:  # stopped because the next aim was near one measured
        aim = max(summary["floor"], aim_for(0.6, rounds))
        assert any(max(aim / r["aim"], r["aim"] / aim) <= AIM_MOVE for r in rounds)
    assert summary["search_target"] == aim_for(0.6, rounds)
    assert summary["best_reward"] == max(r["reward"] for r in again)
    assert set(summary["selection_accuracy"]) == {"l1", "dynamic", "dynamic+regrowth"}


def test_latbench_prune_lap_end_to_end(capsys, shipped_profile, tmp_path):
    from test_cli import run

    weights = tmp_path / "resnet20.pt"
    torch.save(seeded("resnet20").state_dict(), weights)
    code, out, err = run(capsys, "prune", "lap", "--model", "resnet20", "--weights", str(weights), "--profile",
                         str(shipped_profile()), "--latency-target", "0.7", "--episodes", "3", "--warmup", "2",
                         "--selection", "l2", "--reward-steps", "1", "--aim-networks", "2", "--finetune-epochs", "0",
                         "--bn-images", "32", "--measure-budget", "1",
                         "--quiet", "--out", str(tmp_path / "run"))
    assert code == 0, err
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["settings"]["options"] == {"episodes": 3, "warmup": 2, "selection": "l2", "reward_steps": 1,
                                             "aim_networks": 2}
    summary = next(e["lap"] for e in report["search"] if "lap" in e)
    assert summary["episodes"] == 3 and report["latency"]["measured_ratio"] < 1.0
    assert all(len(r["measured"]) == 2 for r in summary["calibration_rounds"])
    assert "LAP: 3 episodes in " in out and "quick check: l1 " in out and "l2+regrowth" in out
