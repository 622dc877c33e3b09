"""The BENCHMARK.md metrics on hand-made examples (and against the gym's own cell arithmetic)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autollm_sampler.benchmark._metrics import (
    CI,
    average_ranks,
    best_so_far,
    bootstrap_ci,
    cost_to_target,
    hit,
    normalised_regret,
    rank_with_ties,
    relative_gap,
    tied_with_best,
)


def test_relative_gap_minimise_and_maximise() -> None:
    assert relative_gap(2.0, optimum=2.0, direction="minimize") == 0.0
    assert relative_gap(2.02, optimum=2.0, direction="minimize") == pytest.approx(1.0)
    # maximisation: 1 - best/opt, so a score of 0.594 against an optimum of 0.6 is 1% short
    assert relative_gap(0.594, optimum=0.6, direction="maximize") == pytest.approx(1.0)
    assert relative_gap(0.6, optimum=0.6, direction="maximize") == 0.0
    with pytest.raises(ValueError, match="direction"):
        relative_gap(1.0, optimum=1.0, direction="min")


def test_normalised_regret_clips_and_mirrors() -> None:
    # min: opt 2.0, p90 2.1 -> 2.05 is halfway
    assert normalised_regret(2.05, optimum=2.0, p90=2.1, direction="minimize") == pytest.approx(0.5)
    # a diverged run far past p90 is clipped to 1, the optimum is 0
    assert normalised_regret(9.0, optimum=2.0, p90=2.1, direction="minimize") == 1.0
    assert normalised_regret(2.0, optimum=2.0, p90=2.1, direction="minimize") == 0.0
    # max: opt 0.6, p90 (bad side) 0.4 -> 0.5 is halfway
    assert normalised_regret(0.5, optimum=0.6, p90=0.4, direction="maximize") == pytest.approx(0.5)
    assert normalised_regret(0.1, optimum=0.6, p90=0.4, direction="maximize") == 1.0
    # a degenerate table: optimum == p90
    assert normalised_regret(1.0, optimum=1.0, p90=1.0, direction="minimize") == 0.0
    assert normalised_regret(1.1, optimum=1.0, p90=1.0, direction="minimize") == 1.0


def test_metrics_agree_with_the_gym_cell(raw_dir: object) -> None:
    from autollm_sampler import gym

    task = gym.make("steplaw-dense-v1")
    cell = task.cell("N=1.07B,D=20B")
    for v in (cell.optimum, float(np.median(cell.values)), float(cell.values.max())):
        assert relative_gap(v, optimum=cell.optimum, direction="minimize") == pytest.approx(cell.gap(v))
        assert normalised_regret(v, optimum=cell.optimum, p90=cell.p90, direction="minimize") == pytest.approx(
            cell.regret(v)
        )


def test_best_so_far_and_hit() -> None:
    assert best_so_far([3.0, 2.5, 2.7, 2.4], "minimize") == [3.0, 2.5, 2.5, 2.4]
    assert best_so_far([0.1, 0.3, 0.2], "maximize") == [0.1, 0.3, 0.3]
    assert hit(0.1) and hit(0.05) and not hit(0.1001)


def test_cost_to_target() -> None:
    gaps = [5.0, 0.9, 0.3, 0.2]
    costs = [1.0, 1.0, 2.0, 1.0]
    assert cost_to_target(gaps, costs, 1.0) == 2.0
    assert cost_to_target(gaps, costs, 0.25) == 5.0
    assert cost_to_target(gaps, costs, 0.1) == math.inf
    assert cost_to_target([0.0], [0.0], 1.0) == 0.0  # already there before spending anything
    with pytest.raises(ValueError, match="one per step"):
        cost_to_target([1.0], [1.0, 2.0], 1.0)


def test_bootstrap_ci_mean_and_constant() -> None:
    ci = bootstrap_ci([1.0, 2.0, 3.0, 4.0, 5.0], seed=0)
    assert ci.estimate == 3.0
    assert 1.0 <= ci.low < 3.0 < ci.high <= 5.0
    assert bootstrap_ci([1.0, 2.0, 3.0, 4.0, 5.0], seed=0) == ci  # seeded: reproducible
    flat = bootstrap_ci([0.7] * 10)
    assert flat == CI(0.7, 0.7, 0.7)
    assert math.isnan(bootstrap_ci([]).estimate)


def test_bootstrap_ci_resamples_within_strata() -> None:
    # one value per target (a deterministic method): no sampling noise at all
    ci = bootstrap_ci([1.0, 5.0, 9.0], strata=["a", "b", "c"])
    assert ci == CI(5.0, 5.0, 5.0)
    # seeds vary within targets: the interval is narrower than when targets are resampled too
    vals = [1.0, 1.2, 9.0, 9.2]
    strat = bootstrap_ci(vals, strata=["a", "a", "b", "b"], seed=1)
    pooled = bootstrap_ci(vals, seed=1)
    assert strat.estimate == pooled.estimate == pytest.approx(5.1)
    assert (strat.high - strat.low) < (pooled.high - pooled.low)
    with pytest.raises(ValueError, match="one label per value"):
        bootstrap_ci([1.0, 2.0], strata=["a"])


def test_bootstrap_median_with_unreached_episodes() -> None:
    ci = bootstrap_ci([1.0, 2.0, math.inf], stat="median", seed=0)
    assert ci.estimate == 2.0 and ci.high == math.inf
    ci = bootstrap_ci([math.inf, math.inf, 3.0], stat="median")
    assert ci.estimate == math.inf


def test_rank_with_ties_and_average_ranks() -> None:
    assert rank_with_ties({"a": 0.1, "b": 0.3, "c": 0.1}) == {"a": 1.5, "b": 3.0, "c": 1.5}
    assert rank_with_ties({"a": 0.9, "b": 0.1}, lower_is_better=False) == {"a": 1.0, "b": 2.0}
    table = {
        ("f", "t1", 1): {"a": 0.1, "b": 0.2, "c": 0.2},
        ("f", "t1", 2): {"a": 0.3, "b": 0.1},  # c did not run here: ranked where it ran only
    }
    ranks = average_ranks(table)
    assert ranks["a"] == (1.5, 2)
    assert ranks["b"] == pytest.approx(((2.5 + 1.0) / 2, 2))
    assert ranks["c"] == (2.5, 1)


def test_tied_with_best_uses_interval_overlap() -> None:
    cis = {"a": CI(0.10, 0.05, 0.15), "b": CI(0.14, 0.12, 0.30), "c": CI(0.50, 0.40, 0.60)}
    assert tied_with_best(cis) == {"a", "b"}
    assert tied_with_best(cis, lower_is_better=False) == {"c"}
    assert tied_with_best({"a": CI(math.nan, math.nan, math.nan)}) == set()
