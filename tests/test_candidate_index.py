"""The one candidate index (autollm_sampler/candidates.py) and the modules that read candidates through it."""

from __future__ import annotations

import numpy as np
import pytest

from autollm_sampler.candidates import CandidateIndex, nearest_each
from autollm_sampler.space import SearchSpace
from autollm_sampler.strategies import snap_to_candidates

SPACE = SearchSpace.from_dict({"params": {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "bs": {"type": "categorical", "choices": [32, 64, 128, 256]},
}})
ROWS = [{"lr": 1e-3, "bs": 64}, {"lr": 1e-2, "bs": 64}, {"lr": 1e-3, "bs": 64}, {"lr": 1e-2, "bs": 256}]


def test_exact_lookup_uses_config_keys_and_the_first_duplicate() -> None:
    idx = CandidateIndex(SPACE, ROWS)
    assert len(idx) == 4 and idx.candidates is ROWS
    assert idx.find({"lr": 1e-3, "bs": 64}) == 0  # the duplicate at row 2 is never the answer
    assert idx.find({"lr": 1e-3 * (1 + 1e-12), "bs": 64.0}) == 0  # keys: floats to 10 digits, 64.0 == 64
    assert idx.find({"lr": 2e-3, "bs": 64}) is None
    assert idx.find({"lr": 1e-3}) is None  # unkeyable (a missing name): not found, no error
    assert idx.rows_with_keys({SPACE.config_key(ROWS[0])}) == {0, 2}
    assert np.array_equal(idx.unit, np.stack([SPACE.to_unit(c) for c in ROWS]))
    assert idx.configs == ROWS and idx.configs[0] is not ROWS[0]


def test_empty_candidates_are_refused() -> None:
    with pytest.raises(ValueError, match="candidates is empty"):
        CandidateIndex(SPACE, [])
    with pytest.raises(ValueError, match="candidates is empty"):
        CandidateIndex(SPACE, ROWS).subset([])


def test_nearest_breaks_ties_by_row_order_and_skips_excluded_rows() -> None:
    idx = CandidateIndex(SPACE, ROWS)
    point = idx.unit[0]
    assert list(idx.order(point)[:2]) == [0, 2]  # equal distances: row order (a stable sort)
    assert idx.nearest(point) == 0
    assert idx.nearest(point, exclude={0}) == 2
    assert idx.nearest(point, exclude={0, 2}) == 1
    assert idx.nearest(point, exclude={0, 1, 2, 3}) == 0  # all excluded: the nearest overall
    assert idx.nearest({"lr": 1.1e-3, "bs": 64}, exclude={0}) == 2  # an off-list configuration is projected
    assert idx.nearest(np.full(SPACE.width, np.nan)) == 0  # an unplaceable point: the first row, as argsort gives


def test_greedy_snapping_is_one_function() -> None:
    idx = CandidateIndex(SPACE, ROWS)
    points = np.stack([idx.unit[0], idx.unit[0], idx.unit[3]])
    assert idx.nearest_each(points) == [0, 2, 3]
    assert idx.nearest_each(points, exclude={3}) == [0, 2, 1]
    assert snap_to_candidates(points, idx.unit, {3}) == nearest_each(idx.unit, points, {3}) == [0, 2, 1]
    assert nearest_each(idx.unit[:1], points) == [0]  # a point finds nothing once every row is taken


def test_subset_reuses_keys_and_units() -> None:
    idx = CandidateIndex(SPACE, ROWS)
    sub = idx.subset([3, 1])
    assert sub.candidates == [ROWS[3], ROWS[1]] and sub.keys == [idx.keys[3], idx.keys[1]]
    assert np.array_equal(sub.unit, idx.unit[[3, 1]])
    assert sub.find(ROWS[1]) == 1 and sub.find(ROWS[0]) is None


def test_the_gym_cell_and_the_benchmark_share_the_index() -> None:
    from autollm_sampler.benchmark import CandidateIndex as BenchIndex
    from autollm_sampler.gym import Cell

    assert BenchIndex is CandidateIndex
    cell = Cell("c", {"n": 1.0}, SPACE, [dict(r) for r in ROWS], np.arange(4.0), np.ones(4))
    assert isinstance(cell.index, CandidateIndex) and cell.unit is cell.index.unit
    assert cell.find(ROWS[2]) == 0
    assert cell.snap({"lr": 1.1e-2, "bs": 64}) == (1, False)


def test_the_text_llm_backend_snaps_through_the_index() -> None:
    from autollm_sampler.agent._llm import nearest_untaken

    idx = CandidateIndex(SPACE, ROWS)
    assert nearest_untaken(idx, {"lr": 1e-3, "bs": 64}, set()) == ROWS[0]
    # both copies of a taken row are skipped (keys, not rows)
    assert nearest_untaken(idx, {"lr": 1e-3, "bs": 64}, {idx.keys[0]}) == ROWS[1]
    assert nearest_untaken(idx, {"lr": 1e-3, "bs": 64}, set(idx.keys)) == ROWS[0]
