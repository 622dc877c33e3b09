"""The cost-aware rule of every frontend and of the benchmark's Setting B (autollm_sampler/budget.py)."""

from __future__ import annotations

import pytest

from autollm_sampler.budget import BudgetRule, pick_ladder

NAMES = ["small", "medium", "target"]


def _rule(**kw: object) -> BudgetRule:
    return BudgetRule([1.0, 8.0, 70.0], 2, kw.pop("budget", 350.0), names=NAMES, **kw)  # type: ignore[arg-type]


def test_the_target_keeps_whole_runs_and_the_rounding_goes_to_the_cheap_levels() -> None:
    r = _rule()
    assert (r.target_runs, r.cheap_pool) == (3, 140.0)  # 60% of 350 = 210 = 3 runs
    r = _rule(budget=360.0)
    assert (r.target_runs, r.cheap_pool) == (4, 80.0)  # 60% of 360 = 216 -> 4 whole runs (at least 60%)
    r = _rule(low_fidelity_share=0.0, budget=360.0)
    assert (r.target_runs, r.cheap_pool) == (5, 10.0)  # only what no target run can use
    assert _rule(budget=50.0).target_runs == 0  # less than one target run: all of it is cheap


def test_a_cheap_level_is_capped_by_its_share_and_by_a_quarter_of_the_budget() -> None:
    r = _rule()
    assert r.choose({0: 69.0}, {0: [float(-i) for i in range(69)]}).level == 0  # still improving, 70 is its share
    c = r.choose({0: 70.0}, {0: [float(-i) for i in range(70)]})
    assert c.level == 1 and "small used its share (70 of 70)" in c.reason
    # small finished early, so medium may spend what small left, up to 25% of 350
    c = r.choose({0: 10.0, 1: 80.0}, {0: [float(-i) for i in range(10)], 1: [float(-i) for i in range(10)]})
    assert c.level == 2 and "medium used its share (80 of 87.5)" in c.reason


def test_stagnation_finishes_a_level_after_min_runs() -> None:
    assert (_rule().patience, _rule().min_runs) == (4, 8)
    r = _rule(min_runs=6)
    flat = [3.0, 2.0, 2.5, 2.6, 2.7, 2.8]  # best (2.0) in run 2, no better in the last 4
    assert not r.stagnated(flat[:5])  # fewer than min_runs=6
    assert r.stagnated(flat)
    assert not r.stagnated([3.0, 2.9, 2.8, 2.7, 2.6, 2.5])  # improving
    assert r.stagnated([3.0, 2.0, 2.5, 2.6, 2.7, 1.99999])  # an improvement under 1% of median - best
    assert not r.stagnated([1.0, 1.1, 1.2, 1.3, 1.4, 1.5], "maximize")  # improving when maximising
    assert r.stagnated([1.0, 1.1, 1.2, 1.3, 1.4, 1.5], "minimize")
    assert r.stagnated([None] * 6)  # only failures
    assert not r.stagnated([None, None, 3.0, 2.9, None, 2.95])  # the first success came within the window
    c = r.choose({0: 6.0}, {0: flat})
    assert c.level == 1 and c.reason.startswith("medium: small stagnated after 6 runs")


def test_the_climb_never_goes_back_and_a_leftover_is_unspent() -> None:
    r = _rule()
    # a medium run exists (running or finished): small never runs again, though it has share left
    assert r.choose({0: 3.0, 1: 8.0}, {0: [3.0, 2.0, 1.0]}).level == 1
    # a target run exists: no cheap level runs again
    c = r.choose({0: 3.0, 2: 70.0}, {0: [3.0, 2.0, 1.0]})
    assert c.level == 2 and "small is done after 3 runs" in c.reason
    c = r.choose({2: 70.0})
    assert c.level == 2 and "small, medium not run" in c.reason
    # 50 left, less than a target run: the budget is spent and says why
    c = r.choose({0: 10.0, 1: 80.0, 2: 210.0})
    assert c.level is None and "50 of 350 left" in c.reason and "left unspent" in c.reason


def test_running_costs_and_off_level_runs_count_as_spent() -> None:
    r = _rule()
    assert r.remaining({0: 5.0, None: 20.0, 2: 70.0}) == pytest.approx(255.0)
    # what others spent cuts into the target's runs: no cheap run, and 50 afford no target run
    assert r.choose({None: 300.0}).level is None
    c = r.choose({None: 100.0})  # 250 left: the 3 target runs kept (210), so 40 for small
    assert c.level == 0
    c = r.choose({None: 100.0, 0: 40.0}, {0: [float(-i) for i in range(40)]})
    assert c.level == 2 and "small would cut into the 3 target runs kept" in c.reason


def test_closed_levels_are_passed_over() -> None:
    r = _rule()
    c = r.choose({}, closed=[0])
    assert c.level == 1 and "small has no untried configuration left" in c.reason
    assert r.choose({}, closed=[0, 1, 2]).level is None


@pytest.mark.parametrize(("kw", "match"), [
    ({"low_fidelity_share": 1.0}, r"low_fidelity_share=1\.0 must be in \[0, 1\)"),
    ({"low_fidelity_share": "0.4"}, "must be a finite number"),
    ({"level_share": 0.0}, r"level_share=0\.0 must be in \(0, 1\]"),
    ({"patience": 0}, "patience=0 must be an int >= 1"),
    ({"patience": 2.5}, "patience=2.5 must be an int"),
    ({"min_runs": 4}, "min_runs=4 must be larger than patience=4"),
    ({"min_improvement": -0.1}, "min_improvement=-0.1 must be a finite number >= 0"),
    ({"budget": 0.0}, "budget=0.0 must be a finite number > 0"),
])
def test_parameters_are_checked(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _rule(**kw)


def test_constructor_checks_levels() -> None:
    with pytest.raises(ValueError, match="finite costs > 0"):
        BudgetRule([1.0, 0.0], 1)
    with pytest.raises(ValueError, match="index of one of the 2 levels"):
        BudgetRule([1.0, 2.0], 2)
    with pytest.raises(ValueError, match="direction="):
        BudgetRule([1.0, 2.0], 1).choose({}, direction="min")  # type: ignore[arg-type]


def test_pick_ladder_keeps_the_cheapest_and_one_that_affords_a_few_runs() -> None:
    costs = [0.04, 0.0625, 0.114, 0.16, 0.2, 0.25, 0.31, 0.45, 0.71, 1.0]
    assert pick_ladder(costs, 9) == [0, 5]  # share of the second: 1 target run; 0.25 * 4 runs fits
    assert pick_ladder(costs, 9, max_levels=1) == [0]
    assert pick_ladder([1.0], 0) == []


def test_a_wide_space_gets_more_cheap_runs_before_a_level_may_stagnate() -> None:
    rule = BudgetRule([1.0, 10.0], 1, 100.0)  # one cheap level: 60 kept for 6 target runs, 40 for the cheap one
    flat = [3.0] * 12  # never improves after the first run
    assert rule.min_runs_for(None) == rule.min_runs_for(2) == 8
    assert rule.min_runs_for(27) == 4 + 14  # patience + one run per two parameters
    assert rule.stagnated(flat[:8]) and not rule.stagnated(flat[:8], dims=27)
    assert rule.choose({0: 8.0}, {0: flat[:8]}).level == 1  # a small space: small is finished
    assert rule.choose({0: 8.0}, {0: flat[:8]}, dims=27).level == 0  # a 27-parameter one: small goes on


def test_a_single_cheap_level_may_spend_the_whole_cheap_pool() -> None:
    one = BudgetRule([1.0, 10.0], 1, 100.0)
    assert one.level_cap == pytest.approx(40.0)  # more than 25% of the budget: the pool has no one else to serve
    assert one.choose({0: 39.0}, {0: [float(10 - i) for i in range(39)]}).level == 0
    two = BudgetRule([1.0, 3.0, 10.0], 2, 100.0)
    assert two.level_cap == pytest.approx(25.0)  # 20 each by an even split: the 25% cap stands
