"""Classical proposal strategies over a :class:`History` and a :class:`SearchSpace`.

These are the simple, dependable strategies that both the gym's reference policies and the agent's
fallback use, so they live in the shared core layer (next to ``space`` and ``history``):

* :func:`random_proposals`: uniform over the space (or over a finite candidate list);
* :func:`transfer_proposals`: the best configurations of the nearest cheaper fidelity cell, carried into
  the target space, best first, then their untried neighbours.

Both skip configurations already tried (``exclude``) while untried ones exist.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from autollm_sampler.candidates import CandidateIndex, nearest_each
from autollm_sampler.history import History, Trial, fidelity_key
from autollm_sampler.space import CategoricalParam, FloatParam, IntParam, SearchSpace, project_unit

__all__ = [
    "log_fidelity_distance", "nearest_cell", "random_proposals", "transfer_proposals", "snap_to_candidates", "grid_configs",
]

#: A finite space of at most this many configurations is enumerated by :func:`grid_configs`.
GRID_ENUMERATE_LIMIT = 20_000


def _logf(x: float) -> float:
    return math.log(x) if x > 0 else x


def log_fidelity_distance(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    """Euclidean distance between two fidelity points on log axes (linear for non-positive values)."""
    keys = set(a) | set(b)
    return math.sqrt(sum((_logf(a.get(k, 0.0)) - _logf(b.get(k, 0.0))) ** 2 for k in keys))


def nearest_cell(history: History, target: Mapping[str, float]) -> list[Trial] | None:
    """Completed trials of the non-target cell nearest to ``target`` on log-fidelity axes."""
    tkey = fidelity_key(target)
    best: tuple[float, list[Trial]] | None = None
    for key, trials in history.cells().items():
        done = [t for t in trials if t.is_complete]
        if key == tkey or not done or not trials[0].fidelity:
            continue
        d = log_fidelity_distance(trials[0].fidelity, target)
        if best is None or d < best[0]:
            best = (d, done)
    return best[1] if best else None


def snap_to_candidates(
    points: np.ndarray, cand_unit: np.ndarray, exclude: set[int]
) -> list[int]:
    """For each unit-cube point, the nearest candidate row not yet excluded (greedy, no repeats):
    :func:`autollm_sampler.candidates.nearest_each`."""
    return nearest_each(cand_unit, points, exclude)


def random_proposals(
    space: SearchSpace,
    n: int,
    rng: np.random.Generator,
    *,
    candidates: Sequence[Mapping[str, Any]] | None = None,
    exclude: Iterable[tuple[Any, ...]] = (),
) -> list[dict[str, Any]]:
    """``n`` distinct random configurations that are not in ``exclude`` (config keys), when possible."""
    seen = set(exclude)
    out: list[dict[str, Any]] = []
    if candidates is not None:
        order = rng.permutation(len(candidates))
        for i in order:
            k = space.config_key(candidates[int(i)])
            if k not in seen:
                out.append(dict(candidates[int(i)]))
                seen.add(k)
            if len(out) == n:
                break
        while len(out) < n and candidates:
            out.append(dict(candidates[int(rng.integers(len(candidates)))]))
        return out
    _take_unseen((space.sample(rng) for _ in range(max(50 * n, 100))), space, seen, out, n)
    if len(out) < n:  # a finite space with few untried configurations left: random draws miss them
        _take_unseen(grid_configs(space, rng), space, seen, out, n)
    while len(out) < n:
        out.append(space.sample(rng))
    return out


def _take_unseen(configs: Iterable[dict[str, Any]], space: SearchSpace, seen: set[Any], out: list[dict[str, Any]],
                 n: int) -> None:
    """Append configurations whose key is not in ``seen`` to ``out`` (updating ``seen``) until it holds ``n``."""
    for c in configs:
        k = space.config_key(c)
        if k not in seen:
            out.append(c)
            seen.add(k)
            if len(out) >= n:  # checked before the next draw, so the random stream is consumed as before
                return


def _grid_values(p: Any) -> list[Any]:
    if isinstance(p, CategoricalParam):
        return list(p.choices)
    if isinstance(p, IntParam):
        return list(range(p.low, p.high + 1, p.step))
    assert isinstance(p, FloatParam) and p.step is not None
    n_max = p.n_steps()
    assert n_max is not None
    return [p._grid_value(min(p.low + k * p.step, p.high), n_max) for k in range(n_max + 1)]


def grid_configs(
    space: SearchSpace, rng: np.random.Generator, *, limit: int = GRID_ENUMERATE_LIMIT, n_sample: int = 4096
) -> list[dict[str, Any]]:
    """Configurations of a finite space, in random order: all of them when there are at most ``limit``,
    else ``n_sample`` random ones. Empty when the space is not finite (continuous floats, a simplex).

    Proposers use it once their random or generated candidates are all tried, so that the last untried
    configurations of a grid are still found.
    """
    size = space.grid_size()
    if size is None:
        return []
    if size > limit:
        return [space.sample(rng) for _ in range(n_sample)]
    names = list(space.params)
    combos = list(itertools.product(*(_grid_values(space.params[n]) for n in names)))
    return [dict(zip(names, combos[int(i)], strict=True)) for i in rng.permutation(len(combos))]


def transfer_proposals(
    history: History,
    space: SearchSpace,
    target: Mapping[str, float],
    n: int,
    rng: np.random.Generator,
    *,
    candidates: Sequence[Mapping[str, Any]] | None = None,
    exclude: Iterable[tuple[Any, ...]] = (),
    source_space: SearchSpace | None = None,
    index: CandidateIndex | None = None,
) -> list[dict[str, Any]]:
    """Best configurations of the nearest cheaper cell, carried into ``space``, best first.

    With no usable cheap evidence this degrades to the best target trials' neighbours, then random.
    ``index`` (a :class:`~autollm_sampler.candidates.CandidateIndex` of ``candidates``) may be passed by a caller
    that proposes repeatedly over the same candidates; ``candidates`` may then be left out.
    """
    if candidates is None and index is not None:
        candidates = index.candidates
    sign = space.sign
    excluded = set(exclude)
    src = nearest_cell(history, target) or [t for t in history.completed() if fidelity_key(t.fidelity) == fidelity_key(target)]
    if not src:
        return random_proposals(space, n, rng, candidates=candidates, exclude=excluded)
    ranked = sorted(src, key=lambda t: sign * float(t.value))  # type: ignore[arg-type]
    out: list[dict[str, Any]] = []
    if candidates is not None and len(candidates) > 0:
        # Each point takes its own nearest free row, so the n best source trials give the n proposals;
        # projecting the rest (thousands of trials in wide spaces) would change nothing.
        points = np.stack([project_unit(t.params, source_space, space) for t in ranked[: max(n, 1)]])
        idx = index if index is not None else CandidateIndex(space, candidates)
        ex_idx = idx.rows_with_keys(excluded)
        rows = idx.nearest_each(points, ex_idx)
        # then neighbours of the best transferred point, nearest first
        if len(rows) < n:
            for i in idx.order(points[0]):
                if int(i) not in ex_idx and int(i) not in rows:
                    rows.append(int(i))
                if len(rows) >= n:
                    break
        return [dict(idx.candidates[i]) for i in rows[:n]]
    points = np.stack([project_unit(t.params, source_space, space) for t in ranked])
    for p in points:
        c = space.from_unit(p)
        k = space.config_key(c)
        if k not in excluded:
            out.append(c)
            excluded.add(k)
        if len(out) == n:
            return out
    # neighbours: small perturbations around the best transferred point
    for _ in range(200 * n):
        if len(out) == n:
            break
        c = space.from_unit(np.clip(points[0] + rng.normal(0, 0.08, size=space.width), 0, 1))
        k = space.config_key(c)
        if k not in excluded:
            out.append(c)
            excluded.add(k)
    if len(out) < n:
        out.extend(random_proposals(space, n - len(out), rng, exclude=excluded))
    return out
