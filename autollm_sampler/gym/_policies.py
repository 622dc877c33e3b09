"""Reference policies for the gym: random and transfer, through one :class:`Policy` interface.

A policy sees an :class:`~autollm_sampler.gym.Observation` and returns an action: a configuration (Setting
A) or ``{"params": ..., "cell": ...}`` (Setting B). In Setting B it also names its recommendation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autollm_sampler.candidates import CandidateIndex
from autollm_sampler.gym._env import Observation
from autollm_sampler.strategies import random_proposals, transfer_proposals

__all__ = ["Policy", "RandomPolicy", "TransferPolicy", "POLICIES", "run_episode", "run_cost_episode"]


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
            return _random_affordable(obs, self._rng)
        return random_proposals(obs.space, 1, self._rng, candidates=obs.candidates, exclude=self._tried_keys(obs))[0]


class TransferPolicy(Policy):
    """Best configuration of the nearest cheaper cell, then its untried neighbours, best first."""

    name = "transfer"
    deterministic = True

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self._cand_index: CandidateIndex | None = None

    def _candidate_index(self, obs: Observation) -> CandidateIndex:
        """The index of the target candidates, built once per candidate list."""
        cands = obs.candidates
        idx = self._cand_index
        if idx is None or idx.candidates is not cands or idx.space is not obs.space or len(idx) != len(cands):
            idx = self._cand_index = CandidateIndex(obs.space, cands)
        return idx

    def act(self, obs: Observation) -> dict[str, Any]:
        if obs.setting == "B":
            return self._act_b(obs)
        props = transfer_proposals(
            obs.history,
            obs.space,
            obs.target.fidelity,
            1,
            self._rng,
            exclude=self._tried_keys(obs),
            index=self._candidate_index(obs),
        )
        return props[0]

    def _act_b(self, obs: Observation) -> dict[str, Any]:
        # Setting B: transfer on the target among the runs still affordable; when no untried target run
        # fits the budget, spend what is left on a random affordable run elsewhere.
        rows = obs.affordable(untried_only=True)
        if not rows:
            return _random_affordable(obs, self._rng)
        props = transfer_proposals(
            obs.history,
            obs.space,
            obs.target.fidelity,
            1,
            self._rng,
            exclude=self._tried_keys(obs),
            index=self._candidate_index(obs).subset(rows),
        )
        return {"params": props[0], "cell": obs.target.name}


def _random_affordable(obs: Observation, rng: np.random.Generator) -> dict[str, Any]:
    """Setting B: a random cell with an affordable run, then a random affordable (untried first) run."""
    options = {c.name: obs.affordable(c.name) for c in obs.cells}
    cells = [name for name, rows in options.items() if rows]
    if not cells:  # nothing fits: the env has ended the episode; return the target's first row
        return {"params": dict(obs.candidates[0]), "cell": obs.target.name}
    name = cells[int(rng.integers(len(cells)))]
    done = obs.tried.get(name, set())
    rows = [i for i in options[name] if i not in done] or options[name]
    return {"params": dict(obs.candidates_by_cell[name][int(rng.choice(rows))]), "cell": name}


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


def run_cost_episode(env: Any, policy: Policy, *, seed: int | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run one Setting-B episode: steps until the cost budget is spent, then the policy's recommendation.

    Returns the per-step info dicts and :meth:`LLMConfigEnv.recommend`'s result for the recommended config.
    """
    obs, info = env.reset(seed=seed)
    policy.reset(obs, seed=seed)
    steps = []
    done = not env.affordable_cells()
    while not done:
        obs, reward, terminated, truncated, info = env.step(policy.act(obs))
        steps.append({**info, "reward": reward})
        done = terminated or truncated
    return steps, env.recommend(policy.recommend(obs))
