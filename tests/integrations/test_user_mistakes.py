"""Mistakes users make with AutoLLMSampler, caught with one clear warning or error.

Cheap runs without fidelity, fidelity given as params or as strings, near-target fidelities, unknown roles;
and the helpers that avoid them: ``add_history`` (import a spreadsheet of runs), ``target_trials`` /
``target_best_trial`` (the target runs only) and ``describe_space`` (the roles the agent reads).
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from autollm_sampler.agent import Agent, ClassicalAgent
from autollm_sampler.exceptions import InvalidHistoryError, InvalidTrialError
from autollm_sampler.history import History, Trial
from autollm_sampler.integrations.optuna import (
    IS_TARGET_ATTR,
    AutoLLMSampler,
    add_history,
    target_best_trial,
    target_trials,
)
from autollm_sampler.space import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)

LOGGER = "autollm_sampler.integrations.optuna"
TARGET = {"n_params": 1.07e9, "n_tokens": 2.6e10}
CHEAP = {"n_params": 1.2e8, "n_tokens": 2e9}
LR = FloatDistribution(1e-4, 1e-1, log=True)
BS = CategoricalDistribution([32, 64, 128, 256])
DISTS = {"lr": LR, "bs": BS}


class SpyAgent(Agent):
    """The classical agent, keeping the history of every ``propose`` call."""

    name = "spy"

    def __init__(self) -> None:
        self.histories: list[History] = []
        self._inner = ClassicalAgent()

    def _propose(self, history, space, target, n, rng, candidates, pending):  # type: ignore[no-untyped-def]
        self.histories.append(history)
        return self._inner._propose(history, space, target, n, rng, candidates, pending)


def loss(lr: float, bs: int, scale: float = 1.0) -> float:
    return scale * (2.0 + (math.log10(lr) + 2.5) ** 2 + 0.1 * abs(math.log2(bs / 128)))


def objective(trial: optuna.Trial) -> float:
    return loss(trial.suggest_float("lr", 1e-4, 1e-1, log=True), int(trial.suggest_categorical("bs", BS.choices)))


def cheap_trial(lr: float, bs: int, user_attrs: dict[str, Any] | None, scale: float = 0.8, params: dict | None = None,
                dists: dict | None = None) -> optuna.trial.FrozenTrial:
    return create_trial(params={"lr": lr, "bs": bs, **(params or {})}, distributions={**DISTS, **(dists or {})},
                        value=loss(lr, bs, scale), user_attrs=user_attrs or {})


def records(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno >= level]


def cells(history: History) -> set[tuple[tuple[str, float], ...]]:
    return set(history.cells())


def make_sampler(agent: Agent | str = "classical", **kw: Any) -> AutoLLMSampler:
    return AutoLLMSampler(fidelity=("n_params", "n_tokens"), target=TARGET, agent=agent, seed=0, **kw)


# ---------------------------------------------------------------------- cheap runs without fidelity
def test_trials_added_without_fidelity_are_warned_about_once_with_their_count(caplog) -> None:
    spy = SpyAgent()
    study = optuna.create_study(sampler=make_sampler(spy))
    for i in range(52):
        study.add_trial(cheap_trial(10 ** (-4 + 3 * i / 51), BS.choices[i % 4], None))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        study.optimize(objective, n_trials=3)
    msgs = [m for m in records(caplog) if "have no 'fidelity' user attribute" in m]
    assert len(msgs) == 1
    assert msgs[0].startswith("52 finished trial(s) (first: #0)")
    assert "add_history" in msgs[0] and "user_attrs={'fidelity'" in msgs[0]
    # the warning is right: they were read as target runs
    assert cells(spy.histories[0]) == {tuple(sorted(TARGET.items()))}


def test_the_samplers_own_trials_and_trials_with_fidelity_are_not_warned_about(caplog) -> None:
    study = optuna.create_study(sampler=make_sampler())
    for i in range(4):
        study.add_trial(cheap_trial(10 ** (-3 + i / 3), 128, {"fidelity": CHEAP}))
    study.add_trial(cheap_trial(3e-3, 128, {"fidelity": TARGET}, scale=1.0))  # a target run, said so
    study.enqueue_trial({"lr": 1e-3, "bs": 64})
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        study.optimize(objective, n_trials=6)
    assert not [m for m in records(caplog) if "fidelity" in m]
    # every trial the sampler saw is marked for the dashboard
    run_here = [t for t in study.trials if t.number >= 5]
    assert all(t.user_attrs[IS_TARGET_ATTR] is True for t in run_here)


def test_fidelity_given_as_a_param_is_warned_about(caplog) -> None:
    study = optuna.create_study(sampler=make_sampler())
    dist = {"n_tokens": FloatDistribution(1e8, 1e11, log=True)}
    for lr in (1e-3, 3e-3, 1e-2):
        study.add_trial(cheap_trial(lr, 128, {"n_params": 1.2e8}, params={"n_tokens": 2e9}, dists=dist))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        study.optimize(lambda t: objective(t) + 0 * t.suggest_float("n_tokens", 1e8, 1e11, log=True), n_trials=2)
    msgs = [m for m in records(caplog) if "is a parameter of" in m]
    assert len(msgs) == 1
    assert "fidelity axis 'n_tokens' is a parameter of 3 trial(s)" in msgs[0]
    assert "user_attrs={'fidelity': {'n_tokens': value" in msgs[0]


# ---------------------------------------------------------------------- fidelity values as strings
def test_numeric_fidelity_strings_are_read_as_numbers_without_warnings(caplog) -> None:
    spy = SpyAgent()
    study = optuna.create_study(sampler=make_sampler(spy))
    for i in range(50):  # as csv.DictReader gives them
        fid = {"n_params": "120000000", "n_tokens": " 2e9 "} if i < 48 else {"n_params": "1.07e9", "n_tokens": "2.6e10"}
        study.add_trial(cheap_trial(10 ** (-4 + 3 * i / 49), BS.choices[i % 4], {"fidelity": fid}))
    with caplog.at_level(logging.INFO, logger=LOGGER):
        study.optimize(objective, n_trials=2)
    assert records(caplog) == []  # no warning at all
    assert len([m for m in records(caplog, logging.INFO) if "strings are read as numbers" in m]) == 1
    assert cells(spy.histories[0]) == {tuple(sorted(CHEAP.items())), tuple(sorted(TARGET.items()))}
    assert len(spy.histories[0]) == 50
    assert [t.number for t in target_trials(study)] == [48, 49, 50, 51]


def test_unreadable_fidelity_values_are_warned_about_once_not_per_trial(caplog) -> None:
    study = optuna.create_study(sampler=make_sampler())
    for i in range(50):
        study.add_trial(cheap_trial(10 ** (-4 + 3 * i / 49), 128, {"fidelity": {"n_params": "120M", "n_tokens": 2e9}}))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        study.optimize(objective, n_trials=2)
    msgs = records(caplog)
    assert len(msgs) == 1
    assert "fidelity 'n_params' is '120M', not a finite number" in msgs[0]
    assert "left out of the history" in msgs[0]


# ---------------------------------------------------------------------- near-target fidelity
def test_near_target_runs_count_as_target_runs(caplog) -> None:
    spy = SpyAgent()
    study = optuna.create_study(sampler=make_sampler(spy))
    near = {"n_params": 1.07e9, "n_tokens": 25_999_966_208.0}  # what a loader rounding to whole batches logs
    ladder = [{"n_params": 1.2e8 * 2**k, "n_tokens": 2e9 * 2**k} for k in range(6)]
    for k, fid in enumerate(ladder):
        for lr in (1e-3, 3e-3):
            study.add_trial(cheap_trial(lr, 128, {"fidelity": fid}, scale=1.5 - 0.1 * k))
    for lr, bs in ((1e-3, 64), (3e-3, 128), (1e-2, 256)):
        study.add_trial(cheap_trial(lr, bs, {"fidelity": near}, scale=1.0))
    sampler = study.sampler
    assert isinstance(sampler, AutoLLMSampler)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        rec = sampler.recommend(study)
        study.optimize(objective, n_trials=1)
    assert rec.source == "observed"
    assert rec.params == {"lr": 3e-3, "bs": 128}
    assert rec.predicted_value == pytest.approx(loss(3e-3, 128))
    history = spy.histories[0]
    assert len(cells(history)) == 7  # 6 cheap cells and the target, not 8
    assert len(history.at(TARGET)) == 3
    msgs = [m for m in records(caplog) if "within 1%" in m]
    assert len(msgs) == 1 and "counts as a target run" in msgs[0]
    assert [t.number for t in target_trials(study)] == [12, 13, 14, 15]
    # 2 % off is a different cell
    study.add_trial(cheap_trial(1e-3, 32, {"fidelity": {"n_params": 1.07e9, "n_tokens": 2.55e10}}))
    assert not sampler.is_target_trial(study.trials[-1])


# ---------------------------------------------------------------------- roles
def test_an_unknown_role_is_an_error_naming_the_parameter() -> None:
    with pytest.raises(ValueError) as info:
        make_sampler(roles={"peak": "learning_rate"})
    msg = str(info.value)
    assert msg.startswith("roles['peak']: unknown role 'learning_rate'")
    assert "batch_size" in msg and "did you mean 'lr'" in msg
    assert make_sampler(roles={"peak": "LR"})._spaces.roles == {"peak": "lr"}


def test_describe_space_shows_the_roles_the_agent_reads() -> None:
    study = optuna.create_study(sampler=make_sampler(roles={"scale": "lr"}))
    dists = {
        "learning_rate": LR,
        "lr_warmup_steps": IntDistribution(0, 2000, step=100),
        "embed_dropout": FloatDistribution(0.0, 0.3),
        "scale": FloatDistribution(0.1, 10.0, log=True),
        "note": CategoricalDistribution([None, "x"]),
    }
    params = {"learning_rate": 1e-3, "lr_warmup_steps": 500, "embed_dropout": 0.1, "scale": 1.0, "note": "x"}
    study.add_trial(create_trial(params=params, distributions=dists, value=1.0, user_attrs={"fidelity": CHEAP}))
    sampler = study.sampler
    assert isinstance(sampler, AutoLLMSampler)
    assert sampler.parameter_roles(study) == {
        "learning_rate": "lr", "lr_warmup_steps": "warmup", "embed_dropout": "dropout", "scale": "lr"}
    text = sampler.describe_space(study)
    lines = text.splitlines()
    assert any("lr_warmup_steps" in ln and "int in [0, 2000], step 100" in ln and "role warmup (guessed from the name)" in ln for ln in lines)
    assert any(ln.strip().startswith("scale") and "role lr (given in roles=)" in ln for ln in lines)
    assert "Sampled by the fallback sampler (RandomSampler): note" in text
    assert "Valid roles" in text and "mlp_ratio" in text


# ---------------------------------------------------------------------- importing runs
CSV = """id,param:lr,param:bs,fidelity:n_params,fidelity:n_tokens,value,state,cost
a,0.001,128,1.2e8,2e9,3.1,complete,1.5
b,0.003,64,1.2e8,2e9,3.0,complete,1.5
c,0.01,256,1.2e8,2e9,,failed,1.5
d,0.003,128,4.8e8,8e9,2.7,pruned,6
e,0.003,128,1.07e9,25999966208,2.5,complete,20
"""


def test_add_history_imports_a_csv_into_a_sqlite_study(tmp_path: Path, caplog) -> None:
    path = tmp_path / "runs.csv"
    path.write_text(CSV)
    spy = SpyAgent()
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(sampler=make_sampler(spy), storage=storage, study_name="s")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert add_history(study, path, distributions=DISTS) == 5
        study.optimize(objective, n_trials=2)
    trials = study.trials
    assert [t.state for t in trials[:5]] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED, TrialState.COMPLETE]
    assert trials[0].params == {"lr": 0.001, "bs": 128}
    assert trials[0].user_attrs["fidelity"] == CHEAP
    assert trials[0].user_attrs["cost"] == 1.5
    assert trials[0].user_attrs["autollm:history_id"] == "a"
    assert trials[3].intermediate_values == {0: 2.7}
    assert [t.user_attrs[IS_TARGET_ATTR] for t in trials] == [False, False, False, False, True, True, True]
    # the sampler read them as given: two cheap cells and the (near-)target cell
    assert cells(spy.histories[0]) == {tuple(sorted(CHEAP.items())), (("n_params", 4.8e8), ("n_tokens", 8e9)), tuple(sorted(TARGET.items()))}
    assert not [m for m in records(caplog) if "no 'fidelity' user attribute" in m]
    # a study loaded without the sampler still tells target runs apart, by the attribute
    loaded = optuna.load_study(study_name="s", storage=storage)
    assert [t.number for t in target_trials(loaded)] == [4, 5, 6]
    assert target_best_trial(loaded).number == min((4, 5, 6), key=lambda n: (loaded.trials[n].value, n))


def test_add_history_jsonl_with_a_mixture_and_a_space(tmp_path: Path) -> None:
    space = SearchSpace.from_dict({"params": {
        "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "mix": {"type": "simplex", "components": ["web", "code"]},
    }})
    path = tmp_path / "runs.jsonl"
    path.write_text(
        json.dumps({"params": {"lr": 1e-3, "mix": {"web": 0.7, "code": 0.3}}, "fidelity": {"n_params": 1.2e8}, "value": 3.0}) + "\n"
        + json.dumps({"params": {"lr": 3e-3, "mix": {"web": 0.4, "code": 0.6}}, "value": 2.5}) + "\n"
    )
    study = optuna.create_study(sampler=make_sampler(mixtures={"mix": ["web", "code"]}))
    assert add_history(study, path, distributions=space) == 2
    t0, t1 = study.trials
    assert t0.params == {"lr": 1e-3, "mix.web": 0.7, "mix.code": 0.3}
    assert t0.distributions["mix.web"] == FloatDistribution(0.0, 1.0)
    assert t0.user_attrs["fidelity"] == {"n_params": 1.2e8, "n_tokens": TARGET["n_tokens"]}  # the axis left out is the target's
    assert t1.user_attrs["fidelity"] == TARGET and t1.user_attrs[IS_TARGET_ATTR] is True


def test_add_history_takes_distributions_from_the_study_and_skips_values_outside(caplog) -> None:
    study = optuna.create_study(sampler=make_sampler())
    study.add_trial(cheap_trial(1e-3, 128, {"fidelity": CHEAP}))
    runs = History(trials=[
        Trial(id=0, params={"lr": 2e-3, "bs": 64}, fidelity=CHEAP, value=3.0),
        Trial(id=1, params={"lr": 0.5, "bs": 64}, fidelity=CHEAP, value=3.0),   # lr above 0.1
        Trial(id=2, params={"lr": 2e-3, "bs": 48}, fidelity=CHEAP, value=3.0),  # not a choice
        Trial(id=3, params={"lr": 2e-3, "bs": 64}, fidelity=CHEAP, state="running"),
    ])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert add_history(study, runs) == 1
    assert len(study.trials) == 2 and study.trials[1].params == {"lr": 2e-3, "bs": 64}
    msgs = records(caplog)
    assert any(m.startswith("add_history: 2 run(s) skipped") and "lr=0.5" in m for m in msgs)
    assert any("1 running run(s)" in m for m in msgs)


def test_add_history_warns_when_runs_have_no_fidelity(tmp_path: Path, caplog) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("lr,bs,value\n0.001,128,3.1\n0.003,64,3.0\n")
    study = optuna.create_study(sampler=make_sampler())
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert add_history(study, path, distributions=DISTS) == 2
    msgs = records(caplog)
    assert len(msgs) == 1 and msgs[0].startswith(f"add_history: 2 run(s) in {path} have no fidelity")
    assert all(t.user_attrs[IS_TARGET_ATTR] for t in study.trials)


def test_add_history_errors_are_clear(tmp_path: Path) -> None:
    study = optuna.create_study(sampler=make_sampler())
    path = tmp_path / "runs.csv"
    path.write_text("id,lr,bs,run_name,fidelity:n_params,value\nr7,0.001,128,alpha,1.2e8,3.1\n")
    with pytest.raises(ValueError, match=r"runs\.csv, line 2: no distribution is known for parameter\(s\) 'run_name'"):
        add_history(study, path, distributions=DISTS)
    path.write_text("lr,bs,fidelity:seq_len,value\n0.001,128,512,3.1\n")
    with pytest.raises(ValueError, match="fidelity axis 'seq_len' is not one of the sampler's axes"):
        add_history(study, path, distributions=DISTS)
    path.write_text("lr,bs,fidelity:n_params,value\n0.001,128,lots,3.1\n")
    with pytest.raises((InvalidHistoryError, InvalidTrialError), match=r"runs\.csv, line 2, field 'fidelity\.n_params'"):
        add_history(study, path, distributions=DISTS)
    with pytest.raises(InvalidHistoryError, match=r"missing\.csv"):
        add_history(study, tmp_path / "missing.csv", distributions=DISTS)
    with pytest.raises(TypeError, match="needs the AutoLLMSampler"):
        add_history(optuna.create_study(), path, distributions=DISTS)
    assert study.trials == []


# ---------------------------------------------------------------------- target-only views
def test_target_best_trial_ignores_cheaper_runs() -> None:
    study = optuna.create_study(sampler=make_sampler())
    for lr in (1e-3, 3e-3, 1e-2):
        study.add_trial(cheap_trial(lr, 128, {"fidelity": CHEAP}, scale=0.5))  # cheap runs reach lower losses
    with pytest.raises(ValueError, match="no target trial has completed yet"):
        target_best_trial(study)
    study.optimize(objective, n_trials=3)
    assert study.best_trial.number < 3
    best = target_best_trial(study)
    assert best.number >= 3
    assert best.value == min(t.value for t in study.trials[3:])
    assert [t.number for t in target_trials(study)] == [3, 4, 5]
    assert len(target_trials(study, states=None)) == 3
