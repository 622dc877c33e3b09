"""The user-objective suite: held-out synthetic objectives, scored by their true outcome."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autollm_sampler.benchmark import userobj as u


@pytest.mark.parametrize("family", u.FAMILIES)
def test_tasks_are_deterministic_and_their_optimum_is_a_lower_bound(family: str) -> None:
    a, b = u.make_task(family, 3), u.make_task(family, 3)
    assert a.optimum == b.optimum and a.cheap == b.cheap and a.noise == b.noise
    assert u.make_task(family, 4).optimum != a.optimum
    rng = np.random.default_rng(0)
    y = a.true_fn(a.sampler(rng, 5000), a.target)
    ok = np.isfinite(y) & (y < u.DIVERGED)
    assert ok.any() and a.optimum <= y[ok].min() + 1e-12 and a.p90 > a.optimum
    # every fidelity of the history is cheaper than the target on some axis and on none more expensive
    for fid in a.cheap:
        assert all(fid[k] <= a.target[k] for k in a.target) and any(fid[k] < a.target[k] for k in a.target)
    # sampled values are valid configurations of the task's space
    for c in a.configs_of(a.sampler(rng, 20)):
        assert a.space.validate_params(c) is not None


def test_cheap_history_is_a_sparse_noisy_random_search_with_failures() -> None:
    task = u.make_task("adamw", 0)
    trials = u.cheap_history(task, 0)
    per_cell = {tuple(t.fidelity.items()): 0 for t in trials}
    for t in trials:
        per_cell[tuple(t.fidelity.items())] += 1
    assert len(per_cell) == len(task.cheap) and all(5 <= n <= 20 for n in per_cell.values())
    failed = [t for t in trials if t.state == "failed"]
    assert failed and all(t.value is None for t in failed)
    # observed values are the true values plus noise (diverged runs report 7.0 exactly)
    done = [t for t in trials if t.state == "complete" and t.value is not None and t.value < u.DIVERGED]
    errs = [t.value - task.true(t.params, t.fidelity) for t in done]  # type: ignore[operator]
    assert 0 < float(np.std(errs)) < 5 * task.noise


@pytest.mark.parametrize("method", ["random", "classical", "tpe-warm", "cmaes-warm"])
def test_episode_records_are_consistent(method: str) -> None:
    task = u.make_task("mixture", 1)
    rec = u.run_episode(task, method, 0, k=5)
    gaps = [rec[f"gap_k{k}"] for k in range(1, 6)]
    assert all(g2 <= g1 for g1, g2 in zip(gaps, gaps[1:], strict=False)) and all(g >= -1e-9 for g in gaps)
    assert rec["n_steps"] == 5 and rec["fallbacks"] == 0
    assert (rec["n_pred"] > 0) == (method == "classical")
    assert u.run_episode(task, method, 0, k=5)["gap_k5"] == rec["gap_k5"]  # seeded


def test_failure_figures_are_computed_from_the_steps() -> None:
    task = u.make_task("adamw", 0)
    base = {"lr": 3e-2, "warmup_steps": 0, "batch_size": 256, "weight_decay": 0.1}
    assert u._bad(task.true(base))  # far above the divergence wall
    steps = [u.Step(dict(base), math.nan, math.nan) for _ in range(3)]
    rec = u._record(task, "x", 0, 1, steps, 0.0)
    assert rec["all_failed"] and rec["near_fail"] == 2 and math.isinf(rec["gap_k3"]) and rec["regret_k3"] == 1.0
    good = dict(base, lr=1e-4)
    steps.append(u.Step(good, task.true(good), task.true(good), mu=task.true(good), sigma=0.01))
    rec = u._record(task, "x", 0, 1, steps, 0.0)
    assert not rec["all_failed"] and math.isfinite(rec["gap_k4"]) and rec["covered"] == 1 and rec["n_pred"] == 1


def test_report_renders_every_figure() -> None:
    rows = [u.run_episode(u.make_task("saturating", s), m, s, k=10) for s in range(2) for m in ("random", "classical")]
    text = u.report(rows, command="test", elapsed=1.0)
    assert "## all families" in text and "| classical |" in text and "80% coverage" in text


def test_seed_start_moves_the_task_seeds() -> None:
    rows = u.run_suite(1, ["random"], ["saturating"], progress=False, parallel=(), seed_start=7)
    assert [r["seed"] for r in rows] == [7]
    assert rows[0]["gap_k10"] == u.run_episode(u.make_task("saturating", 7), "random", 7, k=10)["gap_k10"]
