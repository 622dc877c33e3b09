"""The env checker over every registered task, both settings, full and sparse histories; env details."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autollm_sampler import gym
from autollm_sampler.exceptions import AutoLLMSamplerError
from autollm_sampler.gym._checker import EnvCheckError, check_env

CASES = [(tid, setting, hist) for tid in sorted(gym.list_ids()) for setting in ("A", "B") for hist in ("full", "sparse")]


@pytest.mark.parametrize(("tid", "setting", "history"), CASES)
def test_env_checker_passes_on_every_task(tid: str, setting: str, history: str, raw_dir: Path) -> None:
    task = gym.make(tid)
    targets = [gym.experiments(task, "test")[0].target, gym.experiments(task, "train")[-1].target]
    for target in targets:
        env = gym.LLMConfigEnv(task, target, setting=setting, history=history, budget=5)  # type: ignore[arg-type]
        check_env(env, seed=7)


class _LeakyEnv(gym.LLMConfigEnv):
    """Puts one target run into the starting history: the checker must notice."""

    def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
        obs, info = super().reset(seed=seed, options=options)
        obs.history.add(self._trial(obs.history, self.target, 0))
        return obs, info


class _BadRewardEnv(gym.LLMConfigEnv):
    def step(self, action: Any) -> Any:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs, reward + 0.5, terminated, truncated, info


def test_env_checker_catches_broken_envs(raw_dir: Path) -> None:
    task = gym.make("admire-ift-v1")
    with pytest.raises(EnvCheckError, match="history"):
        check_env(_LeakyEnv(task, "7B"))
    with pytest.raises(EnvCheckError, match="reward != regret reduction"):
        check_env(_BadRewardEnv(task, "7B"))


def test_setting_a_history_and_snapping(raw_dir: Path) -> None:
    task = gym.make("steplaw-dense-v1")
    env = gym.LLMConfigEnv(task, "N=1.07B,D=20B", history="sparse", sparse_n=20)
    obs, info = env.reset(seed=0)
    assert len(obs.history) == 20 * len(env.history_cells)
    assert {t.attrs["cell"] for t in obs.history.trials} == {c.name for c in env.history_cells}
    # an lr between two grid points is snapped to the nearest row and counted as invalid
    lrs = sorted(obs.space.params["lr"].choices)  # type: ignore[union-attr]
    obs, reward, terminated, truncated, info = env.step({"lr": (lrs[3] + lrs[4]) / 2, "batch_size": 256})
    assert info["invalid"] and info["invalid_count"] == 1
    assert env.target.configs[info["row"]]["lr"] in (lrs[3], lrs[4])
    with pytest.raises(ValueError, match="Setting A evaluates the target cell only"):
        env.step({"params": obs.candidates_by_cell["N=215M,D=4B"][0], "cell": "N=215M,D=4B"})


def test_reward_is_the_regret_reduction_and_best_run_ends_regret(raw_dir: Path) -> None:
    task = gym.make("regmix-v1")
    env = gym.LLMConfigEnv(task, "1B", budget=3)
    obs, info = env.reset(seed=0)
    worst = int(np.argmax(env.target.losses))
    best = env.target.best_index
    _, r1, *_rest, i1 = env.step(obs.candidates[worst])
    assert r1 == 0.0 and i1["regret"] == 1.0  # the worst run is beyond p90: regret stays 1
    _, r2, terminated, _, i2 = env.step(obs.candidates[best])
    assert r2 == 1.0 and i2["regret"] == 0.0 and i2["gap"] == 0.0 and not terminated
    _, _, terminated, _, _ = env.step(obs.candidates[0])
    assert terminated
    with pytest.raises(AutoLLMSamplerError, match="episode is over"):
        env.step(obs.candidates[1])


def test_setting_b_budget_costs_and_recommendation(raw_dir: Path) -> None:
    task = gym.make("admire-ift-v1")
    env = gym.LLMConfigEnv(task, "7B", setting="B", budget_runs=2)
    obs, info = env.reset(seed=0)
    assert len(obs.history) == 0 and obs.budget_left == pytest.approx(2 * env.target.cost)
    cheap = obs.candidates_by_cell["0.5B"][3]
    obs, reward, terminated, _, info = env.step({"params": cheap, "cell": "0.5B"})
    assert reward == 0.0 and info["cost_spent"] == pytest.approx(task.cell("0.5B").costs[3])
    # the observation carries each run's cost so that a method can plan within the budget
    rows = obs.affordable()
    assert rows and all(env.target.costs[i] <= obs.budget_left for i in rows)
    dear = [i for i in range(len(env.target)) if env.target.costs[i] > obs.budget_left]
    assert all(i not in rows for i in dear)
    rec = env.recommend(obs.candidates[env.target.best_index])
    assert rec["regret"] == 0.0 and rec["cost_spent"] == info["cost_spent"] and not rec["invalid"]


def test_make_env_defaults_to_the_first_test_target(raw_dir: Path) -> None:
    env = gym.make_env("hwgpt-arch-v1", history="sparse")
    assert env.target.name == "L" and [c.name for c in env.history_cells] == ["S", "M"]


def test_splits_match_benchmark_md(raw_dir: Path) -> None:
    want = {
        "admire-ift-v1": (["7B"], ["3B"]),
        "regmix-v1": (["1B"], ["60M"]),
        "hwgpt-arch-v1": (["L"], ["M"]),
    }
    for tid, (test, train) in want.items():
        task = gym.make(tid)
        assert [e.target for e in gym.experiments(task, "test")] == test
        assert [e.target for e in gym.experiments(task, "train")] == train
    dense = gym.make("steplaw-dense-v1")
    tests = {e.target for e in gym.experiments(dense, "test")}
    assert sorted(t.split(",")[0] for t in tests) == ["N=1.07B"] * 2 + ["N=537M"] * 3
    assert all(dense.cell(e.target).fidelity["n_params"] <= 4.3e8 for e in gym.experiments(dense, "train"))
    moe = gym.make("steplaw-moe-v1")
    assert {e.target.split(",")[1] for e in gym.experiments(moe, "test")} == {"D=20B"}
    assert len(gym.experiments(moe, "test")) == 4
