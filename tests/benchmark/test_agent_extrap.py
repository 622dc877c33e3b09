"""The ``agent-extrap`` ablation: the agent's extrapolation feature, nearest untried candidate, no model."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from autollm_sampler import gym
from autollm_sampler.agent._features import encode
from autollm_sampler.benchmark._candidates import CandidateIndex
from autollm_sampler.benchmark._methods import AGENT_METHODS, DEFAULT_METHODS, METHODS, make_policy
from autollm_sampler.benchmark._policies import BenchPolicy, ExtrapolatedSearch
from autollm_sampler.benchmark._runner import EpisodeSpec, _full_history, run_episode

pytestmark = pytest.mark.usefixtures("raw_dir")

TASK = "steplaw-dense-v1"


class Recording(BenchPolicy):
    """Wraps a policy and keeps every raw proposal with the cell it was made for and the rows tried then."""

    def __init__(self, inner: BenchPolicy) -> None:
        super().__init__()
        self.inner = inner
        self.name = inner.name
        self.proposals: list[tuple[str, dict[str, Any], set[int]]] = []

    def reset(self, obs: gym.Observation, *, seed: int | None = None) -> None:
        self.inner.reset(obs, seed=seed)

    def wants_stop(self, obs: gym.Observation) -> bool:
        return self.inner.wants_stop(obs)

    def recommend(self, obs: gym.Observation) -> dict[str, Any]:
        return self.inner.recommend(obs)

    def act(self, obs: gym.Observation) -> dict[str, Any]:
        action = self.inner.act(obs)
        if obs.setting == "B":
            cell, params = str(action["cell"]), dict(action["params"])
        else:
            cell, params = obs.target.name, dict(action)
        self.proposals.append((cell, params, set(obs.tried.get(cell, set()))))
        return action


def _spec(setting: str, history: str, seed: int = 0, budget: int = 5) -> EpisodeSpec:
    task = gym.make(TASK)
    exp = gym.experiments(task, "test")[0]
    return EpisodeSpec(setting, history, TASK, "steplaw-dense", exp.target, exp.history_cells, "agent-extrap", seed,
                       budget)


def _run(spec: EpisodeSpec) -> tuple[dict[str, Any], Recording]:
    policy = Recording(make_policy("agent-extrap"))
    return run_episode(spec, policy), policy


def _check_valid_untried(rec: dict[str, Any], policy: Recording) -> None:
    task = gym.make(TASK)
    assert policy.proposals, "the method proposed nothing"
    for cell_name, params, tried in policy.proposals:
        cell = task.cell(cell_name)
        cell.space.validate_params(params)
        row = CandidateIndex(cell.space, cell.configs).find(params)
        assert row is not None, f"{params} is not a row of {cell_name}"
        assert row not in tried, f"row {row} of {cell_name} was already tried"
    assert not any(s["invalid"] or s["repeat"] for s in rec["steps"])
    for s in rec["steps"]:
        assert task.cell(s["cell"]).values[s["row"]] == pytest.approx(s["value"])


def test_registered_as_an_agent_ablation_for_both_settings() -> None:
    spec = METHODS["agent-extrap"]
    assert spec.settings == ("A", "B")
    assert spec.deterministic and spec.uses_history
    assert "no model" in spec.description and "ablation" in spec.description
    assert spec.unavailable() is None
    assert "agent-extrap" in DEFAULT_METHODS and "agent-extrap" in AGENT_METHODS
    assert isinstance(make_policy("agent-extrap"), ExtrapolatedSearch)


def test_setting_a_full_first_proposal_is_nearest_to_the_extrapolated_optimum() -> None:
    spec = _spec("A", "full")
    rec, policy = _run(spec)
    _check_valid_untried(rec, policy)
    assert len(rec["steps"]) == spec.budget and all(s["target"] for s in rec["steps"])

    # independently: the serializer's extrapolation from the full cheap history, then the nearest target row
    task = gym.make(TASK)
    cell = task.cell(spec.target)
    history = gym.LLMConfigEnv(task, spec.target, history="full", history_cells=list(spec.history_cells))
    obs, _ = history.reset(seed=0)
    assert len(obs.history.trials) == len(_full_history(task, spec)) > 100
    extrap = encode(obs.history, cell.space, cell.fidelity, np.zeros((0, cell.space.width))).extrap
    units = np.stack([cell.space.to_unit(c) for c in cell.configs])
    want = int(np.argmin(np.sum((units - extrap) ** 2, axis=1)))
    assert rec["steps"][0]["row"] == want
    assert cell.space.config_key(policy.proposals[0][1]) == cell.space.config_key(cell.configs[want])
    # later proposals walk outward from the same point: their distances never decrease
    dist = [float(np.sum((units[s["row"]] - extrap) ** 2)) for s in rec["steps"]]
    assert dist == sorted(dist)


def test_setting_a_full_does_not_depend_on_the_seed() -> None:
    a, _ = _run(_spec("A", "full", seed=0))
    b, _ = _run(_spec("A", "full", seed=3))
    assert [s["row"] for s in a["steps"]] == [s["row"] for s in b["steps"]]


def test_setting_a_sparse_episode() -> None:
    rec, policy = _run(_spec("A", "sparse", seed=1))
    _check_valid_untried(rec, policy)


def test_setting_b_follows_the_cheap_first_schedule() -> None:
    spec = _spec("B", "none")
    rec, policy = _run(spec)
    _check_valid_untried(rec, policy)
    steps = rec["steps"]
    target = gym.make(TASK).cell(spec.target)
    assert sum(s["cost"] for s in steps) <= spec.budget_runs * target.cost * (1 + 1e-9)
    assert not steps[0]["target"], "Setting B spends on cheap cells first"
    first_target = next(i for i, s in enumerate(steps) if s["target"])
    assert all(s["target"] for s in steps[first_target:]), "once on the target it stays there"
    assert rec["final"] is not None and rec["rec0"] is not None
