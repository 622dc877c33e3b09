"""The one index over a finite list of candidate configurations: exact lookup and nearest-row search.

Wherever a finite list of configurations is given (a gym cell's table, the benchmark's grid, a caller's
``candidates=`` list), a configuration is looked up and snapped through :class:`CandidateIndex`:

* **exact lookup** by :meth:`SearchSpace.config_key` (floats compared to 10 significant digits; the first
  row wins when two rows share a key);
* **nearest rows** by squared distance in the space's unit cube, ties broken by row order (a stable sort),
  optionally skipping rows that are excluded (tried, pending, unaffordable).

Users of it: the gym's :class:`~autollm_sampler.gym.Cell` (``find``, ``snap``), the benchmark's proposal
resolution, the classical transfer strategy (:mod:`autollm_sampler.strategies`), and both agent backends when a
caller gives ``candidates``. It is core: it imports only :mod:`autollm_sampler.space` and numpy.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from autollm_sampler.space import SearchSpace, project_unit

__all__ = ["CandidateIndex", "squared_distances", "nearest_each"]


def squared_distances(units: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Squared distance of every unit-cube row of ``units`` to ``point``."""
    return np.sum((units - np.asarray(point, dtype=float)) ** 2, axis=1)  # type: ignore[no-any-return]


def nearest_each(units: np.ndarray, points: np.ndarray, exclude: Iterable[int] = ()) -> list[int]:
    """For each unit-cube point in turn, its nearest row of ``units`` (stable order) neither in ``exclude`` nor
    taken by an earlier point; a point finds none once every row is taken."""
    out: list[int] = []
    taken = set(exclude)
    for p in np.atleast_2d(points):
        for i in np.argsort(squared_distances(units, p), kind="stable"):
            if int(i) not in taken:
                out.append(int(i))
                taken.add(int(i))
                break
    return out


class CandidateIndex:
    """Exact lookup and nearest-row search over a list of configurations in one space.

    ``candidates`` is kept as given (not copied); the unit-cube rows are computed on first use.

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
        self.keys: list[tuple[Any, ...]] = [space.config_key(c) for c in candidates]
        self._rows = _first_rows(self.keys)

    def __len__(self) -> int:
        return len(self.candidates)

    @cached_property
    def unit(self) -> np.ndarray:
        """Every row in the unit cube, shape ``(rows, width)`` (:meth:`SearchSpace.to_unit_many`)."""
        return self.space.to_unit_many(self.candidates)

    @cached_property
    def configs(self) -> list[dict[str, Any]]:
        """The rows as plain dicts, copied once (what a proposer hands out)."""
        return [dict(c) for c in self.candidates]

    def subset(self, rows: Sequence[int]) -> CandidateIndex:
        """The index of some rows (in the given order), reusing the keys and unit rows computed here."""
        if len(rows) == 0:
            raise ValueError("candidates is empty; a cell needs at least one row")
        sub = object.__new__(CandidateIndex)
        sub.space = self.space
        sub.candidates = [self.candidates[i] for i in rows]
        sub.keys = [self.keys[i] for i in rows]
        sub._rows = _first_rows(sub.keys)
        sub.__dict__["unit"] = self.unit[list(rows)]
        return sub

    # ------------------------------------------------------------------ exact lookup
    def find(self, params: Mapping[str, Any]) -> int | None:
        """Row of an exact configuration, or ``None`` when it is not in the list (or cannot be keyed)."""
        try:
            return self._rows.get(self.space.config_key(params))
        except (KeyError, TypeError, ValueError):
            return None

    def rows_with_keys(self, keys: Collection[tuple[Any, ...]]) -> set[int]:
        """Every row whose config key is in ``keys`` (all copies of a duplicated row)."""
        return {i for i, k in enumerate(self.keys) if k in keys}

    def unit_of(self, params: Mapping[str, Any]) -> np.ndarray:
        """Unit-cube position of any configuration: its row's when listed, else carried into this space by name
        and magnitude (:func:`~autollm_sampler.space.project_unit`)."""
        row = self.find(params)
        if row is not None:
            return np.asarray(self.unit[row])
        return project_unit(params, None, self.space)

    # ------------------------------------------------------------------ nearest rows
    def distances(self, point: np.ndarray) -> np.ndarray:
        """Squared unit-cube distance of every row to ``point``."""
        return squared_distances(self.unit, point)

    def order(self, point: np.ndarray) -> np.ndarray:
        """Row indices sorted by squared distance to a unit-cube point (stable: ties keep row order)."""
        return np.argsort(self.distances(point), kind="stable")

    def nearest(self, params: Mapping[str, Any] | np.ndarray, *, exclude: Collection[int] = frozenset()) -> int:
        """The nearest row not in ``exclude`` (the nearest overall when every row is excluded).

        ``params`` is a unit-cube point or a configuration (placed by :meth:`unit_of`). The result is the first
        allowed row of :meth:`order`.
        """
        point = params if isinstance(params, np.ndarray) else self.unit_of(params)
        d = self.distances(point)
        best = int(np.argmin(d))  # the first row of the stable order, unless a distance is NaN
        if not math.isnan(float(d[best])) and best not in exclude:
            return best
        order = np.argsort(d, kind="stable")
        for i in order:
            if int(i) not in exclude:
                return int(i)
        return int(order[0])

    def nearest_each(self, points: np.ndarray, exclude: Iterable[int] = ()) -> list[int]:
        """For each unit-cube point in turn, its nearest row neither excluded nor taken by an earlier point."""
        return nearest_each(self.unit, points, exclude)


def _first_rows(keys: Sequence[tuple[Any, ...]]) -> dict[tuple[Any, ...], int]:
    rows: dict[tuple[Any, ...], int] = {}
    for i, k in enumerate(keys):
        rows.setdefault(k, i)
    return rows
