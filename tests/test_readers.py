"""One JSONL reading and one CSV cell reading behind every frontend.

* A JSONL file is read like its text: whatever ``History.from_jsonl`` accepts, ``read_history`` (the CLI's
  ``--history``, ``History.load``, the searcher's and ask/tell's ``history=path``, ``add_history``) accepts with
  the same trials, and what it refuses is refused with the same message.
* A CSV cell means the same in a gym sweep table (``TabularTask.from_table``) and in a CSV history
  (``History.from_csv``): the same value of the same type.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autollm_sampler import gym
from autollm_sampler._io import parse_csv_value
from autollm_sampler.exceptions import InvalidHistoryError, InvalidTrialError
from autollm_sampler.history import History, read_history
from autollm_sampler.integrations.cli import load_history
from autollm_sampler.space import CategoricalParam, SearchSpace

ERRORS = (InvalidHistoryError, InvalidTrialError)
# text a JSON string may hold raw and str.splitlines() would split at
ODD = "\u2028\u2029\u0085\x0b\x0c\x1c\x1d\x1e"


def record(i: int, note: str) -> dict[str, Any]:
    return {"id": f"r{i}{note}", "params": {"lr": 10.0 ** -(i % 4 + 2), "opt": f"adam{note}"},
            "fidelity": {"n_params": 1.2e8 * (i + 1)}, "value": 3.0 - 0.1 * i, "attrs": {"note": note}}


pieces = st.one_of(
    st.builds(lambda i, note: json.dumps(record(i, note), ensure_ascii=False), st.integers(0, 50),
              st.text(alphabet=ODD + "ab \t", max_size=4)),
    st.sampled_from(["", "   ", "\t", "{", "[1, 2]", '{"params": {}, "value": "x"}', "null",
                     '{"id": 1, "params": {"lr": NaN}, "value": 2.0}', '{"id": 1, "id": 2}']),
)
newlines = st.sampled_from(["\n", "\r\n", "\r"])


@st.composite
def jsonl_texts(draw: Any) -> str:
    lines = draw(st.lists(pieces, max_size=6))
    text = "".join(line + draw(newlines) for line in lines)
    if draw(st.booleans()) and lines:
        text = text.rstrip("\r\n")  # no newline at the end
    return ("\ufeff" if draw(st.booleans()) else "") + text


def outcome(fn: Any) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except ERRORS as exc:
        return type(exc).__name__, str(exc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=jsonl_texts())
def test_a_jsonl_file_is_read_like_its_text(text: str, tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl"
    path.write_bytes(text.encode("utf-8"))  # the bytes as given: no newline translation on the way
    from_text = outcome(lambda: History.from_jsonl(text, source=str(path)))
    from_file = outcome(lambda: read_history(path)[0])
    assert from_file == from_text
    if from_text[0] == "ok":
        assert History.load(path) == from_text[1]


def test_the_readings_that_used_to_differ(tmp_path: Path) -> None:
    good = [json.dumps(record(i, "\u2028x\u0085"), ensure_ascii=False) for i in range(3)]
    for sep in ("\n", "\r\n", "\r"):
        text = "\ufeff" + sep.join(good) + sep
        path = tmp_path / "runs.jsonl"
        path.write_bytes(text.encode("utf-8"))
        h = History.from_jsonl(text)
        assert [t.id for t in h.trials] == ["r0\u2028x\u0085", "r1\u2028x\u0085", "r2\u2028x\u0085"]
        assert read_history(path)[0] == h
        assert read_history(path)[1] == [f"{path}, line {n}" for n in (1, 2, 3)]
    # a line the file reading splits at a lone carriage return is split the same way in the text
    text = good[0] + "\r" + good[1]
    assert [t.id for t in History.from_jsonl(text).trials] == ["r0\u2028x\u0085", "r1\u2028x\u0085"]
    with pytest.raises(InvalidHistoryError, match=r"<history>, line 2: "):
        History.from_jsonl(good[0] + "\r{")


def test_the_cli_reads_what_from_jsonl_reads(tmp_path: Path) -> None:
    space = SearchSpace.from_dict({"params": {
        "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
        "opt": {"type": "categorical", "choices": ["adam", "adam\u2028", "lion"]}}})
    recs = [dict(record(i, ""), params={"lr": 10.0 ** -(i + 2), "opt": ["adam", "adam\u2028", "lion"][i]})
            for i in range(3)]
    text = "\ufeff" + "\r".join(json.dumps(r, ensure_ascii=False) for r in recs) + "\r\n"
    path = tmp_path / "runs.jsonl"
    path.write_bytes(text.encode("utf-8"))
    got = load_history(path, space, {"n_params": 7e9})
    assert got.trials == History.from_jsonl(text).trials
    assert [t.params["opt"] for t in got.trials] == ["adam", "adam\u2028", "lion"]


CELLS = ["3", " 3 ", "+3", "-0", "3.0", "1e-3", "1.5E+3", ".5", "5.", "true", "FALSE", " True ", "abc",
         "1_000", "0x10", "1e", "9007199254740993", "12345678901234567890", "adam w"]
# (a non-finite parameter value is read the same too, then refused by a history's rule: params must be finite)


@pytest.mark.parametrize("cell", CELLS)
def test_a_csv_cell_means_the_same_in_a_gym_table_and_a_history(cell: str, tmp_path: Path) -> None:
    text = ("id,x,fidelity:n_params,value\n"
            f'a,"{cell}",1e8,2.5\n'
            "b,zz,1e8,2.75\n")
    path = tmp_path / "runs.csv"
    path.write_text(text)
    hist = History.from_csv(path).trials[0].params["x"]
    # the same file as a gym sweep table (its columns named as the table's)
    task = gym.TabularTask.from_table(path, params=["x"], fidelity={"n_params": "fidelity:n_params"},
                                      objective="value", cost=1.0)
    table = task.cells[0].configs[0]["x"]
    expected = parse_csv_value(cell)
    assert type(hist) is type(table) is type(expected)
    assert hist == table == expected
    assert isinstance(task.cells[0].space.params["x"], CategoricalParam)


@pytest.mark.parametrize(("cell", "number"), [("2.5", 2.5), (" 2.5 ", 2.5), ("25e-1", 2.5), ("+2.5", 2.5),
                                              ("3", 3.0), ("1.2E8", 1.2e8)])
def test_numeric_columns_read_the_same_number(cell: str, number: float, tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text(f'x,fidelity:n_params,value\n1,"{cell}","{cell}"\n')
    t = History.from_csv(path).trials[0]
    task = gym.TabularTask.from_table(path, params=["x"], fidelity={"n_params": "fidelity:n_params"},
                                      objective="value", cost=1.0)
    assert t.value == task.cells[0].values[0] == number
    assert t.fidelity["n_params"] == task.cells[0].fidelity["n_params"] == number


@pytest.mark.parametrize("cell", ["abc", "1_000", "0x10", "true", ""])
def test_numeric_columns_refuse_the_same_text(cell: str, tmp_path: Path) -> None:
    path = tmp_path / "runs.csv"
    path.write_text(f'x,fidelity:n_params,value\n1,1e8,"{cell}"\n')
    with pytest.raises(ValueError, match="not a number"):
        gym.TabularTask.from_table(path, params=["x"], fidelity={"n_params": "fidelity:n_params"},
                                   objective="value", cost=1.0)
    if cell:  # an empty history cell is a missing value (a complete trial then needs one)
        with pytest.raises(InvalidTrialError, match="value"):
            History.from_csv(path)


# Excel's "CSV UTF-8" starts the file with a byte-order mark; the locale's encoding must not matter either
BOM_CSV = "id,opt,lr,fidelity:n_params,value\nr0,adamw-\u00e9,0.001,1e8,2.5\nr1,lion-\u03bb,0.003,1e8,2.75\n"


def _check_bom_readings(path: Path) -> None:
    expected = [("r0", {"opt": "adamw-\u00e9", "lr": 0.001}), ("r1", {"opt": "lion-\u03bb", "lr": 0.003})]
    for hist in (History.from_csv(path), History.from_csv(str(path)), History.load(path)):
        assert [(t.id, t.params) for t in hist.trials] == expected
        assert [t.value for t in hist.trials] == [2.5, 2.75]
    with open(path, encoding="utf-8") as fh:  # opened without "-sig": the BOM is still no part of "id"
        assert [t.id for t in History.from_csv(fh).trials] == ["r0", "r1"]
    with open(path, "rb") as fh:
        assert [t.id for t in History.from_csv(fh).trials] == ["r0", "r1"]
    task = gym.TabularTask.from_table(path, params=["opt", "lr"], fidelity={"n_params": "fidelity:n_params"},
                                      objective="value", cost=lambda row: 1.0 if row["id"] in ("r0", "r1") else -1.0)
    configs = task.cells[0].configs
    assert sorted(c["opt"] for c in configs) == ["adamw-\u00e9", "lion-\u03bb"]
    assert list(task.cells[0].values) == [2.5, 2.75]


def test_a_csv_with_a_byte_order_mark_reads_its_first_column(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + BOM_CSV.replace("\n", "\r\n").encode("utf-8"))
    _check_bom_readings(path)
    # and back out: a History written from it and read again has the same trials
    out = tmp_path / "again.jsonl"
    History.from_csv(path).save(out)
    assert History.load(out).trials == History.from_csv(path).trials


def test_csv_reading_does_not_depend_on_the_locale_encoding(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + BOM_CSV.encode("utf-8"))
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0"}
    code = ("import locale, sys, pathlib; sys.path.insert(0, sys.argv[2]); import test_readers as t; "
            "print(getattr(locale, 'getencoding', lambda: '?')()); t._check_bom_readings(pathlib.Path(sys.argv[1])); print('ok')")
    out = subprocess.run([sys.executable, "-X", "warn_default_encoding", "-W", "error::EncodingWarning", "-c", code,
                          str(path), str(Path(__file__).parent)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-1] == "ok"
