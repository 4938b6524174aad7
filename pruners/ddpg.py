"""A small DDPG agent (Lillicrap et al. 2016) with AMC's settings, for LAP's layer-by-layer keep ratios.

- **Actor** ``state -> 300 -> 300 -> 1`` (ReLU, sigmoid output: an action in [0, 1], mapped to the
  keep-ratio bounds by the environment); **critic** ``(state, action) -> 300 -> 300 -> 1``, the action
  joining at the first hidden layer as in AMC.
- **Target networks** follow by Polyak averaging (``tau``, 0.01).
- **Replay buffer** of the last ``buffer_size`` transitions, sampled uniformly in batches of 64.
- **Exploration**: uniform random actions for the first ``warmup`` episodes, then a truncated normal
  around the actor's action (``sigma`` 0.5, times ``sigma_decay`` 0.95 per episode), cut to [0, 1].
- **Learning**: critic to ``r + discount * (1 - done) * Q'(s', mu'(s'))`` (MSE), actor to maximise
  ``Q(s, mu(s))``; Adam with lr 1e-4 (actor) and 1e-3 (critic).
- **Episodes** (``learn_episode``): as in AMC, every transition of an episode carries the episode's
  reward minus a moving-average baseline (``baseline_decay`` 0.95), and after warm-up the agent takes
  one update per transition.

Everything (networks, optimisers, buffer, noise scale, random generators) goes into ``state_dict``, so a
search checkpointed between episodes resumes exactly.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class DDPGSettings:
    hidden: int = 300
    actor_lr: float = 1e-4
    critic_lr: float = 1e-3
    tau: float = 0.01
    discount: float = 1.0
    batch_size: int = 64
    buffer_size: int = 6000
    sigma: float = 0.5
    sigma_decay: float = 0.95
    warmup: int = 100
    baseline_decay: float = 0.95


class Actor(nn.Module):
    def __init__(self, states: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(states, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1), nn.Sigmoid())

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        return self.net(s)


class Critic(nn.Module):
    def __init__(self, states: int, hidden: int) -> None:
        super().__init__()
        self.state_in = nn.Linear(states, hidden)
        self.action_in = nn.Linear(1, hidden, bias=False)
        self.rest = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return self.rest(self.state_in(s) + self.action_in(a))


class ReplayBuffer:
    """The last ``size`` transitions ``(s, a, r, s', done)`` as arrays."""

    def __init__(self, states: int, size: int) -> None:
        self.s = np.zeros((size, states), np.float32)
        self.a = np.zeros((size, 1), np.float32)
        self.r = np.zeros((size, 1), np.float32)
        self.s2 = np.zeros((size, states), np.float32)
        self.done = np.zeros((size, 1), np.float32)
        self.size, self.count = size, 0

    def add(self, s: np.ndarray, a: float, r: float, s2: np.ndarray, done: bool) -> None:
        i = self.count % self.size
        self.s[i], self.a[i], self.r[i], self.s2[i], self.done[i] = s, a, r, s2, float(done)
        self.count += 1

    def __len__(self) -> int:
        return min(self.count, self.size)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        idx = rng.integers(0, len(self), n)
        return tuple(torch.from_numpy(x[idx]) for x in (self.s, self.a, self.r, self.s2, self.done))

    def state_dict(self) -> dict[str, Any]:
        n = len(self)
        return {"s": self.s[:n], "a": self.a[:n], "r": self.r[:n], "s2": self.s2[:n], "done": self.done[:n],
                "count": self.count}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        n = len(d["s"])
        for name in ("s", "a", "r", "s2", "done"):
            getattr(self, name)[:n] = np.asarray(d[name])
        self.count = int(d["count"])


class DDPG:
    """The agent: ``act`` (with exploration), ``observe`` a transition, ``update`` once from the buffer,
    ``learn_episode`` (store an episode, learn, decay the noise), and ``state_dict``/``load_state_dict``
    for checkpoints."""

    def __init__(self, states: int, settings: DDPGSettings | None = None, seed: int = 0) -> None:
        self.settings = settings or DDPGSettings()
        st = self.settings
        torch.manual_seed(seed)
        self.actor, self.critic = Actor(states, st.hidden), Critic(states, st.hidden)
        self.actor_target, self.critic_target = copy.deepcopy(self.actor), copy.deepcopy(self.critic)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=st.actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=st.critic_lr)
        self.buffer = ReplayBuffer(states, st.buffer_size)
        self.rng = np.random.default_rng(seed)
        self.sigma = st.sigma
        self.episode = 0
        self.baseline: float | None = None

    def policy(self, state: np.ndarray) -> float:
        """The actor's action for ``state``, without exploration."""
        with torch.no_grad():
            return float(self.actor(torch.as_tensor(state, dtype=torch.float32)[None])[0, 0])

    def act(self, state: np.ndarray) -> float:
        """An exploring action in [0, 1]: uniform during warm-up, else truncated normal around the policy."""
        if self.episode < self.settings.warmup:
            return float(self.rng.uniform(0.0, 1.0))
        mu = self.policy(state)
        for _ in range(1000):  # rejection sampling of the truncated normal
            a = self.rng.normal(mu, self.sigma)
            if 0.0 <= a <= 1.0:
                return float(a)
        return float(np.clip(mu, 0.0, 1.0))

    def observe(self, s: np.ndarray, a: float, r: float, s2: np.ndarray, done: bool) -> None:
        self.buffer.add(s, a, r, s2, done)

    def update(self) -> dict[str, float] | None:
        """One gradient step of critic and actor and a soft target update (None until a batch is buffered)."""
        st = self.settings
        if len(self.buffer) < st.batch_size:
            return None
        s, a, r, s2, done = self.buffer.sample(st.batch_size, self.rng)
        with torch.no_grad():
            target = r + st.discount * (1.0 - done) * self.critic_target(s2, self.actor_target(s2))
        critic_loss = nn.functional.mse_loss(self.critic(s, a), target)
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()
        actor_loss = -self.critic(s, self.actor(s)).mean()
        self.actor_opt.zero_grad()
        actor_loss.backward()
        self.actor_opt.step()
        for net, tgt in ((self.actor, self.actor_target), (self.critic, self.critic_target)):
            with torch.no_grad():
                for p, q in zip(net.parameters(), tgt.parameters(), strict=True):
                    q.mul_(1 - st.tau).add_(p, alpha=st.tau)
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item()}

    def learn_episode(self, states: list[np.ndarray], actions: list[float], reward: float) -> None:
        """Store an episode's transitions with its baseline-subtracted reward, learn, decay the noise."""
        st = self.settings
        self.baseline = reward if self.baseline is None else (st.baseline_decay * self.baseline
                                                              + (1 - st.baseline_decay) * reward)
        for t, s in enumerate(states):
            last = t == len(states) - 1
            self.observe(s, actions[t], reward - self.baseline, states[t if last else t + 1], last)
        if self.episode >= st.warmup:
            for _ in states:
                self.update()
            self.sigma *= st.sigma_decay
        self.episode += 1

    def state_dict(self) -> dict[str, Any]:
        """A snapshot (copies, not views: a later update must not change a saved state)."""
        nets = {n: copy.deepcopy(getattr(self, n).state_dict()) for n in ("actor", "critic", "actor_target",
                                                                          "critic_target", "actor_opt", "critic_opt")}
        return {**nets, "buffer": {k: torch.tensor(v) for k, v in self.buffer.state_dict().items()},
                "rng": self.rng.bit_generator.state, "sigma": self.sigma, "episode": self.episode,
                "baseline": self.baseline,
                "settings": asdict(self.settings)}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        for n in ("actor", "critic", "actor_target", "critic_target", "actor_opt", "critic_opt"):
            getattr(self, n).load_state_dict(d[n])
        self.buffer.load_state_dict({k: (v.numpy() if isinstance(v, torch.Tensor) else v)
                                     for k, v in d["buffer"].items()})
        self.rng.bit_generator.state = d["rng"]
        self.sigma, self.episode, self.baseline = float(d["sigma"]), int(d["episode"]), d["baseline"]
