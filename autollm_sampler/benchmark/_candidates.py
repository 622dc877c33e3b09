"""Lookup and snapping over one cell's candidate table (the rows a method may propose).

The benchmark, not the method, decides what a proposal means: a configuration that is a row of the cell's
table is evaluated as is; an off-table one is snapped to the nearest *untried* row and counted as invalid;
an already-tried row is replaced by the nearest untried row and counted as a repeat (so no method wastes a
target evaluation on a configuration whose outcome it already knows). In Setting B, rows that cost more
than the budget left are treated like tried ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from autollm_sampler.space import SearchSpace, project_unit

__all__ = ["CandidateIndex", "candidate_index", "Resolution", "resolve_proposal"]


class CandidateIndex:
    """Exact lookup and nearest-row search over a list of configurations in one space.

    Example:
        >>> from autollm_sampler.space import SearchSpace
        >>> space = SearchSpace.from_dict({"params": {"x": {"type": "categorical", "choices": [1, 2, 4]}}})
        >>> idx = CandidateIndex(space, [{"x": 1}, {"x": 4}])
        >>> idx.find({"x": 4}), idx.find({"x": 2}), idx.nearest({"x": 2}, exclude={0})
        (1, None, 1)
    """

    def __init__(self, space: SearchSpace, candidates: Sequence[Mapping[str, Any]]) -> None:
        if len(candidates) == 0:
            raise ValueError("candidates is empty; a cell needs at least one row")
        self.space = space
        self.candidates = candidates
        self.keys = [space.config_key(c) for c in candidates]
        self._rows: dict[tuple[Any, ...], int] = {}
        for i, k in enumerate(self.keys):
            self._rows.setdefault(k, i)
        self.unit = space.to_unit_many(candidates)

    def __len__(self) -> int:
        return len(self.candidates)

    def find(self, params: Mapping[str, Any]) -> int | None:
        """Row of an exact configuration, or ``None`` when it is not on the table."""
        try:
            return self._rows.get(self.space.config_key(params))
        except (KeyError, TypeError, ValueError):
            return None

    def unit_of(self, params: Mapping[str, Any]) -> np.ndarray:
        """Unit-cube position of any configuration (carried into this space when off the grid)."""
        row = self.find(params)
        if row is not None:
            return np.asarray(self.unit[row])
        return project_unit(params, None, self.space)

    def order(self, point: np.ndarray) -> np.ndarray:
        """Row indices sorted by squared distance to a unit-cube point (stable for ties)."""
        d = np.sum((self.unit - np.asarray(point, dtype=float)) ** 2, axis=1)
        return np.argsort(d, kind="stable")

    def nearest(self, params: Mapping[str, Any] | np.ndarray, *, exclude: set[int] | frozenset[int] = frozenset()) -> int:
        """The nearest row not in ``exclude`` (the nearest overall when every row is excluded)."""
        point = params if isinstance(params, np.ndarray) else self.unit_of(params)
        order = self.order(point)
        for i in order:
            if int(i) not in exclude:
                return int(i)
        return int(order[0])


_CACHE: dict[tuple[str, str, int], CandidateIndex] = {}


def candidate_index(task_id: str, cell: str, space: SearchSpace, candidates: Sequence[Mapping[str, Any]]) -> CandidateIndex:
    """A per-process cached :class:`CandidateIndex` of one cell of one task."""
    key = (task_id, cell, len(candidates))
    idx = _CACHE.get(key)
    if idx is None:
        idx = CandidateIndex(space, candidates)
        _CACHE[key] = idx
    return idx


class Resolution(NamedTuple):
    """The row evaluated for a proposal and how the proposal was treated.

    ``invalid``: the proposal was off the table (snapped). ``repeat``: it named an already-evaluated row
    (replaced). ``over_budget``: Setting B, it named a row whose cost exceeds what is left (replaced by the
    nearest affordable one).
    """

    row: int
    invalid: bool
    repeat: bool
    over_budget: bool = False


def resolve_proposal(
    index: CandidateIndex,
    params: Mapping[str, Any],
    tried: set[int],
    unaffordable: set[int] | frozenset[int] = frozenset(),
) -> Resolution:
    """Map a proposal to the row that will be evaluated (see the module docstring for the rules).

    Replacement rows are the nearest rows that are neither tried nor unaffordable; when no such row is
    left, the nearest untried row (or the proposal's own row) is returned and the caller decides.
    """
    blocked = set(tried) | set(unaffordable)
    row = index.find(params)
    if row is None:
        return Resolution(index.nearest(params, exclude=blocked), True, False)
    if row in blocked and len(blocked) < len(index):
        return Resolution(index.nearest(np.asarray(index.unit[row]), exclude=blocked), False, row in tried,
                          row not in tried)
    return Resolution(row, False, False)
