"""The LLMConfig-Gym environment (Gymnasium-style ``reset``/``step``), Settings A and B of BENCHMARK.md.

Setting A (transfer): the episode starts with the low-fidelity history (``full``: every run of every cheaper
cell; ``sparse``: ``sparse_n`` random runs per cheaper cell, drawn from the reset seed). Each step evaluates
one target configuration; the episode ends after ``budget`` target evaluations.

Setting B (cost-aware): no history. Each action names a configuration *and* a cell and pays that run's cost.
The budget is ``budget_runs`` (default 5) times the target's per-run cost. The episode ends when the next
run cannot be afforded; the method then names its recommendation with :meth:`LLMConfigEnv.recommend`.

Proposals off the table are snapped to the nearest row of the cell and counted as invalid.
The reward of a step is the reduction of the normalised regret of the best target outcome so far.

Example:
    >>> from autollm_sampler import gym
    >>> env = gym.make_env("steplaw-dense-v1", target="N=1.07B,D=20B")  # doctest: +SKIP
    >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
    >>> obs, reward, terminated, truncated, info = env.step(obs.candidates[0])  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from autollm_sampler.exceptions import AutoLLMSamplerError
from autollm_sampler.gym._table import Cell, TabularTask
from autollm_sampler.history import History, Trial
from autollm_sampler.space import SearchSpace

__all__ = ["CellInfo", "Observation", "LLMConfigEnv", "make_env"]


@dataclass(frozen=True)
class CellInfo:
    """What a method may know about a cell without running anything."""

    name: str
    fidelity: dict[str, float]
    cost: float
    n_rows: int
    is_target: bool


@dataclass
class Observation:
    """Everything a policy sees: the target, the cells, their spaces and candidates, and the history."""

    task_id: str
    setting: Literal["A", "B"]
    direction: str
    target: CellInfo
    cells: list[CellInfo]
    spaces: dict[str, SearchSpace]
    candidates_by_cell: dict[str, list[dict[str, Any]]]
    history: History
    step: int
    budget_left: float
    tried: dict[str, set[int]] = field(default_factory=dict)
    costs_by_cell: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def space(self) -> SearchSpace:
        """The target cell's search space."""
        return self.spaces[self.target.name]

    @property
    def candidates(self) -> list[dict[str, Any]]:
        """The configurations of the target table (outcomes hidden)."""
        return self.candidates_by_cell[self.target.name]

    def untried(self, cell: str | None = None) -> list[int]:
        name = cell or self.target.name
        done = self.tried.get(name, set())
        return [i for i in range(len(self.candidates_by_cell[name])) if i not in done]

    def affordable(self, cell: str | None = None, *, untried_only: bool = False) -> list[int]:
        """Setting B: rows of ``cell`` (default: the target) whose run cost fits in ``budget_left``.

        Costs are known before running (FLOPs or parameter formulas; ADMIRE's published ``train_time``), so a
        cost-aware method can plan. In Setting A ``budget_left`` counts target evaluations, not cost.
        """
        name = cell or self.target.name
        n = len(self.candidates_by_cell[name])
        costs = self.costs_by_cell.get(name)
        limit = self.budget_left * (1 + 1e-9)
        rows = list(range(n)) if costs is None else [i for i in range(n) if costs[i] <= limit]
        if untried_only:
            done = self.tried.get(name, set())
            rows = [i for i in rows if i not in done]
        return rows

    def target_trials(self) -> list[Trial]:
        return [t for t in self.history.trials if t.attrs.get("cell") == self.target.name]


class LLMConfigEnv:
    """One experiment of a :class:`TabularTask`: a target cell, its history cells, a setting and a budget."""

    def __init__(
        self,
        task: TabularTask,
        target: str,
        *,
        setting: Literal["A", "B"] = "A",
        history: Literal["full", "sparse", "none"] = "full",
        budget: int = 10,
        budget_runs: float = 5.0,
        sparse_n: int = 20,
        history_cells: list[str] | tuple[str, ...] | None = None,
    ) -> None:
        if setting not in ("A", "B"):
            raise ValueError(f"setting must be 'A' or 'B', got {setting!r}")
        if history not in ("full", "sparse", "none"):
            raise ValueError(f"history must be 'full', 'sparse' or 'none', got {history!r}")
        if setting == "A" and budget < 1:
            raise ValueError(f"budget must be >= 1 target evaluations, got {budget!r}")
        self.task = task
        self.target: Cell = task.cell(target)
        cheap = list(history_cells) if history_cells is not None else [c.name for c in task.cheaper_cells(target)]
        self.history_cells: list[Cell] = [task.cell(n) for n in cheap]
        self.setting = setting
        self.history_mode = history
        self.budget = budget
        self.budget_runs = budget_runs
        self.sparse_n = sparse_n
        self._obs: Observation | None = None
        self._rng = np.random.default_rng()
        self._best = float("inf")
        self.invalid = 0
        self.cost_spent = 0.0
        self.n_target = 0
        self.recommendation: dict[str, Any] | None = None

    # ------------------------------------------------------------------ API
    @property
    def cells(self) -> list[Cell]:
        return [*self.history_cells, self.target]

    def reset(self, *, seed: int | None = None, options: Mapping[str, Any] | None = None) -> tuple[Observation, dict[str, Any]]:
        if seed is not None or self._obs is None:
            self._rng = np.random.default_rng(seed)
        hist = History(fidelity_axes=self.task.fidelity_axes)
        if self.setting == "A" and self.history_mode != "none":
            for cell in self.history_cells:
                rows = np.arange(len(cell))
                if self.history_mode == "sparse" and len(cell) > self.sparse_n:
                    rows = np.sort(self._rng.choice(len(cell), size=self.sparse_n, replace=False))
                for i in rows:
                    hist.add(self._trial(hist, cell, int(i)))
        self._best = float("inf")
        self.invalid = 0
        self.cost_spent = 0.0
        self.n_target = 0
        self.recommendation = None
        budget_left = float(self.budget) if self.setting == "A" else self.budget_runs * self.target.cost
        self._obs = Observation(
            task_id=self.task.id,
            setting=self.setting,
            direction=self.task.direction,
            target=self._info(self.target),
            cells=[self._info(c) for c in self.cells],
            spaces={c.name: c.space for c in self.cells},
            candidates_by_cell={c.name: c.configs for c in self.cells},
            history=hist,
            step=0,
            budget_left=budget_left,
            tried={c.name: set() for c in self.cells},
            costs_by_cell={c.name: c.costs for c in self.cells},
        )
        return self._obs, self._step_info(None, False, None)

    def step(self, action: Mapping[str, Any]) -> tuple[Observation, float, bool, bool, dict[str, Any]]:
        obs = self._require_obs()
        params, cell = self._parse_action(action)
        if self._done():
            raise AutoLLMSamplerError("the episode is over; call reset() before stepping again")
        idx, exact = cell.snap(params)
        if not exact:
            self.invalid += 1
        cost = float(cell.costs[idx])
        if self.setting == "B" and cost > obs.budget_left * (1 + 1e-9):
            raise AutoLLMSamplerError(
                f"a run in cell {cell.name!r} costs {cost:.4g} but only {obs.budget_left:.4g} is left; "
                "pick a cheaper cell or call recommend()"
            )
        prev = self._regret()
        obs.history.add(self._trial(obs.history, cell, idx))
        obs.tried.setdefault(cell.name, set()).add(idx)
        self.cost_spent += cost
        if cell is self.target:
            self.n_target += 1
            self._best = min(self._best, float(self.target.losses[idx]))
        obs.step += 1
        obs.budget_left = (self.budget - self.n_target) if self.setting == "A" else obs.budget_left - cost
        reward = prev - self._regret()
        terminated = self._done()
        return obs, reward, terminated, False, self._step_info(idx, exact, cell)

    def recommend(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Setting B: name the final target configuration; returns its true regret and gap."""
        idx, exact = self.target.snap(params)
        self.recommendation = dict(self.target.configs[idx])
        value = float(self.target.values[idx])
        return {
            "value": value,
            "regret": self.target.regret(value),
            "gap": self.target.gap(value),
            "cost_spent": self.cost_spent,
            "invalid": not exact,
        }

    def affordable_cells(self) -> list[str]:
        obs = self._require_obs()
        return [c.name for c in self.cells if c.costs.min() <= obs.budget_left * (1 + 1e-9)]

    # ------------------------------------------------------------------ internals
    def _require_obs(self) -> Observation:
        if self._obs is None:
            raise AutoLLMSamplerError("call reset() before step()")
        return self._obs

    def _done(self) -> bool:
        obs = self._require_obs()
        if self.setting == "A":
            return self.n_target >= self.budget or len(obs.tried.get(self.target.name, ())) >= len(self.target)
        return not self.affordable_cells()

    def _parse_action(self, action: Mapping[str, Any]) -> tuple[dict[str, Any], Cell]:
        if not isinstance(action, Mapping):
            raise TypeError(f"an action is a mapping of params (or {{'params':..., 'cell':...}}), got {action!r}")
        if "params" in action and isinstance(action["params"], Mapping):
            params = dict(action["params"])
            cell_name = action.get("cell", self.target.name)
        else:
            params, cell_name = dict(action), self.target.name
        if self.setting == "A" and cell_name != self.target.name:
            raise ValueError(f"Setting A evaluates the target cell only; got cell {cell_name!r}")
        names = {c.name: c for c in self.cells}
        if cell_name not in names:
            raise ValueError(f"cell {cell_name!r} is not part of this experiment; cells: {list(names)}")
        return params, names[cell_name]

    def _trial(self, hist: History, cell: Cell, idx: int) -> Trial:
        return Trial(
            id=hist.next_id(),
            params=dict(cell.configs[idx]),
            fidelity=dict(cell.fidelity),
            value=float(cell.values[idx]),
            cost=float(cell.costs[idx]),
            attrs={"cell": cell.name, "row": idx},
        )

    def _regret(self) -> float:
        if not np.isfinite(self._best):
            return 1.0
        return self.target.regret(self.target.space.sign * self._best)

    def _info(self, c: Cell) -> CellInfo:
        return CellInfo(c.name, dict(c.fidelity), c.cost, len(c), c is self.target)

    def _step_info(self, idx: int | None, exact: bool, cell: Cell | None) -> dict[str, Any]:
        best = self.target.space.sign * self._best if np.isfinite(self._best) else None
        return {
            "regret": self._regret(),
            "gap": self.target.gap(best) if best is not None else float("inf"),
            "best_value": best,
            "optimum": self.target.optimum,
            "cost_spent": self.cost_spent,
            "n_target": self.n_target,
            "invalid": (not exact) if idx is not None else False,
            "invalid_count": self.invalid,
            "row": idx,
            "cell": cell.name if cell is not None else None,
            "value": float(cell.values[idx]) if (cell is not None and idx is not None) else None,
        }


def make_env(
    task_id: str,
    target: str | None = None,
    *,
    raw_dir: str | os.PathLike[str] | None = None,
    **kwargs: Any,
) -> LLMConfigEnv:
    """Build an environment for a registered task (default target: its first test target)."""
    from autollm_sampler.gym._registry import make
    from autollm_sampler.gym._splits import experiments

    task = make(task_id, raw_dir=raw_dir)
    if target is None:
        target = experiments(task, "test")[0].target
    return LLMConfigEnv(task, target, **kwargs)
