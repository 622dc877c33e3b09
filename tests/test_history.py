"""Trials and histories: JSON / JSONL / CSV round trips and clear errors on bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autollm_sampler.exceptions import InvalidHistoryError, InvalidTrialError
from autollm_sampler.history import History, Trial
from autollm_sampler.space import FloatParam, SearchSpace

names = st.from_regex(r"[a-z][a-z0-9_]{0,9}", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
param_values = st.one_of(finite, st.integers(-(2**40), 2**40), st.booleans(), st.text(max_size=8),
                         st.dictionaries(names, st.floats(0, 1), min_size=2, max_size=4))
AXES = ("n_params", "n_tokens")


@st.composite
def trials(draw: Any, tid: int) -> Trial:
    state = draw(st.sampled_from(["complete", "pruned", "failed", "running"]))
    value = draw(finite) if state == "complete" else draw(st.one_of(st.none(), finite))
    return Trial(
        id=draw(st.sampled_from([tid, f"run-{tid}"])),
        params=draw(st.dictionaries(names, param_values, max_size=5)),
        fidelity={a: draw(st.floats(min_value=1.0, max_value=1e12)) for a in AXES},
        value=value,
        state=state,
        cost=draw(st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e22))),
        attrs=draw(st.dictionaries(names, st.one_of(st.integers(), st.text(max_size=5)), max_size=2)),
    )


@st.composite
def histories(draw: Any) -> History:
    n = draw(st.integers(0, 8))
    return History(trials=[draw(trials(i)) for i in range(n)], fidelity_axes=AXES)


@settings(max_examples=25, deadline=None)
@given(h=histories())
def test_json_round_trip(h: History) -> None:
    again = History.from_json(h.to_json())
    assert again == h
    assert again.fidelity_axes == AXES


@settings(max_examples=25, deadline=None)
@given(h=histories())
def test_jsonl_round_trip(h: History, tmp_path_factory: pytest.TempPathFactory) -> None:
    again = History.from_jsonl(h.to_jsonl())
    assert again.trials == h.trials
    path = tmp_path_factory.mktemp("h") / "runs.jsonl"
    h.save(path)
    assert History.load(path).trials == h.trials


def test_csv_round_trip_of_a_simple_sweep(tmp_path: Path) -> None:
    text = "id,param:lr,param:bs,fidelity:n_params,value,state,cost\n0,0.001,128,1e8,2.5,complete,3\n1,0.01,256,1e8,,failed,\n"
    path = tmp_path / "sweep.csv"
    path.write_text(text)
    h = History.load(path)
    assert [t.params for t in h] == [{"lr": 0.001, "bs": 128}, {"lr": 0.01, "bs": 256}]
    assert h.trials[0].value == 2.5 and h.trials[1].state == "failed" and h.trials[1].value is None
    assert h.fidelity_axes == ("n_params",)


# ------------------------------------------------------------------------------------ bad input
@settings(max_examples=30, deadline=None)
@given(bad=st.sampled_from([math.nan, math.inf, -math.inf]))
def test_non_finite_numbers_are_refused_naming_the_field(bad: float) -> None:
    # a non-finite objective value is a failed run (one rule in every frontend); anywhere else it is refused
    t = Trial.parse({"id": 0, "params": {}, "value": bad})
    assert t.state == "failed" and t.value is None
    with pytest.raises(InvalidTrialError, match="params.lr"):
        Trial.parse({"id": 0, "params": {"lr": bad}, "value": 1.0})
    with pytest.raises(InvalidTrialError, match="params.mix.web"):
        Trial.parse({"id": 0, "params": {"mix": {"web": bad, "code": 0.5}}, "value": 1.0})
    with pytest.raises(InvalidTrialError, match="field 'fidelity.n_params'"):
        Trial.parse({"id": 0, "params": {}, "fidelity": {"n_params": bad}, "value": 1.0})
    with pytest.raises(InvalidTrialError, match="cost"):
        Trial.parse({"id": 0, "params": {}, "value": 1.0, "cost": bad})


def test_non_finite_value_of_a_failed_trial_is_dropped() -> None:
    t = Trial.parse({"id": 0, "params": {}, "value": math.inf, "state": "failed"})
    assert t.value is None and not t.is_complete


def test_complete_trial_needs_a_value_and_a_known_state() -> None:
    with pytest.raises(InvalidTrialError, match="needs a value"):
        Trial.parse({"id": 0, "params": {}})
    with pytest.raises(InvalidTrialError, match="state"):
        Trial.parse({"id": 0, "params": {}, "value": 1.0, "state": "done"})


def test_nan_in_jsonl_names_the_line() -> None:
    text = '{"params": {"lr": 0.001}, "value": 1.0}\n{"params": {"lr": NaN}, "value": 1.0}\n'
    with pytest.raises(InvalidTrialError, match=r"line 2.*params\.lr"):
        History.from_jsonl(text, source="runs.jsonl")


@settings(max_examples=30, deadline=None)
@given(tid=st.one_of(st.integers(0, 10**6), names))
def test_duplicate_trial_id_is_named(tid: int | str) -> None:
    h = History()
    h.add(Trial(id=tid, params={}, value=1.0))
    with pytest.raises(InvalidHistoryError, match=f"duplicate trial id {tid!r}"):
        h.add(Trial(id=tid, params={}, value=2.0))
    with pytest.raises(InvalidHistoryError, match="duplicate trial id"):
        History.from_json(json.dumps({"trials": [{"id": tid, "params": {}, "value": 1.0}] * 2}))


def test_duplicate_ids_compare_as_text_and_jsonl_names_the_line() -> None:
    h = History()
    h.add(Trial(id=7, params={}, value=1.0))
    with pytest.raises(InvalidHistoryError, match="duplicate trial id '7'"):
        h.add(Trial(id="7", params={}, value=1.0))
    text = '{"id": 1, "params": {}, "value": 1.0}\n{"id": 1, "params": {}, "value": 2.0}\n'
    with pytest.raises(InvalidHistoryError, match=r"runs.jsonl, line 2: duplicate trial id 1"):
        History.from_jsonl(text, source="runs.jsonl")


@settings(max_examples=30, deadline=None)
@given(axes=st.lists(names, min_size=2, max_size=4, unique=True), drop=st.integers(0, 3))
def test_missing_fidelity_axis_is_named(axes: list[str], drop: int) -> None:
    missing = axes[drop % len(axes)]
    h = History(fidelity_axes=tuple(axes))
    fid = {a: 1.0 for a in axes if a != missing}
    with pytest.raises(InvalidHistoryError) as err:
        h.add(Trial(id=0, params={}, fidelity=fid, value=1.0))
    assert f"missing [{missing!r}]" in str(err.value)


def test_unexpected_fidelity_axis_is_named() -> None:
    h = History(fidelity_axes=("n_params",))
    with pytest.raises(InvalidHistoryError, match=r"unexpected \['n_tokens'\]"):
        h.add(Trial(id=0, params={}, fidelity={"n_params": 1e8, "n_tokens": 1e9}, value=1.0))


def test_validate_against_names_trial_and_parameter() -> None:
    space = SearchSpace(params={"lr": FloatParam(low=1e-5, high=1e-1, log=True)})
    h = History(trials=[Trial(id="a", params={"lr": 1e-3}, value=1.0), Trial(id="b", params={"lr": 0.5}, value=1.0)])
    with pytest.raises(InvalidTrialError, match=r"trial 'b': parameter 'lr': value 0.5 is outside"):
        h.validate_against(space)
    h2 = History(trials=[Trial(id=0, params={"lr": 1e-3, "wd": 0.1}, value=1.0)])
    with pytest.raises(InvalidTrialError, match=r"unknown parameter\(s\) \['wd'\]"):
        h2.validate_against(space)
    assert len(h2.validate_against(space, ignore_unknown=True)) == 1


def test_bad_files_name_the_file_and_line(tmp_path: Path) -> None:
    with pytest.raises(InvalidHistoryError, match="cannot read the history file"):
        History.load(tmp_path / "nope.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"params": {}, "value": 1.0}\nnot json\n')
    with pytest.raises(InvalidHistoryError, match=r"bad.jsonl, line 2: not valid JSON"):
        History.load(bad)
    csv_path = tmp_path / "bad.csv"
    csv_path.write_text("lr,value\n0.1,abc\n")
    with pytest.raises(InvalidTrialError, match=r"bad.csv, line 2, field 'value': .* \(got 'abc'\)"):
        History.load(csv_path)
    with pytest.raises(InvalidHistoryError, match="'trials' list"):
        History.from_json('{"runs": []}')


def test_id_index_survives_copies_and_direct_list_edits() -> None:
    h = History(trials=[Trial(id=i, params={}, value=float(i)) for i in range(3)])
    assert h.next_id() == 3
    h.trials.append(Trial(id=10, params={}, value=1.0))  # behind the history's back
    assert h.next_id() == 11
    with pytest.raises(InvalidHistoryError):
        h.add(Trial(id=10, params={}, value=1.0))
    copy = h.model_copy(update={"trials": h.trials[:1]})
    copy.add(Trial(id=1, params={}, value=1.0))  # id 1 is free in the copy
    assert copy.next_id() == 2 and h.next_id() == 11
    deep = h.model_copy(deep=True)
    deep.add(Trial(id=11, params={}, value=1.0))
    assert len(deep) == 5 and len(h) == 4


def test_large_history_builds_in_linear_time() -> None:
    # 20,000 trials: quadratic duplicate checks would take minutes; this finishes in about a second
    h = History(fidelity_axes=("n",))
    for i in range(20_000):
        h.add(Trial(id=h.next_id(), params={"x": i}, fidelity={"n": 1.0}, value=1.0))
    assert len(h) == 20_000 and h.next_id() == 20_000
