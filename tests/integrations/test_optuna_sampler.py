"""AutoLLMSampler in real Optuna studies: fidelity, trial states, pending trials, mixtures, cost-aware mode."""

from __future__ import annotations

import io
import logging
import math
import pickle
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from autollm_sampler.agent import Agent, ClassicalAgent, Proposal
from autollm_sampler.history import History
from autollm_sampler.integrations.optuna import AutoLLMSampler, suggest_mixture
from autollm_sampler.space import SearchSpace, SimplexParam

optuna.logging.set_verbosity(optuna.logging.WARNING)

TARGET = {"n_params": 1e9, "n_tokens": 2e10}
CHEAP = {"n_params": 1e8, "n_tokens": 2e9}
LR = CategoricalDistribution([1e-4, 3e-4, 1e-3, 3e-3, 1e-2])
BS = CategoricalDistribution([32, 64, 128, 256])
DISTS = {"lr": LR, "bs": BS}


class SpyAgent(Agent):
    """The classical agent, recording what every ``propose`` call received."""

    name = "spy"

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self._inner = ClassicalAgent()

    def _propose(self, history, space, target, n, rng, candidates, pending):  # type: ignore[no-untyped-def]
        self.calls.append({"history": history, "space": space, "target": dict(target), "pending": list(pending)})
        return self._inner._propose(history, space, target, n, rng, candidates, pending)


def loss(lr: float, bs: int, scale: float = 1.0) -> float:
    return scale * (2.0 + (math.log10(lr) + 2.5) ** 2 + 0.1 * abs(math.log2(bs / 128)))


def objective(trial: optuna.Trial) -> float:
    lr = trial.suggest_categorical("lr", LR.choices)
    bs = trial.suggest_categorical("bs", BS.choices)
    return loss(float(lr), int(bs))


def add_cheap_runs(study: optuna.Study, fid: Mapping[str, float] = CHEAP, flat: bool = False) -> None:
    for lr in LR.choices:
        for bs in BS.choices:
            attrs = dict(fid) if flat else {"fidelity": dict(fid)}
            study.add_trial(create_trial(params={"lr": lr, "bs": bs}, distributions=DISTS,
                                         value=loss(float(lr), int(bs), 1.3), user_attrs=attrs))


def make_sampler(agent: Agent | str = "classical", **kw: Any) -> AutoLLMSampler:
    return AutoLLMSampler(fidelity=("n_params", "n_tokens"), target=TARGET, agent=agent, seed=0, **kw)


# --------------------------------------------------------------------------- fidelity
def test_way1_add_trial_fidelity_is_history_and_transfer_picks_the_cheap_optimum() -> None:
    spy = SpyAgent()
    study = optuna.create_study(sampler=make_sampler(spy))
    add_cheap_runs(study)
    study.optimize(objective, n_trials=1)
    call = spy.calls[0]
    assert call["target"] == TARGET
    assert {tuple(sorted(t.fidelity.items())) for t in call["history"].trials} == {tuple(sorted(CHEAP.items()))}
    assert len(call["history"]) == 20
    # the classical agent transfers the best cheap configuration (lr=3e-3, bs=128) to the target
    assert study.trials[-1].params == {"lr": 3e-3, "bs": 128}
    assert "fidelity" not in study.trials[-1].user_attrs  # a trial without fidelity is a target trial


def test_flat_axis_user_attrs_are_read_too() -> None:
    spy = SpyAgent()
    study = optuna.create_study(sampler=make_sampler(spy))
    add_cheap_runs(study, flat=True)
    study.optimize(objective, n_trials=1)
    assert all(t.fidelity == CHEAP for t in spy.calls[0]["history"].trials)


def test_way2_enqueue_trial_with_fidelity_runs_at_that_fidelity() -> None:
    spy = SpyAgent()
    study = optuna.create_study(sampler=make_sampler(spy))
    add_cheap_runs(study)
    mid = {"n_params": 3e8, "n_tokens": 6e9}
    study.enqueue_trial({}, user_attrs={"fidelity": mid})
    study.optimize(objective, n_trials=2)
    assert spy.calls[0]["target"] == mid
    assert spy.calls[1]["target"] == TARGET
    # the mid-fidelity trial is history for the second proposal, at its own fidelity
    fids = {tuple(sorted(t.fidelity.items())) for t in spy.calls[1]["history"].trials}
    assert tuple(sorted(mid.items())) in fids


def test_way3_set_user_attr_before_first_suggest() -> None:
    spy = SpyAgent()
    study = optuna.create_study(sampler=make_sampler(spy))
    add_cheap_runs(study)

    def obj(trial: optuna.Trial) -> float:
        trial.set_user_attr("fidelity", {"n_params": 5e8})  # n_tokens left out: it takes the target's value
        return objective(trial)

    study.optimize(obj, n_trials=1)
    assert spy.calls[0]["target"] == {"n_params": 5e8, "n_tokens": 2e10}


def test_invalid_fidelity_attribute_is_left_out_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    spy = SpyAgent()
    study = optuna.create_study(sampler=make_sampler(spy))
    add_cheap_runs(study)
    study.add_trial(create_trial(params={"lr": 1e-4, "bs": 32}, distributions=DISTS, value=9.0,
                                 user_attrs={"fidelity": "small"}))
    with caplog.at_level(logging.WARNING, logger="autollm_sampler"):
        study.optimize(objective, n_trials=2)
    assert len(spy.calls[0]["history"]) == 20
    assert sum("not a {axis: number} dict" in r.getMessage() for r in caplog.records) == 1


# --------------------------------------------------------------------------- trial states
def test_failed_pruned_nan_and_inf_trials_are_history_and_never_crash() -> None:
    spy = SpyAgent()
    study = optuna.create_study(sampler=make_sampler(spy))
    add_cheap_runs(study)
    study.add_trial(create_trial(state=TrialState.FAIL, params={"lr": 3e-3, "bs": 128}, distributions=DISTS))
    study.add_trial(create_trial(state=TrialState.PRUNED, params={"lr": 1e-3, "bs": 128}, distributions=DISTS,
                                 intermediate_values={0: 5.0, 1: float("nan"), 2: 4.0}))
    study.add_trial(create_trial(value=float("inf"), params={"lr": 3e-3, "bs": 64}, distributions=DISTS))
    values = iter([float("nan"), 3.0, float("nan"), 2.5])
    study.optimize(lambda t: objective(t) * 0 + next(values), n_trials=4)
    states = [t.state for t in study.trials[-4:]]
    assert states == [TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    h: History = spy.calls[0]["history"]
    at_target = [t for t in h.trials if t.fidelity == TARGET]
    failed = [t.params for t in at_target if t.state == "failed"]
    assert failed == [{"lr": 3e-3, "bs": 128}, {"lr": 3e-3, "bs": 64}]  # FAIL and the infinite COMPLETE
    pruned = [t for t in at_target if t.state == "pruned"]
    assert len(pruned) == 1 and pruned[0].value == 4.0  # the last finite intermediate value
    # a failed configuration counts as tried: the best cheap config (lr=3e-3, bs=128) is not proposed again
    target_params = [t.params for t in study.trials[-4:]]
    assert {"lr": 3e-3, "bs": 128} not in target_params
    assert len({tuple(sorted(p.items())) for p in target_params}) == 4


def test_running_trials_are_pending_including_an_unwritten_proposal() -> None:
    spy = SpyAgent()
    study = optuna.create_study(sampler=make_sampler(spy))
    add_cheap_runs(study)
    first = study.ask()
    first.suggest_categorical("lr", LR.choices)  # only lr is written; bs lives in the stored proposal
    second = study.ask()
    p2 = {"lr": second.suggest_categorical("lr", LR.choices), "bs": second.suggest_categorical("bs", BS.choices)}
    assert {"lr": 3e-3, "bs": 128} in spy.calls[1]["pending"]
    assert p2 != {"lr": 3e-3, "bs": 128}
    assert first.params["lr"] == 3e-3


def test_n_jobs_threads_never_duplicate_a_configuration() -> None:
    study = optuna.create_study(sampler=make_sampler())
    add_cheap_runs(study)
    study.optimize(objective, n_trials=12, n_jobs=3)
    target = [t for t in study.trials if "fidelity" not in t.user_attrs]
    assert len(target) == 12 and all(t.state == TrialState.COMPLETE for t in target)
    keys = [(t.params["lr"], t.params["bs"]) for t in target]
    assert len(set(keys)) == 12


# --------------------------------------------------------------------------- directions, errors
def test_maximize_transfers_the_highest_cheap_value() -> None:
    study = optuna.create_study(sampler=make_sampler(), direction="maximize")
    add_cheap_runs(study)
    study.optimize(objective, n_trials=1)
    # under maximisation the cheap optimum is the worst loss: lr=1e-4 with bs=32 (ties broken by order)
    assert study.trials[-1].params["lr"] == 1e-4


def test_multi_objective_study_gets_a_clear_error() -> None:
    study = optuna.create_study(sampler=make_sampler(), directions=["minimize", "minimize"])
    with pytest.raises(ValueError, match="single-objective studies only"):
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fidelity": ("n",)}, "needs target="),
        ({"fidelity": ("n",), "target": {"m": 1.0}}, "missing \\['n'\\]"),
        ({"fidelity": ("n",), "target": {"n": float("nan")}}, "finite number"),
        ({"budget": 10.0}, "only applies to the cost-aware mode"),
        ({"fidelity": ("n",), "target": {"n": 10}, "fidelity_levels": [{"n": 1, "cost": 1}]}, "not one of fidelity_levels"),
        ({"fidelity": ("n",), "target": {"n": 10}, "fidelity_levels": [{"n": 10}]}, "\\['cost'\\]"),
        ({"mixtures": {"mix": ["a"]}}, "at least two distinct"),
    ],
)
def test_constructor_errors_name_the_argument(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AutoLLMSampler(agent="classical", **kwargs)


# --------------------------------------------------------------------------- fallback, mixtures
def test_conditional_parameter_goes_to_the_fallback_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    study = optuna.create_study(sampler=make_sampler())
    add_cheap_runs(study)

    def obj(trial: optuna.Trial) -> float:
        v = objective(trial)
        if trial.number % 2:
            v += trial.suggest_float("dropout", 0.0, 0.5)
        return v

    with caplog.at_level(logging.WARNING, logger="autollm_sampler"):
        study.optimize(obj, n_trials=6)
    msgs = [r.getMessage() for r in caplog.records if "'dropout'" in r.getMessage()]
    assert len(msgs) == 1 and "fallback sampler RandomSampler" in msgs[0]
    assert all(0.0 <= t.params["dropout"] <= 0.5 for t in study.trials if "dropout" in t.params)


def test_mixture_weights_are_proposed_on_the_simplex() -> None:
    spy = SpyAgent()
    comps = ["web", "code", "books"]
    sampler = make_sampler(spy, mixtures={"mix": comps})
    study = optuna.create_study(sampler=sampler)
    unit = FloatDistribution(0.0, 1.0)
    rng = np.random.default_rng(0)
    for _ in range(15):
        w = rng.dirichlet(np.ones(3))
        study.add_trial(create_trial(
            params={"mix.web": w[0], "mix.code": w[1], "mix.books": w[2], "lr": 1e-3},
            distributions={"mix.web": unit, "mix.code": unit, "mix.books": unit, "lr": LR},
            value=float((w[1] - 0.6) ** 2), user_attrs={"fidelity": CHEAP},
        ))

    def obj(trial: optuna.Trial) -> float:
        w = suggest_mixture(trial, "mix", comps)
        trial.suggest_categorical("lr", LR.choices)
        return (w["code"] - 0.6) ** 2

    study.optimize(obj, n_trials=3)
    space: SearchSpace = spy.calls[0]["space"]
    assert isinstance(space.params["mix"], SimplexParam) and list(space.params) == ["mix", "lr"]
    for t in study.trials[-3:]:
        ws = [t.params[f"mix.{c}"] for c in comps]
        assert all(0.0 <= x <= 1.0 for x in ws) and sum(ws) == pytest.approx(1.0, abs=1e-9)
    # the first proposal transfers the best cheap mixture
    best_cheap = min(study.trials[:15], key=lambda t: t.value)
    assert study.trials[15].params["mix.code"] == pytest.approx(best_cheap.params["mix.code"] / sum(best_cheap.params[f"mix.{c}"] for c in comps))


def test_float_int_log_step_values_stay_inside_their_distributions() -> None:
    dists = {"a": FloatDistribution(1e-5, 1.0, log=True), "b": FloatDistribution(-1, 1, step=0.25),
             "c": IntDistribution(1, 64, log=True), "d": IntDistribution(0, 30, step=3)}
    study = optuna.create_study(sampler=make_sampler())
    rng = np.random.default_rng(1)
    for _ in range(10):
        p = {"a": float(10 ** rng.uniform(-5, 0)), "b": float(rng.integers(-4, 5) * 0.25),
             "c": int(rng.integers(1, 65)), "d": int(rng.integers(0, 11) * 3)}
        study.add_trial(create_trial(params=p, distributions=dists, value=float(rng.normal()), user_attrs={"fidelity": CHEAP}))
    study.optimize(lambda t: t.suggest_float("a", 1e-5, 1.0, log=True) + t.suggest_float("b", -1, 1, step=0.25)
                   + t.suggest_int("c", 1, 64, log=True) + t.suggest_int("d", 0, 30, step=3), n_trials=8)
    for t in study.trials[10:]:
        for name, d in dists.items():
            assert d._contains(d.to_internal_repr(t.params[name]))
        assert isinstance(t.params["c"], int) and isinstance(t.params["a"], float)


# --------------------------------------------------------------------------- seeds, pickle, explain
def _run(sampler: AutoLLMSampler, n: int = 5) -> list[dict[str, Any]]:
    study = optuna.create_study(sampler=sampler)
    study.add_trial(create_trial(params={"x": 0.3, "y": 2}, distributions={"x": FloatDistribution(0, 1), "y": IntDistribution(0, 9)}, value=1.0))
    study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_int("y", 0, 9), n_trials=n)
    return [t.params for t in study.trials[1:]]


def test_seed_reproduces_and_reseed_rng_changes_the_stream() -> None:
    a = _run(AutoLLMSampler(agent="classical", seed=7))
    b = _run(AutoLLMSampler(agent="classical", seed=7))
    assert a == b
    c_sampler = AutoLLMSampler(agent="classical", seed=7)
    c_sampler.reseed_rng()
    assert _run(c_sampler) != a


def test_pickle_round_trip_keeps_working_mid_study() -> None:
    sampler = make_sampler()
    study = optuna.create_study(sampler=sampler)
    add_cheap_runs(study)
    study.optimize(objective, n_trials=2)
    clone = pickle.loads(pickle.dumps(sampler))
    study.sampler = clone
    study.optimize(objective, n_trials=2)
    assert len({(t.params["lr"], t.params["bs"]) for t in study.trials[20:]}) == 4


def test_rationale_and_prediction_are_stored_and_explained() -> None:
    sampler = make_sampler()
    study = optuna.create_study(sampler=sampler)
    add_cheap_runs(study)
    study.optimize(objective, n_trials=2)
    t = study.trials[20]
    assert "Transferred from the nearest cheaper cell" in t.user_attrs["autollm:rationale"]
    assert t.user_attrs["autollm:predicted_value"] is None  # one cheaper cell: no prediction for the target
    assert t.user_attrs["autollm:source"] == "classical"
    buf = io.StringIO()
    text = sampler.explain(study, file=buf)
    assert buf.getvalue() == text
    assert "n_params=1e+08, n_tokens=2e+09: 20 runs (20 complete)" in text
    assert "Trial 20 [n_params=1e+09, n_tokens=2e+10]: lr=0.003, bs=128 ->" in text
    # the two rationales share their first sentence: shown once, the second trial points to the first
    assert text.count("why: Transferred") == 1 and "why: (1 sentence as for trial 20)" in text
    rec = sampler.recommend(study)
    assert rec.source == "observed" and rec.params == min(study.trials[20:], key=lambda t: t.value).params


# --------------------------------------------------------------------------- cost-aware mode
def test_cost_aware_mode_climbs_the_ladder_within_budget() -> None:
    levels = [
        {"n_params": 1e8, "n_tokens": 2e9, "cost": 1.0, "name": "small"},
        {"n_params": 3e8, "n_tokens": 6e9, "cost": 4.0, "name": "medium"},
        {**TARGET, "cost": 10.0, "name": "target"},
    ]
    sampler = make_sampler(fidelity_levels=levels)
    study = optuna.create_study(sampler=sampler)
    seen: list[str] = []

    def obj(trial: optuna.Trial) -> float:
        fid = trial.user_attrs["fidelity"]  # chosen by the sampler before the objective runs
        seen.append(trial.user_attrs["fidelity_level"])
        return loss(trial.suggest_categorical("lr", LR.choices), trial.suggest_categorical("bs", BS.choices),
                    1.0 + 1e9 / fid["n_params"] / 10)

    study.optimize(obj, n_trials=100, callbacks=[sampler.stop_when_budget_spent])
    assert sampler.budget_spent(study) <= 50.0 and sampler.budget_exhausted(study)
    # 3 target runs (60% of 50) are kept; small may spend 10 (its half of the other 20) and stops once it
    # stagnates; medium gets what small left (at most 25% of 50); then the target; no cheap run after it
    n_small, n_medium = seen.count("small"), seen.count("medium")
    assert seen == ["small"] * n_small + ["medium"] * n_medium + ["target"] * 3, seen
    assert 6 <= n_small <= 10 and 1 <= n_medium <= 3
    assert sampler.budget_spent(study) == pytest.approx(n_small + 4 * n_medium + 30.0)
    rec = sampler.recommend(study)
    assert rec.source == "observed"
    assert rec.params == min((t for t in study.trials if t.user_attrs["fidelity_level"] == "target"), key=lambda t: t.value).params
    first_target = study.trials[n_small + n_medium].user_attrs["autollm:schedule"]
    assert "Cost-aware: runs at the target" in first_target and "Why: target:" in first_target
    first_medium = study.trials[n_small].user_attrs["autollm:schedule"]
    assert f"small stagnated after {n_small} runs" in first_medium or "small used its share" in first_medium


def test_cost_aware_respects_a_user_chosen_fidelity() -> None:
    levels = [{"n_params": 1e8, "n_tokens": 2e9, "cost": 1.0}, {**TARGET, "cost": 10.0}]
    sampler = make_sampler(fidelity_levels=levels, budget=30.0)
    study = optuna.create_study(sampler=sampler)
    study.enqueue_trial({}, user_attrs={"fidelity": TARGET})
    study.optimize(objective, n_trials=1)
    assert study.trials[0].user_attrs["fidelity"] == TARGET
    assert sampler.budget_left(study) == pytest.approx(20.0)


# --------------------------------------------------------------------------- agents
def test_default_agent_falls_back_with_a_warning_or_loads(caplog: pytest.LogCaptureFixture) -> None:
    from autollm_sampler.agent import DEFAULT_CHECKPOINT

    study = optuna.create_study(sampler=AutoLLMSampler(fidelity=("n_params", "n_tokens"), target=TARGET, seed=0))
    add_cheap_runs(study)
    with caplog.at_level(logging.WARNING, logger="autollm_sampler"):
        study.optimize(objective, n_trials=2)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    agent = study.sampler.agent  # type: ignore[attr-defined]
    if (DEFAULT_CHECKPOINT / "model.safetensors").exists():
        assert type(agent).__name__ == "TransformerAgent"
    else:
        assert isinstance(agent, ClassicalAgent)
        assert any("using the classical agent instead" in r.getMessage() for r in caplog.records)


def test_a_model_agent_drives_the_sampler() -> None:
    pytest.importorskip("torch")
    from autollm_sampler.agent import DEFAULT_CHECKPOINT, load_agent

    if not (DEFAULT_CHECKPOINT / "model.safetensors").exists():
        pytest.skip(f"the default checkpoint is not shipped yet ({DEFAULT_CHECKPOINT})")
    agent = load_agent("default")
    study = optuna.create_study(sampler=make_sampler(agent))
    add_cheap_runs(study)
    study.optimize(objective, n_trials=3)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert all(t.user_attrs["autollm:source"] in ("model", "fallback", "classical") for t in study.trials[20:])


class _ConstantAgent(Agent):
    """Returns an out-of-range, wrongly typed proposal: the sampler must fall back, not crash."""

    name = "broken"

    def _propose(self, history: History, space: SearchSpace, target: dict[str, float], n: int, rng: np.random.Generator,
                 candidates: Sequence[Mapping[str, Any]] | None, pending: list[Mapping[str, Any]]) -> list[Proposal]:
        return [Proposal({"lr": "oops", "bs": 10_000}, float("nan"), float("nan"), "bad", "model")]


def test_invalid_agent_output_falls_back_to_independent_sampling() -> None:
    study = optuna.create_study(sampler=make_sampler(_ConstantAgent()))
    add_cheap_runs(study)
    study.optimize(objective, n_trials=3)
    for t in study.trials[20:]:
        assert t.params["lr"] in LR.choices and t.params["bs"] in BS.choices


def test_an_untrained_transformer_agent_drives_a_study_without_falling_back(caplog: pytest.LogCaptureFixture) -> None:
    """The model backend (untrained weights: the same code path as the shipped checkpoint) inside a study."""
    pytest.importorskip("torch")
    from autollm_sampler.agent._model import AgentModelConfig, TransformerAgent

    agent = TransformerAgent.from_config(AgentModelConfig(hidden_size=32, num_layers=1, num_heads=2), seed=0)
    comps = ["web", "code"]
    study = optuna.create_study(sampler=make_sampler(agent, mixtures={"mix": comps}))
    add_cheap_runs(study)

    def obj(trial: optuna.Trial) -> float:
        w = suggest_mixture(trial, "mix", comps)
        return objective(trial) + w["code"]

    with caplog.at_level(logging.WARNING, logger="autollm_sampler"):
        study.optimize(obj, n_trials=4)
    new = study.trials[20:]
    assert all(t.state == TrialState.COMPLETE for t in new)
    # trial 20 is the first with mixture params (sampled by the fallback); later ones come from the model
    assert [t.user_attrs.get("autollm:source") for t in new[1:]] == ["model"] * 3
    assert len({(t.params["lr"], t.params["bs"], round(t.params["mix.web"], 6)) for t in new}) == 4
    assert not [r for r in caplog.records if "falling back" in r.getMessage() or "failed to propose" in r.getMessage()]
