"""Issue 12, "Mistakes users make": the ones an audit found still unclear, each with its clear error.

``History.from_jsonl``/``from_json`` given a path, a Ray ``space=`` that is neither a SearchSpace form nor
holds a Tune domain, space errors with pydantic's wording, the near-target warning showing the same rounded
numbers twice, and one NaN rule in every frontend.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from autollm_sampler.cli import main
from autollm_sampler.exceptions import InvalidSpaceError, InvalidTrialError
from autollm_sampler.history import History
from autollm_sampler.integrations.asktell import AskTell
from autollm_sampler.integrations.optuna import AutoLLMSampler, add_history
from autollm_sampler.space import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)

LINE = '{"params": {"lr": 0.001}, "fidelity": {"n": 1e8}, "value": 3.1}\n'
SPACE = {"params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}}


# ---------------------------------------------------------------------- History.from_jsonl / from_json
@pytest.mark.parametrize("method", ["from_jsonl", "from_json"])
def test_a_path_given_to_the_text_parsers_names_history_load(method: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("cheap_runs.jsonl").write_text(LINE)
    parse = getattr(History, method)
    # was: "<history>, line 1: not valid JSON (Expecting value)"
    with pytest.raises(TypeError, match=r"parses text, not a file.*History\.load\('cheap_runs\.jsonl'\)"):
        parse("cheap_runs.jsonl")
    with pytest.raises(TypeError, match=r"not a file; to read the file 'cheap_runs\.jsonl' use History\.load"):
        parse(Path("cheap_runs.jsonl"))
    with pytest.raises(TypeError, match="looks like a file path"):
        parse("runs_not_written_yet.json")
    assert len(History.load("cheap_runs.jsonl")) == 1


def test_the_text_parsers_still_read_text() -> None:
    assert len(History.from_jsonl(LINE)) == 1 and len(History.from_jsonl(LINE.strip())) == 1
    assert len(History.from_jsonl("")) == 0
    assert len(History.from_json(History.from_jsonl(LINE).to_json())) == 1


# ---------------------------------------------------------------------- Ray space=
@pytest.mark.parametrize(
    ("space", "match"),
    [
        # was: "invalid search space: params: Field required ...; lr: Extra inputs are not permitted"
        ("grid", r"tune\.grid_search is not supported by AutoLLMSearcher \(parameters \['lr'\]\); use tune\.choice"),
        ({"lr": {"type": "float", "low": 1e-4, "high": 1e-2}}, r"parameter definitions \['lr'\] at the top level.*under 'params'"),
        ({"lr": 0.001}, r"space= has no parameter to search .*tune\.loguniform"),
    ],
)
def test_a_ray_space_that_is_not_searchable_says_why(space: object, match: str) -> None:
    from ray import tune

    from autollm_sampler.integrations.ray import AutoLLMSearcher

    if space == "grid":
        space = {"lr": tune.grid_search([1e-3, 1e-2])}
    with pytest.raises(InvalidSpaceError, match=match):
        AutoLLMSearcher(space=space, metric="loss", mode="min", agent="classical")  # type: ignore[arg-type]
    ok = AutoLLMSearcher(space={"opt": {"lr": tune.loguniform(1e-4, 1e-2)}}, metric="loss", mode="min", agent="classical")
    assert 1e-4 <= ok.suggest("t1")["opt"]["lr"] <= 1e-2  # type: ignore[index]


# ---------------------------------------------------------------------- space errors
def test_space_errors_use_the_users_words_not_pydantics() -> None:
    with pytest.raises(InvalidSpaceError) as err:
        SearchSpace.from_dict({"params": {"peak": {"type": "float", "low": 1e-4, "high": 1e-2, "role": "learning_rate"}}})
    msg = str(err.value)
    assert msg.startswith("invalid search space: params.peak.role: unknown role 'learning_rate'")
    assert "Value error" not in msg and ".float." not in msg and "did you mean 'lr'?" in msg
    with pytest.raises(InvalidSpaceError, match=r"^invalid search space: params\.lr: low=0\.01 is greater than high=0\.0001; swap"):
        SearchSpace.from_dict({"params": {"lr": {"type": "float", "low": 1e-2, "high": 1e-4}}})
    with pytest.raises(InvalidSpaceError, match=r"parameter definitions \['lr'\] are at the top level; put them under 'params'"):
        SearchSpace.from_dict({"lr": {"type": "float", "low": 1e-4, "high": 1e-2}})


def test_the_cli_names_an_unknown_role_without_pydantics_prefix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  peak: {type: float, low: 1.0e-4, high: 1.0e-2, log: true, role: learning_rate}\n")
    assert main(["suggest", "--space", str(space), "--agent", "classical"]) == 2
    err = capsys.readouterr().err
    assert "line 2, field 'params.peak.role': unknown role 'learning_rate'" in err and "Value error" not in err


# ---------------------------------------------------------------------- near-target warning
def test_the_near_target_warning_shows_the_numbers_that_differ(caplog: pytest.LogCaptureFixture) -> None:
    target = {"n_params": 1.07e9, "n_tokens": 2.6e10}
    sampler = AutoLLMSampler(fidelity=("n_params", "n_tokens"), target=target, agent="classical", seed=0)
    study = optuna.create_study(sampler=sampler)
    study.add_trial(create_trial(params={"lr": 1e-3}, distributions={"lr": FloatDistribution(1e-4, 1e-2, log=True)},
                                 value=2.0, user_attrs={"fidelity": {"n_params": 1.07e9, "n_tokens": 25_999_966_208}}))
    with caplog.at_level(logging.WARNING, logger="autollm_sampler.integrations.optuna"):
        assert sampler.is_target_trial(study.trials[0])
    (msg,) = [r.getMessage() for r in caplog.records if "within 1%" in r.getMessage()]
    # was: "fidelity n_params=1.07e+09, n_tokens=2.6e+10 is within 1% of the target n_params=1.07e+09, n_tokens=2.6e+10"
    assert "fidelity n_params=1070000000, n_tokens=25999966208 is within 1% of the target n_params=1070000000, " \
           "n_tokens=26000000000" in msg


# ---------------------------------------------------------------------- one NaN rule, every frontend
def test_a_nan_value_is_a_failed_run_in_every_frontend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from autollm_sampler.integrations.ray import AutoLLMSearcher

    jsonl = tmp_path / "runs.jsonl"
    jsonl.write_text('{"params": {"lr": 0.001}, "fidelity": {"n": 1e8}, "value": NaN}\n'
                     '{"params": {"lr": 0.002}, "fidelity": {"n": 1e8}, "value": 3.0}\n')
    csv = tmp_path / "runs.csv"
    csv.write_text("lr,fidelity:n,value\n0.001,1e8,nan\n0.002,1e8,3.0\n")
    expected = [("failed", None), ("complete", 3.0)]
    for path in (jsonl, csv):
        assert [(t.state, t.value) for t in History.load(path).trials] == expected
        at = AskTell(SPACE, target={"n": 1e9}, history=path, agent="classical")
        assert [(t.state, t.value) for t in at.history.trials] == expected
        s = AutoLLMSearcher(space=SPACE, fidelity=("n",), target={"n": 1e9}, history=str(path), metric="loss",
                            mode="min", agent="classical")
        assert [(t.state, t.value) for t in s._history.trials] == expected
        study = optuna.create_study(sampler=AutoLLMSampler(fidelity=("n",), target={"n": 1e9}, agent="classical"))
        add_history(study, path, distributions={"lr": FloatDistribution(1e-4, 1e-2, log=True)})
        assert [(t.state, t.value) for t in study.trials] == [(TrialState.FAIL, None), (TrialState.COMPLETE, 3.0)]
        space = tmp_path / "space.json"
        space.write_text(json.dumps(SPACE))
        assert main(["explain", "--space", str(space), "--history", str(path), "--target", "n=1e9", "--agent", "classical"]) == 0
        assert "n=1e+08: 2 runs (1 complete, 1 failed); best 3" in capsys.readouterr().out
    at = AskTell(SPACE, target={"n": 1e9}, agent="classical")
    at.tell(at.ask().id, math.nan)
    assert at.history.trials[-1].state == "failed"


def test_suggest_help_documents_mixture_columns_and_the_nan_rule(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["suggest", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "a mixture one column per component, param:NAME.COMPONENT" in out
    assert "A NaN or infinite value records the run as failed" in out


def test_asktell_tell_takes_the_suggestion_itself(caplog: pytest.LogCaptureFixture) -> None:
    """``at.tell(s, value)`` with what ask() returned (as ``study.tell(trial, value)``) used to say "no suggestion
    with id Suggestion(...)"; a NaN told this way is a failed run too."""
    from autollm_sampler.space import FloatParam

    at = AskTell(space=SearchSpace(params={"lr": FloatParam(low=1e-4, high=1e-1, log=True)}), agent="classical", seed=0)
    first, second = at.ask(), at.ask()
    assert at.tell(first, 2.5).value == 2.5
    with caplog.at_level("WARNING"):
        assert at.tell(second, float("nan")).state == "failed"
    assert [(t.state, t.value) for t in at.history.trials] == [("complete", 2.5), ("failed", None)]
    with pytest.raises(InvalidTrialError, match="already told"):
        at.tell(first, 1.0)
