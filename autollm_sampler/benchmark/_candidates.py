"""Lookup and snapping over one cell's candidate table (the rows a method may propose).

The benchmark, not the method, decides what a proposal means: a configuration that is a row of the cell's
table is evaluated as is; an off-table one is snapped to the nearest *untried* row and counted as invalid;
an already-tried row is replaced by the nearest untried row and counted as a repeat (so no method wastes a
target evaluation on a configuration whose outcome it already knows). In Setting B, rows that cost more
than the budget left are treated like tried ones.

Lookup and nearest-row search are the core :class:`~autollm_sampler.candidates.CandidateIndex` (the one the gym's
cells and the agents use); this module adds the per-process cache and the benchmark's rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from autollm_sampler.candidates import CandidateIndex
from autollm_sampler.space import SearchSpace

__all__ = ["CandidateIndex", "candidate_index", "Resolution", "resolve_proposal"]


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
