"""Issue 12, "Explanations that hold up": ``explain`` behaves the same in every frontend (returns the text,
prints nothing, shows readably once at a prompt), and ``recommend`` returns what the docs say."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import create_trial

from autollm_sampler.agent import Proposal
from autollm_sampler.integrations import Explanation
from autollm_sampler.integrations.asktell import AskTell, Suggestion
from autollm_sampler.integrations.optuna import AutoLLMSampler, target_best_trial

optuna.logging.set_verbosity(optuna.logging.WARNING)

TARGET = {"n_params": 1e9}
CHEAP = {"n_params": 1e8}
LRS = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
DISTS = {"lr": CategoricalDistribution(LRS)}
SPACE = {"params": {"lr": {"type": "categorical", "choices": LRS}}}


def loss(lr: float, scale: float = 1.0) -> float:
    return scale * (2.0 + (math.log10(lr) + 2.5) ** 2)


def objective(trial: optuna.Trial) -> float:
    return loss(float(trial.suggest_categorical("lr", LRS)))


def study_with_runs(n_target: int) -> tuple[AutoLLMSampler, optuna.Study]:
    sampler = AutoLLMSampler(fidelity=("n_params",), target=TARGET, agent="classical", seed=0)
    study = optuna.create_study(sampler=sampler)
    for lr in LRS:
        study.add_trial(create_trial(params={"lr": lr}, distributions=DISTS, value=loss(lr, 1.3),
                                     user_attrs={"fidelity": CHEAP}))
    study.optimize(objective, n_trials=n_target)
    return sampler, study


def test_sampler_explain_returns_the_text_and_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    sampler, study = study_with_runs(2)
    text = sampler.explain(study)
    assert capsys.readouterr() == ("", "")  # a library prints nothing (it printed by default before)
    assert isinstance(text, Explanation) and isinstance(text, str)
    assert text.startswith("AutoLLMSampler (agent: classical) for target n_params=1e+09\n")
    assert "Trial 5 [n_params=1e+09]: lr=0.003 ->" in text
    buf = io.StringIO()
    assert sampler.explain(study, file=buf) == text == buf.getvalue()  # file= still writes it


def test_every_frontend_returns_an_explanation_and_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    from autollm_sampler.integrations.ray import AutoLLMSearcher

    at = AskTell(SPACE, target=TARGET, agent="classical", seed=0,
                 history=[{"params": {"lr": lr}, "fidelity": CHEAP, "value": loss(lr)} for lr in LRS])
    searcher = AutoLLMSearcher(space=SPACE, fidelity=("n_params",), target=TARGET, metric="loss", mode="min",
                               agent="classical", seed=0,
                               history=[{"params": {"lr": lr}, "fidelity": CHEAP, "value": loss(lr)} for lr in LRS])
    empty = AutoLLMSearcher(metric="loss", mode="min", agent="classical")
    texts = [at.explain(), searcher.explain(), empty.explain()]
    assert capsys.readouterr() == ("", "")
    assert all(isinstance(t, Explanation) for t in texts)
    assert "Proposals for n_params=1e+09:" in texts[0] and "Proposals for n_params=1e+09:" in texts[1]
    assert texts[2] == "AutoLLMSearcher has no search space yet."


def test_an_explanation_shows_as_its_text_at_a_prompt_once() -> None:
    text = Explanation("History: 3 trials\n  why: because")
    assert repr(text) == "History: 3 trials\n  why: because"  # not 'History: 3 trials\\n  why: ...'
    assert text + "!" == "History: 3 trials\n  why: because!" and type(text + "!") is str

    class Printer:  # IPython's pretty printer, as Jupyter calls it
        def __init__(self) -> None:
            self.out: list[str] = []

        def text(self, s: str) -> None:
            self.out.append(s)

    p = Printer()
    text._repr_pretty_(p, False)
    assert p.out == [str(text)]
    # the interactive prompt: the text once (before, explain printed it and the prompt echoed its repr)
    here = str(Path(__file__).parent)
    code = f"import sys; sys.path.insert(0, {here!r}); import test_issue12_explain as m\ns, st = m.study_with_runs(1)\ns.explain(st)\n"
    out = subprocess.run([sys.executable, "-i", "-q"], input=code, capture_output=True, text=True, check=True)
    shown = out.stdout + out.stderr
    assert shown.count("AutoLLMSampler (agent: classical) for target") == 1 and "\\n" not in shown


def test_sampler_explain_shows_a_shared_sentence_once() -> None:
    sampler, study = study_with_runs(3)
    text = sampler.explain(study)
    shared = "Transferred from the nearest cheaper cell"
    assert text.count(shared) == 1
    assert text.count("sentence as for trial 5)") == 1 and text.count("sentences as for trial 5)") == 1  # trials 6, 7
    assert "no prediction for the target (classical)" in text  # as AskTell and the CLI say it


def test_sampler_recommend_returns_a_proposal_naming_the_best_target_trial() -> None:
    sampler, study = study_with_runs(0)
    rec = sampler.recommend(study)
    assert isinstance(rec, Proposal) and rec.source == "classical" and "trial_number" not in rec.extras
    study.optimize(objective, n_trials=3)
    rec = sampler.recommend(study)
    best = target_best_trial(study)
    assert isinstance(rec, Proposal) and rec.source == "observed"
    assert rec.extras == {"trial_number": best.number} and study.trials[best.number].params == rec.params
    assert rec.predicted_value == best.value and rec.predicted_std == 0.0


def test_asktell_history_dicts_may_leave_out_the_id() -> None:
    # a list of dicts without "id" (as a JSONL line may be) failed with "field 'id': an id must be ..."
    at = AskTell(SPACE, target=TARGET, agent="classical", history=[{"params": {"lr": 1e-3}, "fidelity": CHEAP, "value": 2.0},
                                                                    {"params": {"lr": 3e-3}, "fidelity": CHEAP, "value": 1.9}])
    at.add_history([{"params": {"lr": 1e-2}, "fidelity": CHEAP, "value": 2.2}])  # index 0 is taken: next free id
    assert [t.id for t in at.history.trials] == [0, 1, 2]
    with pytest.raises(TypeError, match=r"history\[0\] is a int; each trial must be a dict or a Trial"):
        at.add_history([3])  # type: ignore[list-item]
    # a dict or a number as the whole history: what is accepted (was "'int' object is not iterable", or
    # "history[0]: a trial must be an object, got 'params'" for a single trial dict), as the searcher says
    for bad in ({"params": {"lr": 1e-3}, "value": 2.0}, 3):
        with pytest.raises(TypeError, match=r"history= must be a History, a path to a \.jsonl/\.json/\.csv history file"):
            AskTell(SPACE, target=TARGET, agent="classical", history=bad)  # type: ignore[arg-type]
    assert len(AskTell(SPACE, target=TARGET, agent="classical", history=at.history).history) == 3


def test_searcher_and_asktell_recommend_name_their_trial() -> None:
    from autollm_sampler.integrations.ray import AutoLLMSearcher

    searcher = AutoLLMSearcher(space=SPACE, fidelity=("n_params",), target=TARGET, metric="loss", mode="min",
                               agent="classical", seed=0)
    searcher.suggest("t1")
    searcher.on_trial_complete("t1", {"loss": 2.5})
    rec = searcher.recommend()
    assert isinstance(rec, Proposal) and rec.source == "observed" and rec.extras == {"trial_id": "t1"}
    with pytest.raises(RuntimeError, match="pass space= to the searcher, or param_space to tune.Tuner"):
        AutoLLMSearcher(metric="loss", mode="min", agent="classical").recommend()
    at = AskTell(SPACE, target=TARGET, agent="classical", seed=0)
    at.add({"lr": 3e-3}, 2.4)
    rec2 = at.recommend()
    assert isinstance(rec2, Suggestion) and rec2.source == "observed" and rec2.id == at.best().id  # type: ignore[union-attr]


def test_explanation_is_public() -> None:
    import autollm_sampler.integrations as integrations
    from autollm_sampler.integrations import _explain

    assert "Explanation" in integrations.__all__ and integrations.Explanation is _explain.Explanation
    assert "Explanation" in (integrations.__doc__ or "")
    # each frontend's explain is annotated with the public class
    from autollm_sampler.integrations.asktell import AskTell
    from autollm_sampler.integrations.optuna import AutoLLMSampler

    for method in (AskTell.explain, AutoLLMSampler.explain):
        assert method.__annotations__["return"] in ("Explanation", Explanation)
        assert "autollm_sampler.integrations.Explanation" in (method.__doc__ or "")
