"""The cost-aware mode end to end: a real Optuna study (in memory and SQLite) and a real AskTell, on the docs'
scenario (levels small 1, medium 8, target 70, budget 350) with a cheap synthetic objective."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import optuna
import pytest

from autollm_sampler import AskTell, AutoLLMSampler
from autollm_sampler.exceptions import InvalidHistoryError

TARGET = {"n_params": 1.07e9, "n_tokens": 2e10}
LEVELS = [
    {"n_params": 1.2e8, "n_tokens": 2e9, "cost": 1.0, "name": "small"},
    {"n_params": 3.5e8, "n_tokens": 7e9, "cost": 8.0, "name": "medium"},
    {**TARGET, "cost": 70.0, "name": "target"},
]
COST = {lv["name"]: lv["cost"] for lv in LEVELS}
ORDER = {lv["name"]: i for i, lv in enumerate(LEVELS)}


def train(lr: float, *, n_params: float, n_tokens: float) -> float:
    """The docs' made-up loss: the best lr shrinks as the model grows."""
    best_lr = 3e-3 * (n_params / 1.2e8) ** -0.3
    return 1.8 + 40 / n_params**0.2 + 20 / n_tokens**0.15 + 0.15 * math.log10(lr / best_lr) ** 2


def objective(trial: optuna.Trial) -> float:
    fid = trial.user_attrs["fidelity"]
    return train(trial.suggest_float("lr", 1e-4, 1e-2, log=True), n_params=fid["n_params"], n_tokens=fid["n_tokens"])


def _sampler() -> AutoLLMSampler:
    return AutoLLMSampler(fidelity=("n_params", "n_tokens"), target=TARGET, fidelity_levels=LEVELS, budget=350.0,
                          agent="classical", seed=0)


@pytest.mark.parametrize("storage", ["memory", "sqlite"])
def test_docs_scenario_climbs_once_and_keeps_the_budget_for_the_target(
    storage: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sampler = _sampler()
    url = None if storage == "memory" else f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(sampler=sampler, storage=url)
    with caplog.at_level(logging.INFO, logger="autollm_sampler"):
        study.optimize(objective, n_trials=1000, callbacks=[sampler.stop_when_budget_spent])
    seq = [t.user_attrs["fidelity_level"] for t in study.trials]
    # the old rule ran 76 of 87 trials on the small level (70 first, 6 more after the target runs)
    assert seq.count("small") <= 0.25 * 350.0 / COST["small"] and seq.count("small") < 30, seq
    assert seq.count("target") * COST["target"] >= 0.6 * 350.0  # at least 60% of the budget on target runs
    assert all(ORDER[a] <= ORDER[b] for a, b in zip(seq, seq[1:], strict=False)), f"a cheaper level ran after a costlier one: {seq}"
    assert seq.count("target") >= 3 and seq[-1] == "target"
    spent = sum(COST[s] for s in seq)
    assert sampler.budget_spent(study) == pytest.approx(spent)  # every trial charged its level's cost, exactly
    assert sampler.budget_left(study) == pytest.approx(350.0 - spent) and 350.0 - spent < 70.0
    assert sampler.budget_exhausted(study)
    assert any("left unspent" in r.getMessage() for r in caplog.records), "the stop says why"
    first_medium = study.trials[seq.index("medium")].user_attrs["autollm:schedule"]
    assert "Why: medium: small" in first_medium and ("stagnated after" in first_medium or "used its share" in first_medium)
    assert "Why: target:" in study.trials[seq.index("target")].user_attrs["autollm:schedule"]
    assert sampler.recommend(study).source == "observed"


def test_a_user_chosen_fidelity_is_respected_charged_and_climbed_from() -> None:
    sampler = _sampler()
    study = optuna.create_study(sampler=sampler)
    study.enqueue_trial({}, user_attrs={"fidelity": {"n_params": 3.5e8, "n_tokens": 7e9}})  # a medium run
    study.enqueue_trial({}, user_attrs={"fidelity": {"n_params": 5e8, "n_tokens": 7e9}, "cost": 12.5})  # no level
    study.optimize(objective, n_trials=3)
    assert [t.user_attrs["fidelity"]["n_params"] for t in study.trials[:2]] == [3.5e8, 5e8]
    assert sampler.budget_spent(study) == pytest.approx(8.0 + 12.5 + COST[study.trials[2].user_attrs["fidelity_level"]])
    # a medium run exists, so the rule never goes back to the small level
    assert study.trials[2].user_attrs["fidelity_level"] == "medium"
    assert "small not run (a costlier level ran first)" in study.trials[2].user_attrs["autollm:schedule"]


def test_asktell_stagnation_finishes_a_level_and_the_budget_error_says_why() -> None:
    space = {"params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}, "direction": "minimize"}
    at = AskTell(space, target=TARGET, fidelity_levels=LEVELS, budget=350.0,
                 agent="classical", seed=0)
    seen = []
    with pytest.raises(InvalidHistoryError, match="left unspent"):
        while True:
            s = at.ask()
            level = "small" if s.fidelity["n_params"] == 1.2e8 else "medium" if s.fidelity["n_params"] == 3.5e8 else "target"
            seen.append(level)
            # the small level never improves on its first run: it stagnates after min_runs = 8 runs
            value = 3.0 + (0.0 if len(seen) == 1 else 0.1) if level == "small" else train(s.params["lr"], **s.fidelity)
            at.tell(s.id, value)
    assert seen[:9] == ["small"] * 8 + ["medium"]
    assert "small stagnated after 8 runs" in str(at.history.trials[8].attrs["rationale"])
    assert all(ORDER[a] <= ORDER[b] for a, b in zip(seen, seen[1:], strict=False))
    spent = sum(COST[s] for s in seen)
    assert at.budget_left() == pytest.approx(350.0 - spent)
    # an explicit fidelity runs outside the rule and is charged at its level's cost
    s = at.ask(fidelity={"n_params": 1.2e8, "n_tokens": 2e9})
    assert s.fidelity == {"n_params": 1.2e8, "n_tokens": 2e9}
    assert at.budget_left() == pytest.approx(350.0 - spent - 1.0)


def test_budget_rule_options_reach_the_rule_in_every_frontend() -> None:
    from autollm_sampler.integrations.ray import AutoLLMSearcher

    opts = {"level_share": 0.1, "patience": 2, "min_runs": 3, "min_improvement": 0.5}
    frontends = [
        AutoLLMSampler(fidelity=("n_params", "n_tokens"), target=TARGET, fidelity_levels=LEVELS, budget=350.0,
                       agent="classical", seed=0, budget_rule=opts),
        AskTell({"params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}}, target=TARGET,
                fidelity_levels=LEVELS, budget=350.0, agent="classical", seed=0, budget_rule=opts),
        AutoLLMSearcher(metric="loss", mode="min", fidelity=("n_params", "n_tokens"), target=TARGET,
                        fidelity_levels=LEVELS, budget=350.0, agent="classical", seed=0, budget_rule=opts),
    ]
    for f in frontends:
        schedule = f._core.schedule
        assert schedule is not None
        assert {k: schedule.rule_options()[k] for k in opts} == opts, type(f).__name__
    # a study under the tighter rule: small may spend 10% of the budget (35 runs) and stops after 3 flat runs
    study = optuna.create_study(sampler=frontends[0])
    study.optimize(lambda t: 2.0 if t.user_attrs["fidelity"]["n_params"] < 1e9 else objective(t), n_trials=12)
    levels = [t.user_attrs["fidelity_level"] for t in study.trials]
    assert levels[:3] == ["small"] * 3 and levels[3] == "medium"


def test_budget_rule_options_are_checked() -> None:
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['patiance'\]; the options are"):
        AskTell({"params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2}}}, target=TARGET, fidelity_levels=LEVELS,
                agent="classical", budget_rule={"patiance": 2})
    with pytest.raises(ValueError, match="only applies to the cost-aware mode"):
        AutoLLMSampler(fidelity=("n_params",), target={"n_params": 1e9}, agent="classical", budget_rule={"patience": 2})
    with pytest.raises(ValueError, match="min_runs=2 must be larger than patience=4"):
        AutoLLMSampler(fidelity=("n_params", "n_tokens"), target=TARGET, fidelity_levels=LEVELS, agent="classical",
                       budget_rule={"min_runs": 2})
    with pytest.raises(TypeError, match="must be a dict"):
        AutoLLMSampler(fidelity=("n_params", "n_tokens"), target=TARGET, fidelity_levels=LEVELS, agent="classical",
                       budget_rule=[("patience", 2)])  # type: ignore[arg-type]


def test_the_sampler_tells_the_rule_how_many_parameters_a_mixture_counting_once() -> None:
    sampler = AutoLLMSampler(fidelity=("n_params", "n_tokens"), target=TARGET, fidelity_levels=LEVELS, budget=350.0,
                             agent="classical", seed=0, mixtures={"mix": ["a", "b", "c"]})
    seen: list[int | None] = []
    choose = sampler._core.choose_level

    def spy(runs, direction, dims=None):  # type: ignore[no-untyped-def]
        seen.append(dims)
        return choose(runs, direction, dims)

    sampler._core.choose_level = spy  # type: ignore[method-assign]

    def obj(t: optuna.Trial) -> float:
        w = [t.suggest_float(f"mix.{c}", 0.0, 1.0) for c in "abc"]
        return sum(w) + t.suggest_float("lr", 1e-4, 1e-2, log=True)

    study = optuna.create_study(sampler=sampler)
    study.optimize(obj, n_trials=3)
    assert seen[0] is None and seen[-1] == 2  # nothing seen yet; then lr and the mixture
