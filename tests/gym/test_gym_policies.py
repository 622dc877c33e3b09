"""The random and transfer reference policies, through the same interface, in both settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autollm_sampler import gym


@pytest.mark.parametrize("tid", sorted(gym.list_ids()))
@pytest.mark.parametrize("policy", sorted(gym.POLICIES))
def test_policies_run_setting_a_without_repeats(tid: str, policy: str, raw_dir: Path) -> None:
    task = gym.make(tid)
    target = gym.experiments(task, "test")[0].target
    env = gym.LLMConfigEnv(task, target, history="sparse", budget=6)
    steps = gym.run_episode(env, gym.POLICIES[policy](seed=1), seed=1)
    assert len(steps) == 6
    rows = [s["row"] for s in steps]
    assert len(set(rows)) == 6, "a policy repeated a target configuration"
    assert all(not s["invalid"] for s in steps)
    regrets = [s["regret"] for s in steps]
    assert regrets == sorted(regrets, reverse=True)
    assert sum(s["reward"] for s in steps) == pytest.approx(1.0 - regrets[-1])


@pytest.mark.parametrize("tid", sorted(gym.list_ids()))
@pytest.mark.parametrize("policy", sorted(gym.POLICIES))
def test_policies_stay_within_the_setting_b_budget(tid: str, policy: str, raw_dir: Path) -> None:
    task = gym.make(tid)
    target = gym.experiments(task, "test")[0].target
    env = gym.LLMConfigEnv(task, target, setting="B", budget_runs=3)
    steps, rec = gym.run_cost_episode(env, gym.POLICIES[policy](seed=2), seed=2)
    budget = 3 * env.target.cost
    assert steps and rec["cost_spent"] <= budget * (1 + 1e-9)
    assert not env.affordable_cells()  # the policies spend the whole budget
    assert 0.0 <= rec["regret"] <= 1.0
    if policy == "transfer":
        assert any(s["cell"] == target for s in steps)


def test_transfer_starts_from_the_best_config_of_the_nearest_cheaper_cell(raw_dir: Path) -> None:
    # 76 ADMIRE mixtures were run at all three sizes, so the best 3B mixture may exist at 7B: then transfer
    # must propose exactly that mixture first; otherwise the 7B mixture nearest to it
    task = gym.make("admire-ift-v1")
    env = gym.LLMConfigEnv(task, "7B", history="full")
    obs, _ = env.reset(seed=0)
    three = task.cell("3B")
    best_3b = three.configs[three.best_index]
    first = gym.TransferPolicy(seed=0)
    first.reset(obs, seed=0)
    action = first.act(obs)
    seven = task.cell("7B")
    expected = seven.find(best_3b)
    if expected is None:
        expected = int(np.argmin(np.sum((seven.unit - three.space.to_unit(best_3b)) ** 2, axis=1)))
    assert seven.find(action) == expected


def test_transfer_is_deterministic_and_random_depends_on_the_seed(raw_dir: Path) -> None:
    task = gym.make("steplaw-moe-v1")
    target = gym.experiments(task, "test")[0].target
    runs = []
    for seed in (0, 1):
        env = gym.LLMConfigEnv(task, target, history="full", budget=4)
        runs.append([s["row"] for s in gym.run_episode(env, gym.TransferPolicy(seed=seed), seed=seed)])
    assert runs[0] == runs[1]
    rand = []
    for seed in (0, 1):
        env = gym.LLMConfigEnv(task, target, history="full", budget=4)
        rand.append([s["row"] for s in gym.run_episode(env, gym.RandomPolicy(seed=seed), seed=seed)])
    assert rand[0] != rand[1]


def test_transfer_beats_random_on_average_on_step_law(raw_dir: Path) -> None:
    # the published anchor: transferring the next smaller cell's best config is far better than random at k=1
    task = gym.make("steplaw-dense-v1")
    target = "N=1.07B,D=20B"
    env = gym.LLMConfigEnv(task, target, history="full", budget=1)
    transfer_gap = gym.run_episode(env, gym.TransferPolicy(seed=0), seed=0)[-1]["gap"]
    random_gaps = [gym.run_episode(env, gym.RandomPolicy(seed=s), seed=s)[-1]["gap"] for s in range(20)]
    assert transfer_gap < 1.0 < float(np.mean(random_gaps))
