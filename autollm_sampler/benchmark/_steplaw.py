"""The Step Law scaling rule as a baseline: refit on the cheaper cells only, predict, snap to the grid.

Step Law (Li et al., arXiv 2503.04715) gives the optimal peak learning rate and batch size as power laws:
``lr* = a * N**b * D**c`` and ``B* = d * D**e``, with ``N`` the non-embedding parameters (for MoE, the
active parameters ``Na``), ``D`` the training tokens and ``B*`` in *tokens* (batch size in sequences times
2,048). The paper's own fit (:data:`PAPER_RULE`) saw every cell, including our test targets, so the fair
baseline (:class:`StepLawRulePolicy`) refits both laws by least squares in log space on the per-cell
optima of the history cells only, predicts the target's ``(lr*, B*)``, and proposes the nearest grid row,
then its untried neighbours, nearest first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from autollm_sampler.benchmark._candidates import CandidateIndex
from autollm_sampler.benchmark._policies import BenchPolicy, _index, _tried_rows
from autollm_sampler.gym import Observation
from autollm_sampler.history import Trial
from autollm_sampler.space import SearchSpace, project_unit

__all__ = [
    "SEQ_LEN",
    "StepLawRule",
    "PAPER_RULE",
    "StepLawAxes",
    "steplaw_axes",
    "cell_optima",
    "StepLawRulePolicy",
    "rule_row",
]

#: Tokens per sequence in the Step Law runs (batch size ``bs`` is in sequences).
SEQ_LEN = 2048


@dataclass(frozen=True)
class StepLawRule:
    """``lr* = a * N**b * D**c`` and ``B*_tokens = d * D**e``.

    Example:
        >>> rule = StepLawRule.fit([(1e8, 1e9, 1e-3, 1e5), (1e8, 1e10, 2e-3, 4e5), (1e9, 1e10, 1e-3, 4e5)])
        >>> round(rule.lr(1e9, 1e10), 6), round(rule.batch_tokens(1e10))
        (0.001, 400000)
    """

    a: float
    b: float
    c: float
    d: float
    e: float

    def lr(self, n: float, d_tokens: float) -> float:
        return float(self.a * n**self.b * d_tokens**self.c)

    def batch_tokens(self, d_tokens: float) -> float:
        return float(self.d * d_tokens**self.e)

    @classmethod
    def fit(cls, points: Sequence[tuple[float, float, float, float]]) -> StepLawRule:
        """Least squares in log space on ``(N, D, lr*, B*_tokens)`` points (one per cell).

        A regressor that does not vary across the points (one model size, or one token budget) is
        dropped, i.e. its exponent is fixed at 0, instead of producing an arbitrary extrapolation.

        Raises:
            ValueError: with no points, or a non-positive value.
        """
        if len(points) == 0:
            raise ValueError("no cells to fit the Step Law rule on; it needs at least one cell's optimum")
        arr = np.asarray(points, dtype=float)
        if np.any(arr <= 0) or not np.all(np.isfinite(arr)):
            raise ValueError(f"Step Law points must be positive and finite, got {points!r}")
        logs = np.log(arr)
        ln_n, ln_d, ln_lr, ln_b = logs.T
        coef_lr = _lstsq(ln_lr, [ln_n, ln_d])
        coef_b = _lstsq(ln_b, [ln_d])
        return cls(a=math.exp(coef_lr[0]), b=coef_lr[1], c=coef_lr[2], d=math.exp(coef_b[0]), e=coef_b[1])


def _lstsq(y: np.ndarray, regressors: Sequence[np.ndarray]) -> list[float]:
    """Intercept and slopes; a constant (or collinear) regressor gets slope 0."""
    cols = [np.ones_like(y)]
    used: list[int] = []
    for j, x in enumerate(regressors):
        trial = np.column_stack([*cols, x])
        if np.ptp(x) > 1e-9 and np.linalg.matrix_rank(trial) == trial.shape[1]:
            cols.append(x)
            used.append(j)
    sol, *_ = np.linalg.lstsq(np.column_stack(cols), y, rcond=None)
    out = [float(sol[0])] + [0.0] * len(regressors)
    for k, j in enumerate(used):
        out[1 + j] = float(sol[1 + k])
    return out


#: The paper's published fit (all cells, so it has seen our test targets); for the anchors table only.
PAPER_RULE = StepLawRule(a=1.79, b=-0.713, c=0.307, d=0.58, e=0.571)


@dataclass(frozen=True)
class StepLawAxes:
    """Where a task keeps Step Law's quantities: fidelity axes for N and D, parameter names for lr and bs."""

    n_axis: str
    d_axis: str
    lr_param: str
    bs_param: str


def steplaw_axes(space: SearchSpace, fidelity: Mapping[str, float]) -> StepLawAxes | None:
    """The Step Law axes of a cell, or ``None`` when the rule does not apply to it."""
    n_axis = "n_params" if "n_params" in fidelity else ("n_active_params" if "n_active_params" in fidelity else None)
    if n_axis is None or "n_tokens" not in fidelity:
        return None
    lr = [n for n in space.params if space.role_of(n) == "lr"]
    bs = [n for n in space.params if space.role_of(n) == "batch_size"]
    if len(lr) != 1 or len(bs) != 1:
        return None
    return StepLawAxes(n_axis, "n_tokens", lr[0], bs[0])


def cell_optima(trials: Sequence[Trial], axes: StepLawAxes, direction: str) -> list[tuple[float, float, float, float]]:
    """``(N, D, lr*, B*_tokens)`` of the best completed run of every cell among ``trials``."""
    sign = 1.0 if direction == "minimize" else -1.0
    best: dict[str, Trial] = {}
    for t in trials:
        if not t.is_complete:
            continue
        key = str(t.attrs.get("cell", sorted(t.fidelity.items())))
        if key not in best or sign * float(t.value) < sign * float(best[key].value):  # type: ignore[arg-type]
            best[key] = t
    return [
        (float(t.fidelity[axes.n_axis]), float(t.fidelity[axes.d_axis]),
         float(t.params[axes.lr_param]), float(t.params[axes.bs_param]) * SEQ_LEN)
        for t in best.values()
    ]


def rule_row(rule: StepLawRule, axes: StepLawAxes, fidelity: Mapping[str, float], index: CandidateIndex,
             exclude: set[int] | frozenset[int] = frozenset()) -> int:
    """The grid row nearest to the rule's prediction at ``fidelity`` (not in ``exclude``)."""
    return index.nearest(rule_point(rule, axes, fidelity, index.space), exclude=exclude)


def rule_point(rule: StepLawRule, axes: StepLawAxes, fidelity: Mapping[str, float], space: SearchSpace) -> np.ndarray:
    """The rule's predicted ``(lr*, B*)`` at ``fidelity`` as a point in ``space``'s unit cube."""
    n, d = float(fidelity[axes.n_axis]), float(fidelity[axes.d_axis])
    pred: dict[str, Any] = {axes.lr_param: rule.lr(n, d), axes.bs_param: rule.batch_tokens(d) / SEQ_LEN}
    return project_unit(pred, None, space)


class StepLawRulePolicy(BenchPolicy):
    """Refit Step Law on the history cells' optima, propose the nearest grid row, then its neighbours.

    Applies to Setting A on Step Law tasks (dense and MoE; for MoE, ``Na`` stands in for ``N``).
    """

    name = "steplaw-rule"
    deterministic = True
    settings = ("A",)

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.rule: StepLawRule | None = None
        self._order: list[int] = []

    def reset(self, obs: Observation, *, seed: int | None = None) -> None:
        super().reset(obs, seed=seed)
        axes = steplaw_axes(obs.space, obs.target.fidelity)
        if axes is None:
            raise ValueError(
                f"task {obs.task_id!r} has no Step Law axes (fidelity n_params|n_active_params and n_tokens, "
                "parameters with roles lr and batch_size); run steplaw-rule on Step Law tasks only"
            )
        cheap = [t for t in obs.history.trials if t.attrs.get("cell") != obs.target.name]
        points = cell_optima(cheap, axes, obs.direction)
        if not points:
            raise ValueError(f"{obs.task_id}:{obs.target.name}: no history cells to refit the Step Law rule on")
        self.rule = StepLawRule.fit(points)
        index = _index(obs, obs.target.name)
        self._order = [int(i) for i in index.order(rule_point(self.rule, axes, obs.target.fidelity, obs.space))]

    def act(self, obs: Observation) -> dict[str, Any]:
        tried = _tried_rows(obs, obs.target.name)
        for row in self._order:
            if row not in tried:
                return dict(obs.candidates[row])
        return dict(obs.candidates[self._order[0]])
