"""Environment and task checkers: the contract every registered task and both settings must satisfy.

:func:`check_task` checks a built :class:`TabularTask` (cells, costs, metadata, splits) and :func:`check_env`
drives an :class:`LLMConfigEnv` through ``reset``/``step`` and checks the Gymnasium-style contract plus the
benchmark rules of BENCHMARK.md (history modes, snapping, regret and reward, budgets, Setting B costs).
Both raise :class:`EnvCheckError` naming the task, the check and the values that broke it.

Example:
    >>> from autollm_sampler import gym
    >>> from autollm_sampler.gym._checker import check_env
    >>> check_env(gym.make_env("admire-ift-v1", setting="B"))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from autollm_sampler.exceptions import AutoLLMSamplerError
from autollm_sampler.gym._env import LLMConfigEnv, Observation
from autollm_sampler.gym._splits import experiments, is_test_target
from autollm_sampler.gym._table import Cell, TabularTask
from autollm_sampler.space import CategoricalParam, SimplexParam

__all__ = ["EnvCheckError", "check_env", "check_task"]

_INFO_KEYS = ("regret", "gap", "best_value", "optimum", "cost_spent", "n_target", "invalid", "invalid_count")
_TOL = 1e-9


class EnvCheckError(AutoLLMSamplerError, AssertionError):
    """A task or an environment breaks the gym's contract."""


def _require(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise EnvCheckError(f"{where}: {msg}")


# ---------------------------------------------------------------------------------------------- task
def check_task(task: TabularTask, *, require_provenance: bool = True) -> None:
    """Check a task table: non-empty cells, finite outcomes and positive costs, metadata and splits.

    ``require_provenance`` (on for the built-in tasks) also demands a citation and a licence.
    """
    where = f"task {task.id!r}"
    meta = task.metadata
    _require(meta.direction in ("minimize", "maximize"), where, f"direction is {meta.direction!r}")
    for name in ("objective", "cost_unit", *(("citation", "licence") if require_provenance else ())):
        _require(bool(getattr(meta, name)), where, f"metadata.{name} is empty")
    for cell in task.cells:
        w = f"{where}, cell {cell.name!r}"
        _require(len(cell) > 0, w, "has no rows")
        _require(tuple(cell.fidelity) == task.fidelity_axes, w, f"fidelity axes {tuple(cell.fidelity)}")
        _require(all(math.isfinite(v) for v in cell.fidelity.values()), w, f"fidelity {cell.fidelity}")
        _require(bool(np.all(np.isfinite(cell.values))), w, "has non-finite outcomes")
        _require(bool(np.all(np.isfinite(cell.costs)) and np.all(cell.costs > 0)), w, "has costs <= 0 or non-finite")
        _require(cell.space.direction == meta.direction, w, f"space direction {cell.space.direction!r}")
        keys = [cell.space.config_key(c) for c in cell.configs]
        _require(len(set(keys)) == len(keys), w, f"has {len(keys) - len(set(keys))} duplicate configurations")
        for i in _sample_rows(cell, 50):
            cell.space.validate_params(cell.configs[i])
        opt = cell.optimum
        _require(cell.regret(opt) == 0.0, w, f"regret of the optimum is {cell.regret(opt)}")
        _require(cell.regret(cell.p90) >= 1.0 - 1e-6 or cell.p90 == opt, w, "regret of p90 is below 1")
    tests = experiments(task, "test")
    trains = experiments(task, "train")
    _require(bool(tests), where, "has no test experiment")
    for e in trains:
        _require(not is_test_target(task, e.target), where, f"test cell {e.target!r} is a training target")
        _require(not any(is_test_target(task, h) for h in e.history_cells), where,
                 f"training experiment {e.target!r} sees a test cell as history")
    for e in tests + trains:
        t = task.cell(e.target)
        for h in e.history_cells:
            _require(task.cell(h).cost < t.cost, where, f"history cell {h!r} is not cheaper than {e.target!r}")


def _sample_rows(cell: Cell, k: int) -> list[int]:
    n = len(cell)
    return list(range(n)) if n <= k else [int(i) for i in np.linspace(0, n - 1, k).round()]


# ---------------------------------------------------------------------------------------------- env
def check_env(env: LLMConfigEnv, *, seed: int = 0, max_steps: int = 40) -> None:
    """Drive ``env`` through a seeded episode (plus a few probes) and check the contract.

    Setting A: history size per mode, determinism of ``reset(seed=...)``, no target rows in the history,
    step tuple types, regret in [0, 1] and non-increasing, reward = regret reduction, invalid (snapped)
    proposals counted, termination after ``budget`` target runs, stepping after the end refused.
    Setting B: empty history, budget = ``budget_runs`` x target cost, cost accounting, refusal of runs that
    do not fit, ``recommend`` scores the recommendation on the target table. At most ``max_steps`` steps.

    Raises:
        EnvCheckError: naming the task, target, setting and the failed check.
    """
    where = f"{env.task.id}:{env.target.name} setting {env.setting}/{env.history_mode}"
    snapshot = [dict(c.configs[0]) for c in env.cells]
    obs, info = _check_reset(env, seed, where)
    _check_observation(env, obs, where)
    if env.setting == "A":
        _check_history_a(env, obs, seed, where)
        _check_steps_a(env, seed, where)
    else:
        _require(len(obs.history) == 0, where, f"Setting B starts with {len(obs.history)} history trials, not 0")
        _require(math.isclose(obs.budget_left, env.budget_runs * env.target.cost, rel_tol=1e-9), where,
                 f"budget {obs.budget_left} != {env.budget_runs} x target cost {env.target.cost}")
        _check_steps_b(env, seed, where, max_steps)
    _check_off_table(env, seed, where)
    _require([dict(c.configs[0]) for c in env.cells] == snapshot, where, "the episode mutated the task tables")


def _check_reset(env: LLMConfigEnv, seed: int, where: str) -> tuple[Observation, dict[str, Any]]:
    out = env.reset(seed=seed)
    _require(isinstance(out, tuple) and len(out) == 2, where, f"reset() returned {type(out).__name__}, not (obs, info)")
    obs, info = out
    _require(isinstance(obs, Observation), where, f"reset() observation is a {type(obs).__name__}")
    _require(isinstance(info, dict), where, "reset() info is not a dict")
    missing = [k for k in _INFO_KEYS if k not in info]
    _require(not missing, where, f"reset() info lacks {missing}")
    _require(info["regret"] == 1.0 and info["cost_spent"] == 0.0 and info["n_target"] == 0, where,
             f"reset() info is not a fresh start: {info}")
    return obs, info


def _check_observation(env: LLMConfigEnv, obs: Observation, where: str) -> None:
    names = [c.name for c in obs.cells]
    _require(obs.task_id == env.task.id and obs.setting == env.setting, where, "observation names another task")
    _require(obs.target.name == env.target.name and obs.target.is_target, where, "observation target is wrong")
    _require(names.count(env.target.name) == 1, where, f"target appears {names.count(env.target.name)}x in cells")
    _require(obs.direction == env.task.direction, where, f"direction {obs.direction!r}")
    for info in obs.cells:
        w = f"{where}, cell {info.name!r}"
        cell = env.task.cell(info.name)
        _require(info.name in obs.spaces and info.name in obs.candidates_by_cell, w, "has no space or candidates")
        _require(info.n_rows == len(cell) == len(obs.candidates_by_cell[info.name]), w, "row count mismatch")
        _require(math.isfinite(info.cost) and info.cost > 0, w, f"cost {info.cost}")
        _require(dict(info.fidelity) == dict(cell.fidelity), w, "fidelity mismatch")
        _require(info.is_target == (info.name == env.target.name), w, "is_target flag is wrong")
        if not info.is_target:
            _require(info.cost < obs.target.cost, w, f"history cell costs {info.cost} >= target {obs.target.cost}")
        cands = obs.candidates_by_cell[info.name]
        space = obs.spaces[info.name]
        for i in _sample_rows(cell, 30):
            _require(env.task.metadata.objective not in cands[i], w, "candidates reveal the objective")
            space.validate_params(cands[i])
        costs = obs.costs_by_cell.get(info.name)
        _require(costs is not None and len(costs) == len(cands), w, "observation lacks the per-run costs")


def _check_history_a(env: LLMConfigEnv, obs: Observation, seed: int, where: str) -> None:
    hist = obs.history
    expected = 0
    for cell in env.history_cells:
        if env.history_mode == "full":
            expected += len(cell)
        elif env.history_mode == "sparse":
            expected += min(env.sparse_n, len(cell))
    _require(len(hist) == expected, where, f"history has {len(hist)} trials, expected {expected}")
    ids = [str(t.id) for t in hist.trials]
    _require(len(set(ids)) == len(ids), where, "history trial ids are not unique")
    for t in hist.trials:
        cell_name = t.attrs.get("cell")
        _require(cell_name != env.target.name, where, "the history contains target-cell runs")
        cell = env.task.cell(str(cell_name))
        row = int(t.attrs["row"])
        _require(tuple(t.fidelity) == env.task.fidelity_axes, where, f"trial {t.id} fidelity axes {tuple(t.fidelity)}")
        _require(t.value == float(cell.values[row]) and t.cost == float(cell.costs[row]), where,
                 f"trial {t.id} does not match row {row} of cell {cell_name!r}")
    rows = [(t.attrs["cell"], t.attrs["row"]) for t in hist.trials]
    again, _ = env.reset(seed=seed)
    _require([(t.attrs["cell"], t.attrs["row"]) for t in again.history.trials] == rows, where,
             f"reset(seed={seed}) is not reproducible")
    if env.history_mode == "sparse" and any(len(c) > env.sparse_n for c in env.history_cells):
        other, _ = env.reset(seed=seed + 1)
        _require([(t.attrs["cell"], t.attrs["row"]) for t in other.history.trials] != rows, where,
                 "sparse histories do not depend on the seed")


def _check_step(out: Any, where: str) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
    _require(isinstance(out, tuple) and len(out) == 5, where, "step() must return (obs, reward, terminated, truncated, info)")
    obs, reward, terminated, truncated, info = out
    _require(isinstance(obs, Observation), where, "step() observation type")
    _require(isinstance(reward, float) and math.isfinite(reward), where, f"reward {reward!r} is not a finite float")
    _require(isinstance(terminated, bool) and isinstance(truncated, bool), where, "terminated/truncated must be bools")
    _require(isinstance(info, dict) and all(k in info for k in _INFO_KEYS), where, "step() info lacks keys")
    _require(0.0 <= info["regret"] <= 1.0, where, f"regret {info['regret']} outside [0, 1]")
    return obs, reward, terminated, truncated, info


def _check_steps_a(env: LLMConfigEnv, seed: int, where: str) -> None:
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(env.target))
    regret, total, n = info["regret"], 0.0, 0
    terminated = False
    for i in order:
        obs, reward, terminated, truncated, info = _check_step(env.step(dict(obs.candidates[int(i)])), where)
        n += 1
        _require(not info["invalid"] and info["row"] == int(i), where, f"an exact candidate (row {i}) was snapped")
        _require(info["regret"] <= regret + _TOL, where, f"regret rose from {regret} to {info['regret']}")
        _require(math.isclose(reward, regret - info["regret"], abs_tol=1e-12), where, "reward != regret reduction")
        _require(info["n_target"] == n and obs.budget_left == env.budget - n, where, "target count / budget wrong")
        _require(math.isclose(info["regret"], env.target.regret(info["best_value"]), abs_tol=1e-12), where,
                 "info regret disagrees with the table")
        regret, total = info["regret"], total + reward
        _require(not truncated, where, "Setting A episodes end by termination, not truncation")
        if terminated:
            break
    _require(terminated and n == min(env.budget, len(env.target)), where, f"episode ended after {n} steps")
    _require(math.isclose(total, 1.0 - regret, abs_tol=1e-9), where, "rewards do not sum to the regret reduction")
    _require(len(obs.target_trials()) == n, where, "target runs missing from the history")
    other = next((c for c in env.cells if c is not env.target), None)
    env.reset(seed=seed)
    if other is not None:
        try:
            env.step({"params": dict(other.configs[0]), "cell": other.name})
        except (ValueError, AutoLLMSamplerError):
            pass
        else:
            raise EnvCheckError(f"{where}: Setting A accepted a run in history cell {other.name!r}")
    env.reset(seed=seed)
    for i in order:
        if env.step(dict(env.target.configs[int(i)]))[2]:
            break
    _expect_refusal(env, dict(env.target.configs[0]), where, "a step after the episode ended")


def _check_steps_b(env: LLMConfigEnv, seed: int, where: str, max_steps: int) -> None:
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    cheapest = min(env.cells, key=lambda c: c.cost)
    spent, regret, steps = 0.0, 1.0, 0
    terminated = False
    plan = [cheapest.name] * 2 + [env.target.name] * max_steps
    for cell_name in plan[:max_steps]:
        rows = obs.affordable(cell_name, untried_only=True)
        if not rows:
            continue
        row = int(rng.choice(rows))
        cell = env.task.cell(cell_name)
        left = obs.budget_left
        obs, reward, terminated, truncated, info = _check_step(
            env.step({"params": dict(cell.configs[row]), "cell": cell_name}), where
        )
        steps += 1
        spent += float(cell.costs[row])
        _require(math.isclose(info["cost_spent"], spent, rel_tol=1e-9), where, "cost_spent is not the sum of run costs")
        _require(math.isclose(obs.budget_left, left - float(cell.costs[row]), rel_tol=1e-9, abs_tol=1e-9 * left),
                 where, "budget_left did not drop by the run's cost")
        _require(info["regret"] <= regret + _TOL, where, "regret rose")
        _require(math.isclose(reward, regret - info["regret"], abs_tol=1e-12), where, "reward != regret reduction")
        regret = info["regret"]
        if terminated:
            break
    _require(steps > 0, where, "no affordable run at the start of Setting B")
    if not terminated:
        too_dear = [i for i in range(len(env.target)) if env.target.costs[i] > obs.budget_left * (1 + 1e-6)]
        if too_dear:
            _expect_refusal(env, {"params": dict(env.target.configs[too_dear[0]]), "cell": env.target.name}, where,
                            "a run that costs more than the budget left")
    else:
        _require(not env.affordable_cells(), where, "terminated while runs were still affordable")
    done = [t for t in obs.target_trials() if t.value is not None]
    best = min(done, key=lambda t: env.target.space.sign * float(t.value or 0.0), default=None)
    params = dict(best.params) if best is not None else dict(env.target.configs[0])
    rec = env.recommend(params)
    for key in ("value", "regret", "gap", "cost_spent", "invalid"):
        _require(key in rec, where, f"recommend() result lacks {key!r}")
    _require(0.0 <= rec["regret"] <= 1.0 and not rec["invalid"], where, f"recommend() returned {rec}")
    if best is not None:
        _require(math.isclose(rec["regret"], regret, abs_tol=1e-12), where, "recommending the best run changes regret")


def _expect_refusal(env: LLMConfigEnv, action: Mapping[str, Any], where: str, what: str) -> None:
    try:
        env.step(action)
    except AutoLLMSamplerError:
        return
    raise EnvCheckError(f"{where}: {what} was accepted")


def _off_table(cell: Cell, rng: np.random.Generator) -> dict[str, Any]:
    """A configuration near row 0 of ``cell`` that is not in the table."""
    base = dict(cell.configs[int(rng.integers(len(cell)))])
    for name, p in cell.space.params.items():
        if isinstance(p, CategoricalParam) and p.numeric and len(p.choices) >= 2:
            vals = sorted(float(c) for c in p.choices)
            base[name] = (vals[0] + vals[1]) / 2.0
            return base
        if isinstance(p, SimplexParam):
            w = np.asarray([base[name][c] for c in p.components]) + 1e-3
            base[name] = {c: float(x) for c, x in zip(p.components, w / w.sum(), strict=True)}
            return base
    base.pop(next(iter(base)))
    return base


def _check_off_table(env: LLMConfigEnv, seed: int, where: str) -> None:
    obs, _ = env.reset(seed=seed)
    params = _off_table(env.target, np.random.default_rng(seed))
    action: dict[str, Any] = params if env.setting == "A" else {"params": params, "cell": env.target.name}
    if env.setting == "B" and not obs.affordable():
        return
    if env.setting == "B":
        idx, _exact = env.target.snap(params)
        if float(env.target.costs[idx]) > obs.budget_left:
            return
    _obs, _r, _t, _tr, info = _check_step(env.step(action), where)
    _require(info["invalid"] is True and info["invalid_count"] == 1, where,
             f"an off-table proposal was not counted as invalid: {info}")
    row = info["row"]
    _require(isinstance(row, int) and 0 <= row < len(env.target), where, f"snapped to row {row!r}")
