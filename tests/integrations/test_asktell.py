"""AskTell: ask/tell loop, pending suggestions, history, JSONL persistence, cost-aware mode."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from autollm_sampler.exceptions import InvalidHistoryError, InvalidTrialError
from autollm_sampler.history import History
from autollm_sampler.integrations.asktell import AskTell

SPACE = {
    "direction": "minimize",
    "params": {
        "lr": {"type": "categorical", "choices": [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]},
        "bs": {"type": "categorical", "choices": [32, 64, 128]},
    },
}
TARGET = {"n_params": 1e9}


def loss(lr: float, bs: int) -> float:
    return 2.0 + (math.log10(lr) + 2.5) ** 2 + 0.05 * abs(math.log2(bs / 64))


def with_cheap_runs(**kw: object) -> AskTell:
    at = AskTell(SPACE, target=TARGET, agent="classical", seed=0, **kw)  # type: ignore[arg-type]
    for lr in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2):
        for bs in (32, 64, 128):
            at.add({"lr": lr, "bs": bs}, 1.3 * loss(lr, bs), fidelity={"n_params": 1e8})
    return at


def test_optuna_and_ray_are_not_imported() -> None:
    with_cheap_runs().ask()
    assert "optuna.samplers" not in sys.modules or "autollm_sampler.integrations.optuna" in sys.modules
    import subprocess

    code = ("import sys; from autollm_sampler.integrations.asktell import AskTell; "
            "AskTell({'params': {'x': {'type': 'float', 'low': 0, 'high': 1}}}, agent='classical').ask(); "
            "print(sorted(m for m in ('optuna', 'ray', 'autollm_sampler.gym') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_ask_tell_loop_never_repeats_and_tracks_pending() -> None:
    at = with_cheap_runs()
    first = at.ask()
    assert first.params == {"lr": 3e-3, "bs": 64} and first.fidelity == TARGET
    assert first.rationale.startswith("Transferred") and first.predicted_value is None  # one cheaper cell: no trend
    batch = at.ask_batch(3)
    assert len({(s.params["lr"], s.params["bs"]) for s in [first, *batch]}) == 4
    assert [t.id for t in at.pending] == [first.id] + [s.id for s in batch]
    at.tell(first.id, 2.3)
    at.tell(batch[0].id, float("nan"))  # recorded as failed
    at.tell(batch[1].id, state="pruned", value=2.9)
    with pytest.raises(InvalidTrialError, match="already told"):
        at.tell(first.id, 2.0)
    with pytest.raises(InvalidTrialError, match="no suggestion with id"):
        at.tell(999, 2.0)
    with pytest.raises(InvalidTrialError, match="needs a numeric value"):
        at.tell(batch[2].id)
    states = {t.id: t.state for t in at.history.trials}
    assert states[first.id] == "complete" and states[batch[0].id] == "failed" and states[batch[1].id] == "pruned"
    assert at.best().value == 2.3  # type: ignore[union-attr]
    assert at.recommend().params == first.params
    text = at.explain()
    assert "[target] n_params=1e+09" in text and "why:" in text


def test_target_trials_must_fit_the_space_cheap_ones_may_differ() -> None:
    at = AskTell(SPACE, target=TARGET, agent="classical")
    at.add({"lr": 5e-3, "bs": 64}, 2.0, fidelity={"n_params": 1e8})  # off the target grid, fine at low fidelity
    with pytest.raises(InvalidTrialError, match="not one of the choices"):
        at.add({"lr": 5e-3, "bs": 64}, 2.0)
    with pytest.raises(InvalidTrialError, match="unknown parameter"):
        at.add({"lr": 1e-3, "bs": 64, "wd": 0.1}, 2.0, fidelity={"n_params": 1e8})
    with pytest.raises(InvalidTrialError, match="not one of the target's axes"):
        at.add({"lr": 1e-3, "bs": 64}, 2.0, fidelity={"n_tokens": 1e8})


def test_save_and_load_round_trip_keeps_pending(tmp_path: Path) -> None:
    at = with_cheap_runs()
    a = at.ask()
    at.tell(a.id, 2.3)
    b = at.ask()
    path = tmp_path / "sweep.jsonl"
    at.save(path)
    n_saved = len(at.history)
    back = AskTell.load(path, SPACE, target=TARGET, agent="classical", seed=0)
    assert [t.model_dump() for t in back.history.trials] == [t.model_dump() for t in at.history.trials]
    assert [t.id for t in back.pending] == [b.id]
    assert back.ask().params == at.ask().params  # same seed, same state: same next suggestion
    back.tell(b.id, 2.4)
    # the saved file is also a valid CLI history
    assert len(History.load(path)) == n_saved


def test_history_from_a_file_path(tmp_path: Path) -> None:
    p = tmp_path / "h.jsonl"
    p.write_text('{"params": {"lr": 0.001, "bs": 64}, "fidelity": {"n_params": 1e8}, "value": 3.0}\n')
    at = AskTell(SPACE, target=TARGET, history=p, agent="classical", seed=0)
    assert at.ask().params == {"lr": 1e-3, "bs": 64}


def test_cost_aware_ask_chooses_the_fidelity_until_the_budget_is_spent() -> None:
    levels = [{"n_params": 1e8, "cost": 1.0}, {"n_params": 1e9, "cost": 5.0}]
    at = AskTell(SPACE, target=TARGET, agent="classical", seed=0, fidelity_levels=levels)
    fids = []
    while True:
        try:
            s = at.ask()
        except InvalidHistoryError as exc:
            assert "budget" in str(exc) and "left unspent" in str(exc)  # says why
            break
        fids.append(s.fidelity["n_params"])
        at.tell(s.id, loss(s.params["lr"], s.params["bs"]))
    # three target runs (60% of 25, whole runs) are kept; the one cheap level may spend the rest (10 runs), unless
    # it stagnates first; nothing cheap runs after a target run
    n_cheap = fids.index(1e9)
    assert 8 <= n_cheap <= 10 and fids == [1e8] * n_cheap + [1e9] * 3
    assert at.budget_left() == pytest.approx(10.0 - n_cheap)
    why = str(at.history.trials[n_cheap].attrs["rationale"])
    assert f"stagnated after {n_cheap} runs" in why or "used its share" in why


def test_space_from_a_yaml_file(tmp_path: Path) -> None:
    import yaml

    p = tmp_path / "space.yaml"
    p.write_text(yaml.safe_dump(SPACE, sort_keys=False))
    at = AskTell(p, target=TARGET, agent="classical", seed=0)
    assert at.space.names == ["lr", "bs"]
