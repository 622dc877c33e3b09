"""Pieces shared by every integration: agent resolution, target checks, seeds, the cost-aware schedule, and
:class:`SamplerCore`, the state the Optuna, Ray and ask/tell frontends each hold and delegate to.

Nothing here imports Optuna or Ray, so the ask/tell object and the CLI stay light.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autollm_sampler.agent import Agent, load_agent
from autollm_sampler.budget import BudgetChoice, BudgetRule, Direction
from autollm_sampler.exceptions import CheckpointError
from autollm_sampler.history import History, Trial

__all__ = [
    "AgentSpec",
    "CostSchedule",
    "FidelityLevel",
    "LevelRun",
    "check_target",
    "derive_seed",
    "finite_or_none",
    "fresh_seed",
    "history_items",
    "near_fidelity",
    "NEAR_TARGET_RTOL",
    "parse_levels",
    "resolve_agent",
    "SamplerCore",
    "RECOMMEND_KEY",
    "EXPLAIN_KEY",
    "check_agent_spec",
    "check_seed",
    "same_fidelity",
    "short_repr",
]

logger = logging.getLogger(__name__)

#: What the integrations accept as ``agent=``: an :class:`Agent`, ``"default"``, ``"classical"`` or a path.
AgentSpec = Agent | str | os.PathLike[str]


def check_agent_spec(agent: object) -> AgentSpec:
    """``agent`` itself when it is a valid ``agent=`` argument (checked at construction, loaded later).

    Raises:
        TypeError: if ``agent`` is neither an :class:`Agent` nor a string / path.
    """
    if not isinstance(agent, (Agent, str, os.PathLike)):
        raise TypeError(
            f"agent must be an Agent, 'default', 'classical' or a checkpoint path, got {type(agent).__name__}"
        )
    return agent


def resolve_agent(agent: AgentSpec) -> Agent:
    """Turn an ``agent=`` argument into an :class:`Agent`.

    ``"default"`` falls back to the classical agent (with a warning) when the shipped checkpoint or its
    model backend is not available. An explicit checkpoint path that fails to load raises: the caller asked
    for that model specifically.

    Raises:
        CheckpointError: if an explicit checkpoint path is missing or corrupt.
        TypeError: if ``agent`` is neither an :class:`Agent` nor a string / path.
    """
    check_agent_spec(agent)
    if isinstance(agent, Agent):
        return agent
    if str(agent) == "default":
        try:
            return load_agent("default")
        except (ImportError, CheckpointError, FileNotFoundError) as exc:
            logger.warning(
                "the default agent could not be loaded (%s: %s); using the classical agent instead",
                type(exc).__name__,
                exc,
            )
            return load_agent("classical")
    return load_agent(agent)


def check_target(fidelity: Sequence[str], target: Mapping[str, float] | None) -> dict[str, float]:
    """Validate the ``fidelity`` axes and the ``target`` point together; returns the target as floats.

    Raises:
        ValueError: naming the axis that is missing, unexpected or not a finite number.
    """
    axes = tuple(fidelity)
    if len(set(axes)) != len(axes):
        raise ValueError(f"fidelity={list(axes)!r} names an axis twice; list each axis once")
    if target is None:
        if axes:
            raise ValueError(
                f"fidelity={list(axes)!r} needs target=: pass the expensive setting, e.g. "
                f"target={{{axes[0]!r}: 7e9}}"
            )
        return {}
    if not isinstance(target, Mapping):
        raise ValueError(f"target must be a mapping of fidelity axis to number, got {target!r}")
    missing = [a for a in axes if a not in target]
    extra = [str(a) for a in target if a not in axes]
    if missing or extra:
        raise ValueError(
            f"target={dict(target)!r} does not match fidelity={list(axes)!r} "
            f"(missing {missing!r}, unexpected {extra!r}); give one value per fidelity axis"
        )
    out: dict[str, float] = {}
    for a in axes:
        v = target[a]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(float(v)):
            raise ValueError(f"target[{a!r}] is {v!r}; it must be a finite number")
        out[a] = float(v)
    return out


def check_seed(seed: object) -> int | None:
    """``seed`` as an int (or ``None``); a bool, float, string or other object is a ``ValueError``."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
        raise ValueError(f"seed must be an int or None, got {seed!r}")
    return None if seed is None else int(seed)


def short_repr(x: Any, limit: int = 80) -> str:
    """``repr(x)``, cut to ``limit`` characters (messages stay short whatever the user stored)."""
    r = repr(x)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def finite_or_none(x: Any) -> float | None:
    """``float(x)`` if it is a finite number, else ``None`` (bools and strings are not numbers)."""
    if isinstance(x, bool) or not isinstance(x, (int, float, np.integer, np.floating)):
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def fresh_seed() -> int:
    """A random 32-bit seed from the operating system's entropy."""
    return int(np.random.SeedSequence().generate_state(1)[0])


def derive_seed(base: int, *keys: int) -> int:
    """A deterministic 32-bit seed for one step (``keys``, e.g. the trial number) of a seeded run."""
    return int(np.random.SeedSequence([int(base) & 0xFFFFFFFF, *[int(k) & 0xFFFFFFFF for k in keys]]).generate_state(1)[0])


@dataclass(frozen=True)
class FidelityLevel:
    """One fidelity the cost-aware mode may run: its point on the fidelity axes and the cost of one run."""

    fidelity: dict[str, float]
    cost: float
    name: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "fidelity": dict(self.fidelity), "cost": self.cost}


def _level_name(fid: Mapping[str, float]) -> str:
    return ",".join(f"{k}={v:.4g}" for k, v in fid.items())


def parse_levels(levels: Sequence[Mapping[str, Any]], axes: Sequence[str]) -> list[FidelityLevel]:
    """Validate ``fidelity_levels=[{axis: value, ..., "cost": c, "name": optional}, ...]``.

    Raises:
        ValueError: naming the level (by index) and the field that is wrong.
    """
    if isinstance(levels, Mapping) or not isinstance(levels, Sequence) or len(levels) == 0:
        raise ValueError("fidelity_levels must be a non-empty list of {axis: value, ..., 'cost': c} dicts")
    out: list[FidelityLevel] = []
    seen: set[tuple[float, ...]] = set()
    for i, lvl in enumerate(levels):
        if not isinstance(lvl, Mapping):
            raise ValueError(f"fidelity_levels[{i}] is {lvl!r}; expected a dict with the fidelity axes and 'cost'")
        cost = finite_or_none(lvl.get("cost"))
        if cost is None or cost <= 0:
            raise ValueError(f"fidelity_levels[{i}]['cost'] is {lvl.get('cost')!r}; give a finite cost > 0 per run")
        unknown = [str(k) for k in lvl if k not in ("cost", "name") and k not in axes]
        if unknown:
            raise ValueError(f"fidelity_levels[{i}] has unknown key(s) {unknown!r}; the fidelity axes are {list(axes)!r}")
        fid: dict[str, float] = {}
        for a in axes:
            v = finite_or_none(lvl.get(a))
            if v is None:
                raise ValueError(f"fidelity_levels[{i}][{a!r}] is {lvl.get(a)!r}; give a finite number for every axis")
            fid[a] = v
        key = tuple(fid[a] for a in axes)
        if key in seen:
            raise ValueError(f"fidelity_levels[{i}] repeats the fidelity {fid!r}; list each level once")
        seen.add(key)
        out.append(FidelityLevel(fid, cost, str(lvl.get("name") or _level_name(fid))))
    return out


#: Relative tolerance within which a fidelity is taken to mean the target (a target given rounded, or a token
#: count a data loader rounded to whole batches, e.g. 25,999,966,208 for 2.6e10). The CLI warns about such
#: trials; the Optuna sampler counts them as target runs.
NEAR_TARGET_RTOL = 0.01


def near_fidelity(a: Mapping[str, float], b: Mapping[str, float], rel_tol: float = NEAR_TARGET_RTOL) -> bool:
    """Whether two fidelity points have the same axes and agree on each within ``rel_tol`` (relative)."""
    if set(a) != set(b):
        return False
    return all(math.isclose(float(a[k]), float(b[k]), rel_tol=rel_tol, abs_tol=0.0) for k in a)


def same_fidelity(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    """Whether two fidelity points are equal on every axis (to 10 significant digits)."""
    if set(a) != set(b):
        return False
    return all(math.isclose(float(a[k]), float(b[k]), rel_tol=1e-9, abs_tol=0.0) for k in a)


#: the options of the cost-aware rule a frontend's ``budget_rule=`` may set (:class:`~autollm_sampler.budget.BudgetRule`)
BUDGET_RULE_OPTIONS = ("level_share", "patience", "min_runs", "min_improvement")


def check_budget_rule(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``budget_rule=`` of a frontend as keyword arguments of the rule; unknown keys are refused by name.

    Raises:
        TypeError: if it is not a mapping.
        ValueError: naming an unknown option and the known ones (the values are checked by the rule).
    """
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"budget_rule= must be a dict of rule options, got {type(options).__name__}")
    unknown = sorted(str(k) for k in options if k not in BUDGET_RULE_OPTIONS)
    if unknown:
        raise ValueError(f"budget_rule= has unknown option(s) {unknown}; the options are {list(BUDGET_RULE_OPTIONS)} "
                         "(low_fidelity_share= and budget= are arguments of their own)")
    return dict(options)


class CostSchedule(BudgetRule):
    """The fidelity-choice rule of the cost-aware mode (Setting B of BENCHMARK.md) over :class:`FidelityLevel`s.

    The rule itself is :class:`autollm_sampler.budget.BudgetRule` (the benchmark's Setting-B methods follow it
    too): at least ``1 - low_fidelity_share`` of the budget (default: 5 target runs) is kept for whole target
    runs; the cheaper levels run cheapest first, each within its share (at most ``level_share`` of the budget)
    until it stagnates; once a costlier level has run no cheaper one runs again; then the target, while a run
    is affordable. This class adds the fidelity of each level and reads which level a fidelity is.

    Example:
        >>> levels = parse_levels([{"n": 1, "cost": 1.0}, {"n": 10, "cost": 10.0}], ["n"])
        >>> s = CostSchedule(levels, target={"n": 10})
        >>> s.budget, s.choose({}).level, s.choose({0: 12.0}).level
        (50.0, 0, 1)
    """

    def __init__(
        self,
        levels: Sequence[FidelityLevel],
        *,
        target: Mapping[str, float],
        budget: float | None = None,
        low_fidelity_share: float = 0.4,
        **rule: Any,
    ) -> None:
        idx = [i for i, lv in enumerate(levels) if same_fidelity(lv.fidelity, target)]
        if not idx:
            raise ValueError(
                f"target={dict(target)!r} is not one of fidelity_levels {[lv.fidelity for lv in levels]!r}; "
                "add the target level (with its cost) to fidelity_levels"
            )
        self.levels = list(levels)
        super().__init__([lv.cost for lv in self.levels], idx[0], budget, names=[lv.name for lv in self.levels],
                         low_fidelity_share=low_fidelity_share, **rule)

    @property
    def target(self) -> FidelityLevel:
        return self.levels[self.target_index]

    def level_of(self, fidelity: Mapping[str, float]) -> int | None:
        """Index of the level with this fidelity, or ``None``."""
        for i, lv in enumerate(self.levels):
            if same_fidelity(lv.fidelity, fidelity):
                return i
        return None

    def rule_options(self) -> dict[str, Any]:
        """The rule's parameters besides the levels and the budget (for saving a schedule)."""
        return {"low_fidelity_share": self.low_fidelity_share, "level_share": self.level_share,
                "patience": self.patience, "min_runs": self.min_runs, "min_improvement": self.min_improvement}

    def describe(self, level: int, spent_by_level: Mapping[int | None, float], reason: str = "") -> str:
        """The ``autollm:schedule`` text of a run at ``level``: where it runs, why, and the budget so far."""
        lv = self.levels[level]
        spent = float(sum(spent_by_level.values()))
        what = "the target" if level == self.target_index else "a cheaper level"
        why = f" Why: {reason}." if reason else ""
        return (
            f"Cost-aware: runs at {what} ({lv.name}, cost {lv.cost:.4g}); {spent:.4g} of the budget "
            f"{self.budget:.4g} was spent or committed before this run.{why}"
        )


#: One run as :meth:`SamplerCore.choose_level` reads it: ``(fidelity, cost, finished, value)``.
LevelRun = tuple[Mapping[str, float] | None, float | None, bool, float | None]

#: ``SamplerCore.seed_for`` keys of the proposals that are not trials: the recommendation and the explanation.
RECOMMEND_KEY = 2**31 - 1
EXPLAIN_KEY = 2**31 - 2

_LEVELS_NEED_AXES = "fidelity_levels= needs fidelity=(axis, ...) and target= as well; name the fidelity axes"


class SamplerCore:
    """What the Optuna, Ray and ask/tell frontends share: the fidelity axes and target, the cost-aware
    schedule, the agent and the seed.

    Each frontend holds one (``_core``) and delegates to it, so the ``fidelity=`` / ``target=`` /
    ``fidelity_levels=`` / ``budget=`` / ``agent=`` checks, the agent's loading and the budget bookkeeping
    are written once. The agent is resolved on first use (:meth:`load_agent` resolves it now) and is left out
    of a pickle unless it was given as an :class:`Agent` object: it is resolved again from its name or path.

    Raises:
        ValueError: on inconsistent arguments (the message names both and the fix); ``levels_need`` is the
            message when ``fidelity_levels=`` comes without fidelity axes.
        TypeError: if ``agent`` is neither an :class:`Agent` nor a string / path.

    Example:
        >>> core = SamplerCore(("n",), {"n": 10}, agent="classical", seed=0,
        ...                    fidelity_levels=[{"n": 1, "cost": 1.0}, {"n": 10, "cost": 10.0}])
        >>> core.target, core.schedule.budget, core.level_cost({"n": 1.0})
        ({'n': 10.0}, 50.0, 1.0)
    """

    def __init__(
        self,
        fidelity: Sequence[str] | str = (),
        target: Mapping[str, float] | None = None,
        *,
        agent: AgentSpec = "default",
        seed: int | None = None,
        fidelity_levels: Sequence[Mapping[str, Any]] | None = None,
        budget: float | None = None,
        low_fidelity_share: float = 0.4,
        levels_need: str = _LEVELS_NEED_AXES,
        budget_rule: Mapping[str, Any] | None = None,
        **rule: Any,
    ) -> None:
        rule = {**check_budget_rule(budget_rule), **rule}
        self.axes: tuple[str, ...] = (fidelity,) if isinstance(fidelity, str) else tuple(fidelity)
        if fidelity_levels is not None and not self.axes:
            raise ValueError(levels_need)
        if budget is not None and fidelity_levels is None:
            raise ValueError("budget= only applies to the cost-aware mode; pass fidelity_levels= too, or drop budget=")
        if rule and fidelity_levels is None:
            raise ValueError("budget_rule= only applies to the cost-aware mode; pass fidelity_levels= too, or drop it")
        self.target: dict[str, float] = check_target(self.axes, target)
        self.schedule: CostSchedule | None = None
        if fidelity_levels is not None:
            self.schedule = CostSchedule(
                parse_levels(fidelity_levels, self.axes), target=self.target, budget=budget,
                low_fidelity_share=low_fidelity_share, **rule,
            )
        self.agent_spec: AgentSpec = check_agent_spec(agent)
        self._agent: Agent | None = agent if isinstance(agent, Agent) else None
        self.seed: int | None = None if seed is None else int(seed)
        self.seed_base: int = self.seed if self.seed is not None else fresh_seed()

    # ------------------------------------------------------------------ agent
    @property
    def agent(self) -> Agent:
        """The agent, resolved from ``agent=`` on first use (``"default"`` may fall back to classical)."""
        return self.load_agent()

    def load_agent(self) -> Agent:
        """Resolve the agent now if it is not yet (an explicit checkpoint that cannot load raises here)."""
        if self._agent is None:
            self._agent = resolve_agent(self.agent_spec)
        return self._agent

    def set_agent_spec(self, agent: AgentSpec) -> None:
        """Use another ``agent=`` from now on (resolved on first use)."""
        self.agent_spec = check_agent_spec(agent)
        self._agent = agent if isinstance(agent, Agent) else None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if not isinstance(self.agent_spec, Agent):
            state["_agent"] = None  # resolved again from its name or path when used
        return state

    # ------------------------------------------------------------------ seeds, target
    def seed_for(self, *keys: int) -> int:
        """The seed of one proposal step (``keys``, e.g. the trial number); see :func:`derive_seed`."""
        return derive_seed(self.seed_base, *keys)

    def reseed(self) -> None:
        """Draw a fresh seed base (the proposals that follow are no longer reproducible)."""
        self.seed_base = fresh_seed()

    def is_target(self, fidelity: Mapping[str, float]) -> bool:
        """Whether ``fidelity`` (every axis given) is the target."""
        return same_fidelity(fidelity, self.target)

    # ------------------------------------------------------------------ cost-aware mode
    def require_schedule(self, what: str, fix: str = "pass fidelity_levels=[...]") -> CostSchedule:
        """The schedule, or a ``ValueError`` saying that ``what()`` needs the cost-aware mode."""
        if self.schedule is None:
            raise ValueError(f"{what}() needs the cost-aware mode; {fix}")
        return self.schedule

    def level_cost(self, fidelity: Mapping[str, float]) -> float | None:
        """The cost of one run at ``fidelity`` when it is one of the levels, else (or without levels) ``None``."""
        if self.schedule is None:
            return None
        level = self.schedule.level_of(fidelity)
        return self.schedule.levels[level].cost if level is not None else None

    def spent_by_level(self, runs: Iterable[tuple[Mapping[str, float] | None, float | None]]) -> dict[int | None, float]:
        """Budget spent per level index (``None``: runs at no level) by ``(fidelity, cost)`` pairs.

        A run without a cost spends its level's cost (nothing at no level); a fidelity of ``None`` (unreadable)
        is at no level, an empty one at the target. Cost-aware mode only.
        """
        schedule = self.require_schedule("spent_by_level")
        spent: dict[int | None, float] = {}
        for fid, cost in runs:
            level = self._level(schedule, fid)
            c = cost if cost is not None else (schedule.levels[level].cost if level is not None else 0.0)
            spent[level] = spent.get(level, 0.0) + c
        return spent

    @staticmethod
    def _level(schedule: CostSchedule, fid: Mapping[str, float] | None) -> int | None:
        return None if fid is None else (schedule.level_of(fid) if fid else schedule.target_index)

    def choose_level(self, runs: Iterable[LevelRun], direction: str, dims: int | None = None
                     ) -> tuple[BudgetChoice, dict[int | None, float]]:
        """The cost-aware rule's choice for the next run, and the budget spent per level, given every run so far.

        ``runs`` are ``(fidelity, cost, finished, value)``: a run without a cost spends its level's cost; a
        finished run's ``value`` (``None``: failed or pruned) tells whether its level still improves; a running
        one commits its cost. ``direction`` is ``"minimize"`` or ``"maximize"``; ``dims`` the search space's
        number of parameters when known (more parameters get more cheap runs before a level may stagnate).
        Cost-aware mode only.
        """
        schedule = self.require_schedule("choose_level")
        items = list(runs)
        spent = self.spent_by_level((fid, cost) for fid, cost, _, _ in items)
        values: dict[int, list[float | None]] = {}
        for fid, _, finished, value in items:
            level = self._level(schedule, fid)
            if finished and level is not None:
                values.setdefault(level, []).append(finite_or_none(value))
        d: Direction = "maximize" if direction == "maximize" else "minimize"
        return schedule.choose(spent, values, d, dims=dims), spent


def history_items(history: Any) -> list[Trial | Mapping[str, Any]]:
    """The trials of ``history=`` (the searcher's and ask/tell's): a History, a JSONL/JSON/CSV file path, or a
    list of trial dicts (or :class:`Trial` objects).

    Raises:
        TypeError: for anything else (a dict, a number), naming what is accepted.
    """
    if history is None:
        return []
    if isinstance(history, History):
        return list(history.trials)
    if isinstance(history, (str, os.PathLike)):
        return list(History.load(history).trials)  # by suffix: .csv, .json, else JSON lines
    if isinstance(history, (Mapping, bytes)) or not isinstance(history, Iterable):
        raise TypeError(
            f"history= must be a History, a path to a .jsonl/.json/.csv history file, or a list of trial dicts "
            f"{{'params', 'fidelity', 'value', 'state'}}; got {type(history).__name__}"
        )
    items = list(history)
    for i, item in enumerate(items):
        if not isinstance(item, (Trial, Mapping)):
            raise TypeError(f"history[{i}] is a {type(item).__name__}; each trial must be a dict or a Trial")
    return items
