"""The cost-aware budget rule: at which fidelity level the next run goes (Setting B).

One rule, used by every frontend of the cost-aware mode (the Optuna sampler, the Ray searcher, the ask/tell
API, through :class:`autollm_sampler.integrations._common.CostSchedule`) and by the benchmark's Setting-B
methods, so the benchmark measures what users get. It knows levels only by their cost per run; the callers map
their fidelities (or the gym's cells) to level indices.

The rule:

* **Target reserve.** At least ``1 - low_fidelity_share`` of the budget (default 60%) is kept for target
  runs, in whole runs; what rounding leaves over goes to the cheaper levels (the *cheap pool*).
* **Cheap levels, cheapest first.** Each level cheaper than the target may spend at most ``level_share`` of
  the budget (default 25%; never less than an even split of the cheap pool, so a single cheap level may use
  the whole pool) and at most its part of the cheap pool: what the cheaper levels left of the pool,
  split evenly over the cheap levels not yet passed. So a level that finished early passes its savings on.
* **Stagnation.** A cheap level is finished once it stagnates: after at least ``min_runs`` finished runs
  (``patience`` plus one per two parameters of the space when that is more and the caller says how many
  there are),
  its best value did not improve by more than ``min_improvement`` times the gap between its median and best
  values in its last ``patience`` finished runs (a failed run improves nothing).
* **Monotone climb.** Once a more expensive level has a run (finished or running), a cheaper one gets no
  more runs: evidence flows from cheap to expensive, never back.
* **Then the target**, while a target run is affordable. Budget left over that affords no target run is
  left unspent (``level is None``: the budget is spent).

Levels at least as expensive as the target (other than the target) are never chosen.

Example:
    >>> rule = BudgetRule([1.0, 8.0, 70.0], target=2, budget=350.0, names=["small", "medium", "target"])
    >>> rule.target_runs, rule.cheap_pool
    (3, 140.0)
    >>> rule.choose({}).level
    0
    >>> rule.choose({0: 12.0}, {0: [3.0] * 12}).reason
    'medium: small stagnated after 12 runs; medium has spent 0 of its 87.5'
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["BudgetChoice", "BudgetRule", "Direction", "pick_ladder"]

Direction = Literal["minimize", "maximize"]


@dataclass(frozen=True)
class BudgetChoice:
    """What :meth:`BudgetRule.choose` decided: the level index (``None``: the budget is spent) and why."""

    level: int | None
    reason: str


def _check_fraction(name: str, value: object, *, low_open: bool, high_open: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ValueError(f"{name}={value!r} must be a finite number")
    v = float(value)
    ok_low = v > 0 if low_open else v >= 0
    ok_high = v < 1 if high_open else v <= 1
    if not (ok_low and ok_high):
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        raise ValueError(f"{name}={value!r} must be in {interval}")
    return v


def _check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an int >= {minimum}")
    return int(value)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


class BudgetRule:
    """The cost-aware rule over levels given by their cost per run (see the module docstring).

    Args:
        costs: cost of one run per level (finite, > 0).
        target: index of the target level in ``costs``.
        budget: total budget, in the unit of the costs; default five target runs.
        names: level names for the reasons (default ``level <i>``).
        low_fidelity_share: at most this share of the budget goes to the cheaper levels (in ``[0, 1)``); the
            rest is reserved for target runs, rounded up to whole runs.
        level_share: at most this share of the budget goes to any one cheaper level (in ``(0, 1]``).
        patience: a cheap level stagnates when its last ``patience`` finished runs did not improve its best.
        min_runs: finished runs a cheap level gets before it may be called stagnant (>= ``patience + 1``).
        min_improvement: an improvement smaller than this share of the gap between the level's median and best
            values does not count (``>= 0``).

    Raises:
        ValueError: naming the argument that is out of range.
    """

    def __init__(
        self,
        costs: Sequence[float],
        target: int,
        budget: float | None = None,
        *,
        names: Sequence[str] | None = None,
        low_fidelity_share: float = 0.4,
        level_share: float = 0.25,
        patience: int = 4,
        min_runs: int = 8,
        min_improvement: float = 0.01,
    ) -> None:
        self.costs = [float(c) for c in costs]
        if not self.costs or any(not math.isfinite(c) or c <= 0 for c in self.costs):
            raise ValueError(f"costs={list(costs)!r} must be a non-empty list of finite costs > 0")
        if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < len(self.costs):
            raise ValueError(f"target={target!r} must be the index of one of the {len(self.costs)} levels")
        self.target_index = int(target)
        self.names = [str(n) for n in names] if names is not None else [f"level {i}" for i in range(len(self.costs))]
        if len(self.names) != len(self.costs):
            raise ValueError(f"names has {len(self.names)} entries for {len(self.costs)} levels; give one per level")
        self.low_fidelity_share = _check_fraction("low_fidelity_share", low_fidelity_share, low_open=False, high_open=True)
        self.level_share = _check_fraction("level_share", level_share, low_open=True, high_open=False)
        self.patience = _check_count("patience", patience, 1)
        self.min_runs = _check_count("min_runs", min_runs, 1)
        if self.min_runs <= self.patience:
            raise ValueError(
                f"min_runs={min_runs!r} must be larger than patience={patience!r}: stagnation compares the best "
                "value before the last `patience` runs with the best after them"
            )
        if isinstance(min_improvement, bool) or not isinstance(min_improvement, (int, float)) or not (
            math.isfinite(float(min_improvement)) and float(min_improvement) >= 0
        ):
            raise ValueError(f"min_improvement={min_improvement!r} must be a finite number >= 0")
        self.min_improvement = float(min_improvement)
        tc = self.costs[self.target_index]
        if budget is None:
            budget = 5.0 * tc
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not math.isfinite(float(budget)) or budget <= 0:
            raise ValueError(f"budget={budget!r} must be a finite number > 0 (in the same unit as the level costs)")
        self.budget = float(budget)
        self._eps = 1e-9 * self.budget
        affordable_runs = math.floor(self.budget / tc + 1e-9)
        wanted = math.ceil((1.0 - self.low_fidelity_share) * self.budget / tc - 1e-9)
        #: whole target runs reserved for the target
        self.target_runs = max(0, min(affordable_runs, wanted))
        #: the budget the cheaper levels may share (what the target reserve leaves)
        self.cheap_pool = max(0.0, self.budget - self.target_runs * tc)
        cheap = [i for i, c in enumerate(self.costs) if i != self.target_index and c < tc]
        #: the cheaper levels, cheapest first: the order of the climb
        self.cheap_order = sorted(cheap, key=lambda i: (self.costs[i], i))
        #: the most any one cheap level may spend: ``level_share`` of the budget, or an even split of the cheap
        #: pool when that is more (one cheap level may use the whole pool)
        self.level_cap = max(self.level_share * self.budget, self.cheap_pool / max(len(self.cheap_order), 1))

    # ------------------------------------------------------------------ pieces
    @property
    def target_cost(self) -> float:
        return self.costs[self.target_index]

    def remaining(self, spent_by_level: Mapping[int | None, float]) -> float:
        """The budget minus what was spent or committed (key ``None``: runs at no level)."""
        return self.budget - float(sum(spent_by_level.values()))

    def min_runs_for(self, dims: int | None = None) -> int:
        """Finished runs a cheap level gets before it may stagnate, for a space of ``dims`` parameters (a
        mixture counts once): ``min_runs``, or ``patience`` plus one run per two parameters when that is more
        (a space of many parameters needs more cheap evidence before "no longer improving" means anything)."""
        if dims is None or dims <= 0:
            return self.min_runs
        return max(self.min_runs, self.patience + math.ceil(dims / 2))

    def stagnated(self, values: Sequence[float | None], direction: Direction = "minimize", dims: int | None = None) -> bool:
        """Whether a level with these finished values (in order; ``None`` or NaN: failed) has stagnated; ``dims``:
        the number of parameters of the space (see :meth:`min_runs_for`)."""
        if len(values) < self.min_runs_for(dims):
            return False
        sign = -1.0 if direction == "maximize" else 1.0
        scored = [sign * float(v) if v is not None and math.isfinite(float(v)) else math.inf for v in values]
        before = min(scored[: -self.patience])
        best = min(scored)
        if not math.isfinite(best):
            return True  # nothing but failures: running more of them informs nothing
        if not math.isfinite(before):
            return False  # the first success came within the window
        finite = sorted(s for s in scored if math.isfinite(s))
        median = finite[len(finite) // 2] if len(finite) % 2 else 0.5 * (finite[len(finite) // 2 - 1] + finite[len(finite) // 2])
        scale = max(median - best, 1e-12 * max(abs(best), 1.0))
        return before - best <= self.min_improvement * scale

    # ------------------------------------------------------------------ the rule
    def choose(
        self,
        spent_by_level: Mapping[int | None, float],
        values_by_level: Mapping[int, Sequence[float | None]] | None = None,
        direction: Direction = "minimize",
        *,
        closed: Collection[int] = (),
        dims: int | None = None,
    ) -> BudgetChoice:
        """The level of the next run and why.

        Args:
            spent_by_level: cost spent or committed per level index, with a key for every level that has a
                run (finished or running; key ``None``: runs at no level).
            values_by_level: each level's finished values in the order they finished (``None``: a failed or
                pruned run). Without it no level stagnates.
            direction: ``"minimize"`` or ``"maximize"``.
            closed: levels that cannot run any more (e.g. every configuration of a table tried).
            dims: parameters of the search space (a mixture counts once), when known (more parameters get
                more cheap runs before a level may stagnate: :meth:`min_runs_for`).
        """
        if direction not in ("minimize", "maximize"):
            raise ValueError(f"direction={direction!r} must be 'minimize' or 'maximize'")
        values_by_level = values_by_level or {}
        remaining = self.remaining(spent_by_level)
        started = {i for i in spent_by_level if i is not None}
        notes: list[str] = []
        passed: list[str] = []  # cheap levels a costlier run overtook before they ran
        pool_left = self.cheap_pool
        n_cheap = len(self.cheap_order)
        for pos, i in enumerate(self.cheap_order):
            name, cost = self.names[i], self.costs[i]
            spent_i = float(spent_by_level.get(i, 0.0))
            runs_i = len(values_by_level.get(i, ()))
            share = min(self.level_cap, max(0.0, pool_left) / (n_cheap - pos))
            pool_left -= spent_i
            above = [j for j in started if j != i and self.costs[j] > cost]
            if i in closed:
                note = f"{name} has no untried configuration left"
            elif self.stagnated(values_by_level.get(i, ()), direction, dims):
                note = f"{name} stagnated after {runs_i} runs"
            elif spent_i + cost > share + self._eps:
                note = (f"{name} used its share ({_fmt(spent_i)} of {_fmt(share)})" if i in started
                        else f"{name} skipped (a run costs {_fmt(cost)}, its share is {_fmt(share)})")
            elif above:
                note = f"{name} is done after {runs_i} runs (a costlier level has run)"
            else:
                note = ""
            if note:
                if i in started or not above:
                    notes.append(note)
                else:
                    passed.append(name)
                continue
            if cost + self.target_runs * self.target_cost > remaining + self._eps:
                notes.append(f"{name} would cut into the {self.target_runs} target runs kept")
                continue
            why = f"{name} has spent {_fmt(spent_i)} of its {_fmt(share)}"
            if runs_i >= self.min_runs_for(dims):
                why += " and is still improving"
            if passed:
                notes.append(f"{', '.join(passed)} not run (a costlier level ran first)")
            return BudgetChoice(i, f"{name}: " + "; ".join([*notes, why]))
        if passed:
            notes.append(f"{', '.join(passed)} not run (a costlier level ran first)")
        target = self.names[self.target_index]
        if self.target_cost <= remaining + self._eps and self.target_index not in closed:
            n_done = len(values_by_level.get(self.target_index, ()))
            why = f"{target} run, {_fmt(remaining)} of {_fmt(self.budget)} left"
            if not self.cheap_order:
                why += " (no cheaper level)"
            if n_done:
                why += f", {n_done} {target} runs finished"
            return BudgetChoice(self.target_index, f"{target}: " + "; ".join([*notes, why]))
        return BudgetChoice(
            None,
            f"budget spent: {_fmt(remaining)} of {_fmt(self.budget)} left, less than a {target} run "
            f"({_fmt(self.target_cost)}); it is left unspent",
        )


def pick_ladder(
    costs: Sequence[float],
    target: int,
    budget: float | None = None,
    *,
    max_levels: int = 2,
    min_runs: int = 4,
    **rule: float,
) -> list[int]:
    """Which of many cheaper levels to offer the rule: at most ``max_levels``, cheapest first.

    The cheapest level, then repeatedly the most expensive remaining cheaper level whose share (under
    :class:`BudgetRule` with the levels picked so far) still affords ``min_runs`` runs. The benchmark maps a
    task's many cells to levels this way; a user with many possible fidelities can do the same.

    Example:
        >>> pick_ladder([0.1, 0.5, 2.0, 9.0, 10.0], target=4, budget=50.0)
        [0, 2]
    """
    _check_count("max_levels", max_levels, 0)
    _check_count("min_runs", min_runs, 1)
    tc = float(costs[target])
    cheap = sorted((i for i, c in enumerate(costs) if i != target and float(c) < tc), key=lambda i: (float(costs[i]), i))
    picked: list[int] = []
    for _ in range(max_levels):
        rest = [i for i in cheap if i not in picked and (not picked or float(costs[i]) > float(costs[picked[-1]]))]
        fits = []
        for i in rest:
            trial = [*picked, i]
            r = BudgetRule([float(costs[j]) for j in trial] + [tc], len(trial), budget, **rule)  # type: ignore[arg-type]
            pool_share = min(r.level_cap, r.cheap_pool / len(trial))
            if float(costs[i]) * (min_runs if picked else 1) <= pool_share * (1 + 1e-9):
                fits.append(i)
        if not fits:
            break
        picked.append(fits[0] if not picked else max(fits, key=lambda i: (float(costs[i]), -i)))
    return picked
