"""Reference policies for the gym: random and transfer, through one :class:`Policy` interface.

A policy sees an :class:`~autollm_sampler.gym.Observation` and returns an action: a configuration (Setting
A) or ``{"params": ..., "cell": ...}`` (Setting B). In Setting B it also names its recommendation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autollm_sampler.gym._env import Observation
from autollm_sampler.strategies import random_proposals, transfer_proposals

__all__ = ["Policy", "RandomPolicy", "TransferPolicy", "POLICIES", "run_episode"]


class Policy:
    """Base class: override :meth:`act`; :meth:`recommend` defaults to the best target trial."""

    name = "policy"
    deterministic = False

    def __init__(self, *, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def reset(self, obs: Observation, *, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def act(self, obs: Observation) -> dict[str, Any]:
        raise NotImplementedError

    def recommend(self, obs: Observation) -> dict[str, Any]:
        best = None
        sign = obs.space.sign
        for t in obs.target_trials():
            if t.is_complete and (best is None or sign * float(t.value) < sign * float(best.value)):  # type: ignore[arg-type]
                best = t
        if best is not None:
            return dict(best.params)
        return dict(self._rng.choice(np.array(obs.candidates, dtype=object)))

    def _tried_keys(self, obs: Observation) -> set[tuple[Any, ...]]:
        return {obs.space.config_key(obs.candidates[i]) for i in obs.tried.get(obs.target.name, ())}


class RandomPolicy(Policy):
    """Uniformly random untried target configurations (Setting B: random affordable cell too)."""

    name = "random"

    def act(self, obs: Observation) -> dict[str, Any]:
        if obs.setting == "B":
            cells = [c for c in obs.cells if c.cost <= obs.budget_left * (1 + 1e-9)]
            cell = cells[int(self._rng.integers(len(cells)))] if cells else obs.target
            cands = obs.candidates_by_cell[cell.name]
            untried = obs.untried(cell.name) or list(range(len(cands)))
            return {"params": dict(cands[int(self._rng.choice(untried))]), "cell": cell.name}
        return random_proposals(obs.space, 1, self._rng, candidates=obs.candidates, exclude=self._tried_keys(obs))[0]


class TransferPolicy(Policy):
    """Best configuration of the nearest cheaper cell, then its untried neighbours, best first."""

    name = "transfer"
    deterministic = True

    def act(self, obs: Observation) -> dict[str, Any]:
        props = transfer_proposals(
            obs.history,
            obs.space,
            obs.target.fidelity,
            1,
            self._rng,
            candidates=obs.candidates,
            exclude=self._tried_keys(obs),
        )
        if obs.setting == "B":
            return {"params": props[0], "cell": obs.target.name}
        return props[0]


POLICIES: dict[str, type[Policy]] = {"random": RandomPolicy, "transfer": TransferPolicy}


def run_episode(env: Any, policy: Policy, *, seed: int | None = None) -> list[dict[str, Any]]:
    """Run one Setting-A episode to the end; returns the per-step info dicts."""
    obs, info = env.reset(seed=seed)
    policy.reset(obs, seed=seed)
    steps = []
    done = False
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy.act(obs))
        steps.append({**info, "reward": reward})
        done = terminated or truncated
    return steps
