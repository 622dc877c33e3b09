"""In-context adaptation: target runs move the predictions, failures repel, batches spread."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autollm_sampler.agent import DEFAULT_CHECKPOINT, load_agent
from autollm_sampler.agent._adapt import (
    ADAPT_SPEC,
    TargetEvidence,
    correct,
    diverged_mask,
    evidence,
    failure_prob,
    select,
)
from autollm_sampler.history import History, Trial

RNG = np.random.default_rng(0)
UNITS = RNG.random((400, 3))


def _ev(units: np.ndarray, y: np.ndarray, mu: np.ndarray, bad: np.ndarray | None = None) -> TargetEvidence:
    return TargetEvidence(units=units, y=y, mu=mu, bad_units=np.zeros((0, units.shape[1])) if bad is None else bad)


def test_no_target_run_changes_nothing() -> None:
    mu, sd = RNG.normal(size=400), np.full(400, 0.1)
    m2, s2 = correct(mu, sd, UNITS, _ev(np.zeros((0, 3)), np.zeros(0), np.zeros(0)))
    assert m2 is mu and s2 is sd


def test_a_consistent_miss_shifts_every_prediction_and_most_near_the_runs() -> None:
    runs = UNITS[:6]
    mu = np.full(400, 2.45)
    m2, s2 = correct(mu, np.full(400, 0.02), UNITS, _ev(runs, np.full(6, 2.55), np.full(6, 2.45)))
    near, far = m2[:6], m2[np.argsort(-((UNITS - runs.mean(0)) ** 2).sum(1))[:20]]
    assert np.all(np.abs(near - 2.55) < 0.02)  # near the runs: the observed level
    assert np.all(far > 2.45 + 0.05)  # far away: the shift still applies (shrunk)
    assert s2[:6].max() < s2[far.argsort()].max()  # uncertainty shrinks where runs are


def test_failures_repel_and_diverged_runs_count_as_failures() -> None:
    y = np.array([2.5, 2.52, 2.49, 7.0, 2.51])
    assert diverged_mask(y).tolist() == [False, False, False, True, False]
    ev = evidence(UNITS[:5], y, np.full(5, 2.5), [UNITS[10]])
    assert len(ev.y) == 4 and len(ev.bad_units) == 2
    p = failure_prob(UNITS, ev)
    # a diverged run (a loss wall) closes its region; one failed run (maybe a crash) halves its appeal ...
    assert p[3] == pytest.approx(1.0) and p[10] == pytest.approx(ADAPT_SPEC["failed_weight"], abs=0.01)
    # ... and a second failure there closes it
    twice = failure_prob(UNITS, evidence(UNITS[:5], y, np.full(5, 2.5), [UNITS[10], UNITS[10]]))
    assert twice[10] == pytest.approx(1 - (1 - ADAPT_SPEC["failed_weight"]) ** 2, abs=0.01) and twice[10] > 0.5
    d = np.sqrt(((UNITS - UNITS[3]) ** 2).sum(1) / 3)
    assert np.all(p[(d > 4 * ADAPT_SPEC["fail_radius"]) & (np.sqrt(((UNITS - UNITS[10]) ** 2).sum(1) / 3) > 0.4)] < 0.01)


def test_selection_avoids_failed_regions_and_spreads_batches() -> None:
    score = -((UNITS - 0.5) ** 2).sum(1) * 50  # the policy loves the centre
    centre = np.array([[0.5, 0.5, 0.5]])
    ev = _ev(np.zeros((0, 3)), np.zeros(0), np.zeros(0), bad=centre)
    mu, sd = np.full(400, 2.5), np.full(400, 0.1)
    i = select(score, mu, sd, UNITS, ev, np.zeros((0, 3)), 1)[0]
    assert np.sqrt(((UNITS[i] - centre) ** 2).sum() / 3) > ADAPT_SPEC["fail_radius"]
    # no target run: the policy's order, pushed apart for a batch and away from pending points
    none = _ev(np.zeros((0, 3)), np.zeros(0), np.zeros(0))
    picks = select(score, mu, sd, UNITS, none, np.zeros((0, 3)), 4)
    assert picks[0] == int(np.argmax(score)) and len(set(picks)) == 4
    pts = UNITS[picks]
    dists = [np.sqrt(((a - b) ** 2).sum() / 3) for j, a in enumerate(pts) for b in pts[j + 1:]]
    plain = UNITS[np.argsort(-score)[:4]]
    plain_d = [np.sqrt(((a - b) ** 2).sum() / 3) for j, a in enumerate(plain) for b in plain[j + 1:]]
    assert min(dists) > min(plain_d)
    pend = select(score, mu, sd, UNITS, none, UNITS[[int(np.argmax(score))]], 1)
    assert pend[0] != int(np.argmax(score))


# ------------------------------------------------------------------------------ through the shipped agent
def _adamw():  # type: ignore[no-untyped-def]
    from autollm_sampler.benchmark.userobj import cheap_history, make_task

    task = make_task("adamw", 2)
    return task, cheap_history(task, 0)


@pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").exists(), reason="no shipped checkpoint")
def test_the_agent_changes_course_when_its_target_runs_fail() -> None:
    task, cheap = _adamw()
    agent = load_agent("default")
    first = agent.propose(History(trials=cheap), task.space, task.target, seed=0)[0]
    trials = list(cheap)
    picks = [first.params]
    for i in range(4):  # every target run fails: the next proposals must leave that region
        trials.append(Trial(id=f"t{i}", params=picks[-1], fidelity=task.target, state="failed"))
        picks.append(agent.propose(History(trials=trials), task.space, task.target, seed=i + 1)[0].params)
    units = np.stack([task.space.to_unit(p) for p in picks])
    # one failure may have been a crash, so a retry near it is allowed; a region that failed twice is not
    for j in range(1, len(picks)):
        d = np.sqrt(((units[:j] - units[j]) ** 2).sum(1) / task.space.width)
        assert (d <= ADAPT_SPEC["fail_radius"]).sum() <= 1, f"proposal {j} returns to a region that failed twice ({d})"
    d_last = np.sqrt(((units[:-1] - units[-1]) ** 2).sum(1) / task.space.width)
    assert d_last.min() > ADAPT_SPEC["fail_radius"] / 2, "after four failures the agent still proposes on one"


@pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").exists(), reason="no shipped checkpoint")
def test_one_crash_does_not_drive_the_agent_away() -> None:
    # a first target run that failed (a crash, as far as anyone can tell from one run) at the agent's own
    # choice: the next proposal stays in that region rather than retreating as from a divergence wall
    task, cheap = _adamw()
    agent = load_agent("default")
    first = agent.propose(History(trials=cheap), task.space, task.target, seed=0)[0]
    crashed = Trial(id="t0", params=first.params, fidelity=task.target, state="failed")
    nxt = agent.propose(History(trials=[*cheap, crashed]), task.space, task.target, seed=1)[0]
    u0, u1 = task.space.to_unit(first.params), task.space.to_unit(nxt.params)
    assert np.sqrt(((u0 - u1) ** 2).sum() / task.space.width) <= 2 * ADAPT_SPEC["fail_radius"]


@pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").exists(), reason="no shipped checkpoint")
def test_the_agents_predictions_follow_the_target_runs() -> None:
    task, cheap = _adamw()
    agent = load_agent("default")
    p0 = agent.propose(History(trials=cheap), task.space, task.target, seed=0)[0]
    # three target runs at and around the first proposal, all 0.3 worse than predicted
    runs = [p0.params] + [task.space.from_unit(np.clip(task.space.to_unit(p0.params) + d, 0, 1)) for d in (0.03, -0.03)]
    worse = [Trial(id=f"t{i}", params=p, fidelity=task.target, value=p0.predicted_value + 0.3) for i, p in enumerate(runs)]
    p1 = agent.propose(History(trials=[*cheap, *worse]), task.space, task.target, seed=1)[0]
    better = [Trial(id=f"t{i}", params=p, fidelity=task.target, value=p0.predicted_value - 0.3) for i, p in enumerate(runs)]
    p2 = agent.propose(History(trials=[*cheap, *better]), task.space, task.target, seed=1)[0]
    assert p1.predicted_value > p2.predicted_value + 0.2
    assert math.isfinite(p1.predicted_std) and p1.predicted_std > 0


@pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").exists(), reason="no shipped checkpoint")
def test_batches_and_pending_spread_out() -> None:
    task, cheap = _adamw()
    agent = load_agent("default")
    props = agent.propose(History(trials=cheap), task.space, task.target, n=3, seed=0)
    units = np.stack([task.space.to_unit(p.params) for p in props])
    d = [np.sqrt(((a - b) ** 2).sum() / task.space.width) for j, a in enumerate(units) for b in units[j + 1:]]
    assert min(d) > ADAPT_SPEC["batch_radius"]
    # two workers, the second knowing the first's proposal is running: different configurations
    a = agent.propose(History(trials=cheap), task.space, task.target, seed=5)[0]
    b = agent.propose(History(trials=cheap), task.space, task.target, seed=5, pending=[a.params])[0]
    assert task.space.config_key(a.params) != task.space.config_key(b.params)


@pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").exists(), reason="no shipped checkpoint")
def test_target_runs_without_fidelity_count_as_target_runs() -> None:
    # a trial without fidelity is a target run (the documented rule): it must be adapted to exactly like one
    # that carries the target's fidelity
    task, cheap = _adamw()
    agent = load_agent("default")
    p0 = agent.propose(History(trials=cheap), task.space, task.target, seed=0)[0]
    runs = [p0.params, task.space.from_unit(np.clip(task.space.to_unit(p0.params) + 0.05, 0, 1))]
    with_fid = [Trial(id=f"t{i}", params=p, fidelity=task.target, value=p0.predicted_value + 0.5) for i, p in enumerate(runs)]
    without = [t.model_copy(update={"fidelity": {}}) for t in with_fid]
    a = agent.propose(History(trials=[*cheap, *with_fid]), task.space, task.target, seed=1)[0]
    b = agent.propose(History(trials=[*cheap, *without]), task.space, task.target, seed=1)[0]
    assert a.params == b.params
    assert a.predicted_value == pytest.approx(b.predicted_value)
    assert "2 target runs completed so far" in b.rationale


def test_a_run_at_a_loss_wall_counts_as_diverged_even_alone() -> None:
    # one run, or every run, at 7.0 cannot be told apart by the IQR rule; the cheap cell's level tells it
    assert diverged_mask(np.array([7.0])).tolist() == [False]
    assert diverged_mask(np.array([7.0]), ref=3.1, scale=0.2).tolist() == [True]
    assert diverged_mask(np.full(4, 7.0), ref=3.1, scale=0.2).all()
    # a poor but ordinary run is not a divergence: 1.5 spreads above, or 3% above a tiny-spread best
    assert not diverged_mask(np.array([3.4]), ref=3.1, scale=0.2).any()
    assert not diverged_mask(np.array([3.2]), ref=3.1, scale=0.001).any()


def test_a_learning_rate_failure_covers_higher_learning_rates() -> None:
    bad = np.array([[0.6, 0.5, 0.5]])
    up = np.array([True, False, False])
    cands = np.array([[0.9, 0.5, 0.5], [0.9, 0.6, 0.4], [0.3, 0.5, 0.5], [0.6, 0.5, 0.5]])
    plain = failure_prob(cands, _ev(np.zeros((0, 3)), np.zeros(0), np.zeros(0), bad=bad))
    ev = _ev(np.zeros((0, 3)), np.zeros(0), np.zeros(0), bad=bad)
    ev.upward = up
    one_sided = failure_prob(cands, ev)
    assert plain[0] < 0.2 and one_sided[0] == pytest.approx(1.0)  # higher lr, same rest: as bad as the run
    assert one_sided[1] > 0.5  # higher lr, the other settings a little different: still likely to fail
    assert one_sided[2] < 0.2 and one_sided[2] == pytest.approx(plain[2])  # lower lr: the usual fall-off
    assert one_sided[3] == pytest.approx(1.0)


def test_the_residual_noise_follows_the_data() -> None:
    from autollm_sampler.agent._adapt import _noise_level
    from autollm_sampler.agent._features import mean_sqdist

    rng = np.random.default_rng(3)
    u = rng.random((12, 3))
    K0 = 0.25 * np.exp(-mean_sqdist(u, u) / (2 * ADAPT_SPEC["length_scale"] ** 2)) + 4.0
    smooth = np.sin(3 * u[:, 0])
    quiet, _ = _noise_level(K0, smooth, 1.0)
    noisy, _ = _noise_level(K0, smooth + rng.normal(0, 0.3, 12), 1.0)
    assert quiet < noisy
    few, _ = _noise_level(K0[:2, :2], smooth[:2], 1.0)
    assert few == pytest.approx(ADAPT_SPEC["noise_frac"] ** 2)


@pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").exists(), reason="no shipped checkpoint")
def test_with_target_runs_a_batch_spends_its_uncertainty_once() -> None:
    # after target runs, each pick of a batch sees the earlier ones (and running ones) as if returned
    task, cheap = _adamw()
    agent = load_agent("default")
    agent.strict = True
    p0 = agent.propose(History(trials=cheap), task.space, task.target, seed=0)[0]
    runs = [Trial(id="t0", params=p0.params, fidelity=task.target, value=p0.predicted_value + 0.05)]
    hist = History(trials=[*cheap, *runs])
    batch = agent.propose(hist, task.space, task.target, n=4, seed=1)
    units = np.stack([task.space.to_unit(p.params) for p in batch])
    d = [np.sqrt(((a - b) ** 2).sum() / task.space.width) for j, a in enumerate(units) for b in units[j + 1:]]
    assert min(d) > ADAPT_SPEC["batch_radius"]
    # a worker that knows the first three are running proposes what the batch's fourth is not forced to be,
    # and never one of the three
    nxt = agent.propose(hist, task.space, task.target, seed=1, pending=[p.params for p in batch[:3]])[0]
    keys = {task.space.config_key(p.params) for p in batch[:3]}
    assert task.space.config_key(nxt.params) not in keys
    alone = agent.propose(hist, task.space, task.target, seed=1)[0]
    assert task.space.config_key(alone.params) == task.space.config_key(batch[0].params)


@pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").exists(), reason="no shipped checkpoint")
def test_a_batch_larger_than_the_untried_grid_repeats_like_a_single_pick() -> None:
    from autollm_sampler.space import SearchSpace

    space = SearchSpace.from_dict({"params": {"lr": {"type": "categorical", "choices": [1e-4, 1e-3, 1e-2]}}})
    target = {"n_params": 1e9}
    cheap = [Trial(id=f"c{i}", params={"lr": lr}, fidelity={"n_params": 1e8}, value=v)
             for i, (lr, v) in enumerate(((1e-4, 3.2), (1e-3, 3.0), (1e-2, 3.4)))]
    hist = History(trials=[*cheap, Trial(id="t0", params={"lr": 1e-3}, fidelity=target, value=2.7)])
    agent = load_agent("default")
    agent.strict = True
    props = agent.propose(hist, space, target, n=4, seed=0)
    assert len(props) == 4
    lrs = [p.params["lr"] for p in props]
    assert set(lrs[:2]) == {1e-4, 1e-2}  # the two untried ones first, then repeats


def test_the_first_prediction_is_widened_by_the_level_it_extrapolates() -> None:
    from autollm_sampler.agent._adapt import first_run_spread
    from autollm_sampler.agent._features import CellSummary

    def cell(d: float, best: float, target: bool = False) -> CellSummary:
        return CellSummary(fidelity={"n": d}, deltas=np.array([d]), n=5, best_unit=np.zeros(1), soft_opt=np.zeros(1),
                           best_value=best, is_target=target)

    cells = [cell(-2.0, 3.0), cell(-1.0, 2.6)]  # nearest cheap best 2.6, moved 0.4 from the next cell
    share = ADAPT_SPEC["first_level_share"]
    got = first_run_spread(np.array([2.5, 1.6]), np.array([0.01, 0.01]), cells)
    assert got[0] == pytest.approx(np.hypot(0.01, share * 0.4))  # within 0.1 of the nearest best: the cells' step
    assert got[1] == pytest.approx(np.hypot(0.01, share * 1.0))  # 1.0 below it: that distance
    assert first_run_spread(np.array([2.5]), np.array([0.01]), [cell(0.0, 2.5, True)])[0] == 0.01  # no cheap cell


@pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").exists(), reason="no shipped checkpoint")
def test_first_proposal_spread_is_wider_but_the_choice_is_the_same() -> None:
    task, cheap = _adamw()
    agent = load_agent("default")
    wide = agent.propose(History(trials=cheap), task.space, task.target, seed=0)[0]
    keep = ADAPT_SPEC["first_level_share"]
    try:
        ADAPT_SPEC["first_level_share"] = 0.0
        plain = agent.propose(History(trials=cheap), task.space, task.target, seed=0)[0]
    finally:
        ADAPT_SPEC["first_level_share"] = keep
    assert wide.params == plain.params and wide.predicted_value == plain.predicted_value
    assert wide.predicted_std > plain.predicted_std
    # once a target run has returned, the spread is the adaptation step's alone
    ran = Trial(id="t0", params=wide.params, fidelity=task.target, value=wide.predicted_value)
    nxt = agent.propose(History(trials=[*cheap, ran]), task.space, task.target, seed=1)[0]
    try:
        ADAPT_SPEC["first_level_share"] = 0.0
        nxt0 = agent.propose(History(trials=[*cheap, ran]), task.space, task.target, seed=1)[0]
    finally:
        ADAPT_SPEC["first_level_share"] = keep
    assert nxt.predicted_std == nxt0.predicted_std


def test_the_leave_one_out_errors_match_refitting_without_each_run() -> None:
    from autollm_sampler.agent._adapt import _Residuals

    rng = np.random.default_rng(5)
    u = rng.random((9, 3))
    y = np.sin(4 * u[:, 0]) + rng.normal(0, 0.05, 9)
    mu, sd = np.zeros(9), np.full(9, 0.3)
    gp = _Residuals.fit(_ev(u, y, mu), 0.3)
    z = gp.loo_z(sd)
    # the closed form against a fit on the other eight with the same hyperparameters, run by run
    from autollm_sampler.agent._features import mean_sqdist

    for i in range(9):
        o = np.delete(np.arange(9), i)
        K = gp.const + gp.amp * np.exp(-mean_sqdist(u[o], u[o]) / (2 * gp.ls2)) + (gp.noise + 1e-12) * np.eye(8)
        ks = gp.const + gp.amp * np.exp(-mean_sqdist(u[i : i + 1], u[o]) / (2 * gp.ls2))[0]
        pred = ks @ np.linalg.solve(K, gp.r[o])
        var = gp.const + gp.amp - ks @ np.linalg.solve(K, ks)
        assert z[i] == pytest.approx((gp.r[i] - pred) / gp.spread(sd[i : i + 1], np.array([var]))[0], rel=1e-6)


def test_the_reported_spread_follows_how_well_the_runs_are_predicted() -> None:
    from autollm_sampler.agent._adapt import calibrated_spread, fit_residuals

    rng = np.random.default_rng(7)
    u = rng.random((10, 3))
    sd_cand, std = np.full(400, 0.2), np.full(400, 0.1)

    def shown(y: np.ndarray, mu: np.ndarray) -> np.ndarray:
        ev = TargetEvidence(units=u[: len(y)], y=y, mu=mu, bad_units=np.zeros((0, 3)), sd=np.full(len(y), 0.2))
        return calibrated_spread(std, ev, fit_residuals(ev, sd_cand))

    smooth = 2.5 + 0.1 * np.sin(3 * u[:, 0])  # the model is off by a smooth shift: each run predicted well
    narrow = shown(smooth + 0.3, smooth)
    rough = 2.5 + rng.normal(0, 1.0, 10)  # outcomes the runs do not predict, far beyond the model's spread
    wide = shown(rough, np.full(10, 2.5))
    assert narrow.max() < 0.1 < wide.min()
    assert np.allclose(wide / std, wide[0] / std[0]) and wide[0] / std[0] <= ADAPT_SPEC["calib_max"] + 1e-9
    few = int(ADAPT_SPEC["calib_min_runs"]) - 1
    assert shown(rough[:few], np.full(few, 2.5)) is std


@pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").exists(), reason="no shipped checkpoint")
def test_calibrating_the_spread_does_not_change_the_choice() -> None:
    task, cheap = _adamw()
    agent = load_agent("default")
    agent.strict = True
    hist = History(trials=list(cheap))
    for i in range(5):  # five target runs, each the agent's own choice, observed a little worse than predicted
        p = agent.propose(hist, task.space, task.target, seed=i)[0]
        hist = History(trials=[*hist.trials, Trial(id=f"t{i}", params=p.params, fidelity=task.target,
                                                    value=p.predicted_value + 0.02 * (i % 3))])
    got = agent.propose(hist, task.space, task.target, seed=9)[0]
    keep = ADAPT_SPEC["calib_min_runs"]
    try:
        ADAPT_SPEC["calib_min_runs"] = 10**6
        plain = agent.propose(hist, task.space, task.target, seed=9)[0]
    finally:
        ADAPT_SPEC["calib_min_runs"] = keep
    assert got.params == plain.params and got.predicted_value == plain.predicted_value
    assert got.predicted_std != plain.predicted_std


def test_the_first_prediction_stays_within_the_cheap_cells_trend() -> None:
    from autollm_sampler.agent._adapt import first_run_level
    from autollm_sampler.agent._features import CellSummary

    def cell(d: tuple[float, float], best: float) -> CellSummary:
        return CellSummary(fidelity={"n": d[0]}, deltas=np.array(d), n=5, best_unit=np.zeros(1), soft_opt=np.zeros(1),
                           best_value=best, is_target=False)

    # a RegMix-like history: bests 5.08 and 4.10, the nearest cell as far from the target as from the other
    cells = [cell((-6.9, -3.2), 5.08), cell((-2.8, -3.2), 4.10)]
    reach = ADAPT_SPEC["first_level_cap"] * 0.98 * max(np.hypot(2.8, 3.2) / 4.1, 1.0)
    got = first_run_level(np.array([-0.55, 0.0, 3.7, 4.4, 9.0]), cells)
    assert 4.10 - reach < got[0] < got[1] < 4.10 - 0.9 * reach and 4.10 + 0.9 * reach < got[4] < 4.10 + reach
    assert got[2:4].tolist() == [3.7, 4.4]  # within half the reach: unchanged
    assert first_run_level(np.array([-0.55]), cells[:1])[0] == -0.55  # one cheap cell: no trend to compare


@pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").exists(), reason="no shipped checkpoint")
def test_the_first_reported_prediction_bends_towards_the_cheap_trend_and_the_choice_stays() -> None:
    from autollm_sampler.space import SearchSpace

    space = SearchSpace.from_dict({"params": {"lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
                                              "batch_size": {"type": "categorical", "choices": [64, 128, 256, 512]}}})
    target = {"n_params": 1.3e9, "n_tokens": 2.6e10}
    trials = []
    for k in range(3):  # bests 3.0, 2.85, 2.70: the trend says about 2.45 at the target
        for lr in (-4.0, -3.5, -3.0, -2.5, -2.0):
            for bs in (64, 256):
                trials.append(Trial(id=f"c{k}-{lr}-{bs}", params={"lr": 10**lr, "batch_size": bs},
                                    fidelity={"n_params": 1e8 * 2**k, "n_tokens": 2e9 * 2**k},
                                    value=3.0 - 0.15 * k + 0.2 * (lr + 2.8 + 0.2 * k) ** 2 + 0.02 * (bs == 64)))
    agent = load_agent("default")
    agent.strict = True
    got = agent.propose(History(trials=trials), space, target, n=2, seed=0)
    keep = ADAPT_SPEC["first_level_cap"]
    try:
        ADAPT_SPEC["first_level_cap"] = 1e9
        raw = agent.propose(History(trials=trials), space, target, n=2, seed=0)
    finally:
        ADAPT_SPEC["first_level_cap"] = keep
    assert [p.params for p in got] == [p.params for p in raw]
    assert [p.predicted_std for p in got] == [p.predicted_std for p in raw]
    best = min(t.value for t in trials if t.fidelity["n_params"] == 4e8)  # type: ignore[type-var]
    reach = keep * 0.15 * np.hypot(np.log(1.3e9 / 4e8), np.log(2.6e10 / 8e9)) / np.hypot(np.log(2), np.log(2))
    raw_delta = [best - p.predicted_value for p in raw]
    assert max(raw_delta) > reach  # the network extrapolates further than the trend allows ...
    for g, r in zip(got, raw, strict=True):  # ... and what is reported is bent back within it, in order
        assert best - reach < g.predicted_value and (g.predicted_value > r.predicted_value or best - r.predicted_value <= reach / 2)
    assert (got[0].predicted_value < got[1].predicted_value) == (raw[0].predicted_value < raw[1].predicted_value)


@pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").exists(), reason="no shipped checkpoint")
def test_a_first_batch_is_the_policys_choice_and_others_kept_apart() -> None:
    task, cheap = _adamw()
    agent = load_agent("default")
    agent.strict = True
    single = agent.propose(History(trials=cheap), task.space, task.target, seed=0)[0]
    batch = agent.propose(History(trials=cheap), task.space, task.target, n=4, seed=0)
    assert batch[0].params == single.params
    units = np.stack([task.space.to_unit(p.params) for p in batch])
    d = [np.sqrt(((a - b) ** 2).sum() / task.space.width) for j, a in enumerate(units) for b in units[j + 1:]]
    assert min(d) > ADAPT_SPEC["first_batch_radius"]
    # a worker that knows three of them are running picks a fourth configuration, as far from them
    nxt = agent.propose(History(trials=cheap), task.space, task.target, seed=0, pending=[p.params for p in batch[:3]])[0]
    u = task.space.to_unit(nxt.params)
    assert min(np.sqrt(((u - v) ** 2).sum() / task.space.width) for v in units[:3]) > ADAPT_SPEC["first_batch_radius"]


@pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").exists(), reason="no shipped checkpoint")
def test_repeated_identical_target_runs_keep_every_prediction_finite() -> None:
    # the same configuration run five times with the same outcome: the leave-one-out errors are all zero
    task, cheap = _adamw()
    agent = load_agent("default")
    agent.strict = True
    p0 = agent.propose(History(trials=cheap), task.space, task.target, seed=0)[0]
    runs = [Trial(id=f"t{i}", params=p0.params, fidelity=task.target, value=2.6) for i in range(5)]
    props = agent.propose(History(trials=[*cheap, *runs]), task.space, task.target, n=3, seed=0)
    assert all(math.isfinite(p.predicted_value) and p.predicted_std > 0 and math.isfinite(p.predicted_std) for p in props)
    assert all(task.space.config_key(p.params) != task.space.config_key(p0.params) for p in props)


def test_a_bad_run_below_the_best_learning_rate_is_not_a_divergence_wall() -> None:
    up = np.array([True, False, False])
    good = np.array([[0.5, 0.5, 0.5], [0.55, 0.4, 0.5], [0.45, 0.6, 0.5]])
    cands = np.array([[0.5, 0.5, 0.5], [0.7, 0.5, 0.5], [0.95, 0.5, 0.5], [0.05, 0.5, 0.5], [0.06, 0.9, 0.5]])
    # a run at the lowest learning rate came back far worse (under-trained): only its own region is bad
    low = evidence(np.vstack([good, [[0.05, 0.5, 0.5]]]), np.array([3.1, 3.12, 3.11, 4.2]), np.zeros(4), [], upward=up)
    assert low.bad_upward is not None and low.bad_upward.tolist() == [False]
    p = failure_prob(cands, low)
    assert p[:3].max() < 0.05 and p[3] == pytest.approx(1.0)
    # one above the best learning rate is a divergence wall: every higher rate fails with it
    high = evidence(np.vstack([good, [[0.9, 0.5, 0.5]]]), np.array([3.1, 3.12, 3.11, 7.0]), np.zeros(4), [], upward=up)
    assert high.bad_upward is not None and high.bad_upward.tolist() == [True]
    q = failure_prob(cands, high)
    assert q[2] == pytest.approx(1.0) and q[0] < 0.05 and q[3] < 0.05


@pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").exists(), reason="no shipped checkpoint")
def test_after_an_under_trained_run_the_agent_does_not_retreat_to_lower_learning_rates() -> None:
    task, cheap = _adamw()
    agent = load_agent("default")
    agent.strict = True
    hist = History(trials=list(cheap))
    for i in range(5):  # five healthy target runs from the agent
        p = agent.propose(hist, task.space, task.target, seed=i)[0]
        hist = History(trials=[*hist.trials, Trial(id=f"t{i}", params=p.params, fidelity=task.target,
                                                    value=task.true(p.params))])
    lowest = {**p.params, "lr": p.params["lr"] / 5}  # and one at a lower learning rate, clearly worse
    hist = History(trials=[*hist.trials, Trial(id="low", params=lowest, fidelity=task.target, value=task.true(lowest) + 0.3)])
    props = agent.propose(hist, task.space, task.target, n=3, seed=7)
    best_lr = min((t for t in hist.trials if t.fidelity == task.target and t.id != "low"), key=lambda t: t.value).params["lr"]
    assert all(q.params["lr"] > lowest["lr"] for q in props), [q.params["lr"] for q in props]
    assert any(q.params["lr"] > best_lr / 2 for q in props)
