"""The text-LLM backend's text I/O: the prompt, its read-back, and the repair parser (no torch here)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autollm_sampler.agent._text import (
    LEVELS,
    PromptSettings,
    RepairStats,
    fmt_number,
    parse_action,
    read_prompt_runs,
    render_answer,
    render_prompt,
)
from autollm_sampler.history import History, Trial
from autollm_sampler.space import CategoricalParam, FloatParam, IntParam, SearchSpace, SimplexParam

MIXED = SearchSpace.from_dict({"params": {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "layers": {"type": "int", "low": 2, "high": 48},
    "optimizer": {"type": "categorical", "choices": ["adamw", "lion", "sgd"]},
    "mix": {"type": "simplex", "components": ["web", "code", "math"]},
}})
#: The parser's test space: a numeric categorical, a boolean one and an int besides MIXED's kinds.
PARSE = SearchSpace.from_dict({"params": {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "batch_size": {"type": "categorical", "choices": [32, 64, 128, 256]},
    "optimizer": {"type": "categorical", "choices": ["adam", "sgd", "lion"]},
    "layers": {"type": "int", "low": 2, "high": 24},
    "tie": {"type": "categorical", "choices": [True, False]},
    "mix": {"type": "simplex", "components": ["web", "code", "math"]},
}})
GOOD = {"lr": 0.003, "batch_size": 128, "optimizer": "lion", "layers": 12, "tie": False,
        "mix": {"web": 0.5, "code": 0.25, "math": 0.25}}
GOOD_TEXT = ('{"params": {"lr": 0.003, "batch_size": 128, "optimizer": "lion", "layers": 12, "tie": false, '
             '"mix": [0.5, 0.25, 0.25]}, "predicted": 2.75, "reason": "near the optimum"}')
FALLBACK = {"lr": 0.01, "batch_size": 32, "optimizer": "sgd", "layers": 4, "tie": True,
            "mix": {"web": 0.2, "code": 0.3, "math": 0.5}}
TARGET = {"n_params": 1e9, "n_tokens": 2e10}
CHEAP = [{"n_params": 1e8, "n_tokens": 2e9}, {"n_params": 3e8, "n_tokens": 6e9}]


# ---------------------------------------------------------------------------------------------- helpers
def history_at(space: SearchSpace, fids: list[dict[str, float]], per_cell: int, *, seed: int = 0,
               maximize: bool = False) -> History:
    """``per_cell`` random trials at each fidelity, with outcomes of five significant digits or more."""
    rng = np.random.default_rng(seed)
    h = History()
    for f in fids:
        for _ in range(per_cell):
            v = float(rng.uniform(2.0, 4.0))
            h.add(Trial(id=h.next_id(), params=space.sample(rng), fidelity=dict(f),
                        value=100.0 - 10 * v if maximize else v))
    return h


def sig(x: float, digits: int) -> float:
    return float(f"{x:.{digits}g}")


def assert_same_shown(space: SearchSpace, shown: Mapping[str, Any], orig: Mapping[str, Any]) -> None:
    """``shown`` is ``orig`` to the prompt's precision: 3 significant digits, simplex weights 3 decimals."""
    assert set(shown) == set(orig)
    for name, p in space.params.items():
        a, b = shown[name], orig[name]
        if isinstance(p, FloatParam):
            assert a == sig(b, 3), name
            assert a == pytest.approx(b, rel=5e-3), name
        elif isinstance(p, (IntParam, CategoricalParam)):
            assert a == b and type(a) is type(b), name
        elif isinstance(p, SimplexParam):
            assert list(a) == list(p.components)
            for c in p.components:
                assert a[c] == pytest.approx(b[c], abs=5e-4 + 1e-12), (name, c)


def assert_valid(space: SearchSpace, params: Mapping[str, Any]) -> None:
    assert space.validate_params(params) == dict(params)


# ---------------------------------------------------------------------------------------------- fmt_number
@pytest.mark.parametrize(("value", "digits", "text"), [
    (128, 3, "128"), (np.int64(4096), 3, "4096"), (True, 3, "true"), (False, 3, "false"),
    (1e-5, 3, "1e-5"), (0.00123456, 3, "0.00123"), (1234567.0, 3, "1.23e6"), (2.4131234, 5, "2.4131"),
    (float("nan"), 3, "null"), (float("inf"), 3, "null"), (-0.5, 3, "-0.5"), (3e10, 3, "3e10"),
])
def test_fmt_number(value: Any, digits: int, text: str) -> None:
    assert fmt_number(value, digits) == text
    if text not in ("null", "true", "false"):
        assert json.loads(text) == pytest.approx(float(value), rel=10.0 ** (1 - digits))


def test_prompt_settings_reject_nonsense() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        PromptSettings(top_k=-1)
    with pytest.raises(ValueError, match="digit"):
        PromptSettings(digits=0)


# ---------------------------------------------------------------------------------------------- prompt round trip
def test_prompt_shows_every_run_and_reads_back_to_the_displayed_precision() -> None:
    h = history_at(MIXED, [*CHEAP, TARGET], per_cell=3, seed=1)
    prompt = render_prompt(h, MIXED, TARGET, task="steplaw", settings=PromptSettings(top_k=3, max_target_runs=3))
    assert "Task: steplaw." in prompt and "lower is better" in prompt
    assert "Target fidelity: n_params=1e9, n_tokens=2e10" in prompt
    for line in ("- lr: float in [1e-5, 0.1], log scale", "- layers: int in [2, 48]",
                 '- optimizer: one of ["adamw", "lion", "sgd"]', "- mix: list of weights for [web, code, math]"):
        assert line in prompt
    assert "Cheaper runs (2 cells, nearest first):" in prompt and "Target runs (3):" in prompt
    runs = read_prompt_runs(prompt, MIXED)
    assert len(runs) == len(h.trials) == 9
    # nearest cell first, target last; every original trial matches exactly one shown run
    assert [r["fidelity"] for r in runs] == [CHEAP[1]] * 3 + [CHEAP[0]] * 3 + [None] * 3
    unmatched = list(h.trials)
    for r in runs:
        fid = r["fidelity"] or TARGET
        t = next(t for t in unmatched if t.fidelity == fid and sig(float(t.value), 5) == r["value"])  # type: ignore[arg-type]
        unmatched.remove(t)
        assert r["value"] == pytest.approx(t.value, rel=5e-5)
        assert_same_shown(MIXED, r["params"], t.params)
    assert not unmatched
    # best first inside each cell
    for i in range(0, 9, 3):
        values = [r["value"] for r in runs[i : i + 3]]
        assert values == sorted(values)


def test_read_prompt_runs_without_space_keeps_weight_lists() -> None:
    h = history_at(MIXED, [TARGET], per_cell=2)
    runs = read_prompt_runs(render_prompt(h, MIXED, TARGET))
    assert len(runs) == 2 and all(isinstance(r["params"]["mix"], list) and len(r["params"]["mix"]) == 3 for r in runs)


def test_long_histories_are_summarised() -> None:
    fids = [{"n_params": 1e9 / 2.0**k, "n_tokens": 2e10 / 2.0**k} for k in range(1, 9)]  # 8 cheaper cells
    h = history_at(MIXED, [*fids, TARGET], per_cell=10, seed=3)
    s = PromptSettings(top_k=2, max_cells=3, max_target_runs=4)
    prompt = render_prompt(h, MIXED, TARGET, settings=s)
    assert "Cheaper runs (8 cells, nearest first; 3 shown):" in prompt
    assert prompt.count("10 runs, best 2") == 3
    assert "Target runs (10, best 4):" in prompt
    runs = read_prompt_runs(prompt, MIXED)
    assert len(runs) == 3 * 2 + 4
    # the cells shown are the three nearest to the target, nearest first
    shown = [r["fidelity"] for r in runs if r["fidelity"] is not None][::2]
    assert shown == [{k: float(fmt_number(v)) for k, v in f.items()} for f in fids[:3]]
    # each shows its best runs
    for fid, r0 in zip(fids[:3], runs[::2], strict=False):
        best = sorted(float(t.value) for t in h.trials if t.fidelity == fid)[:2]  # type: ignore[arg-type]
        assert [r["value"] for r in runs if r["fidelity"] == r0["fidelity"]] == [sig(v, 5) for v in best]
    tgt = sorted(float(t.value) for t in h.trials if t.fidelity == TARGET)[:4]  # type: ignore[arg-type]
    assert [r["value"] for r in runs if r["fidelity"] is None] == [sig(v, 5) for v in tgt]
    # shorter than the full listing
    assert len(prompt) < len(render_prompt(h, MIXED, TARGET, settings=PromptSettings(top_k=10, max_cells=8,
                                                                                      max_target_runs=10))) / 2


def test_maximize_sorts_best_first_and_says_higher_is_better() -> None:
    space = SearchSpace.from_dict({"direction": "maximize", "params": dict(MIXED.params)})
    h = history_at(space, [CHEAP[0], TARGET], per_cell=8, seed=5, maximize=True)
    prompt = render_prompt(h, space, TARGET, settings=PromptSettings(top_k=3, max_target_runs=3))
    assert "higher is better" in prompt
    runs = read_prompt_runs(prompt, space)
    for fid in (CHEAP[0], None):
        want = sorted((float(t.value) for t in h.trials  # type: ignore[arg-type]
                       if t.fidelity == (fid or TARGET)), reverse=True)[:3]
        assert [r["value"] for r in runs if r["fidelity"] == fid] == [sig(v, 5) for v in want]


def test_prompt_without_history_hint_and_pending() -> None:
    empty = render_prompt(History(), MIXED, TARGET)
    assert "Cheaper runs: none." in empty and "Target runs: none yet." in empty
    assert "Extrapolated optimum" not in empty and read_prompt_runs(empty, MIXED) == []
    h = history_at(MIXED, [CHEAP[0], TARGET], per_cell=2)
    hint = {"lr": 0.00123456, "layers": 7, "optimizer": "lion", "mix": {"web": 0.2, "code": 0.3, "math": 0.5}}
    pending = [MIXED.sample(np.random.default_rng(k)) for k in range(3)]
    prompt = render_prompt(h, MIXED, TARGET, hint=hint, pending=pending)
    assert 'Extrapolated optimum: {"lr": 0.00123, "layers": 7, "optimizer": "lion", "mix": [0.2, 0.3, 0.5]}' in prompt
    assert "Running or already chosen (3), do not repeat:" in prompt
    # the hint and the pending configurations are not runs
    assert len(read_prompt_runs(prompt, MIXED)) == 4
    assert "Extrapolated optimum" not in render_prompt(h, MIXED, TARGET, hint=hint, settings=PromptSettings(hint=False))
    assert prompt.rstrip().endswith('"reason": "<why>"}')


def test_incomplete_trials_are_not_shown() -> None:
    h = history_at(MIXED, [TARGET], per_cell=2)
    h.add(Trial(id=h.next_id(), params=MIXED.sample(np.random.default_rng(9)), fidelity=dict(TARGET), state="failed"))
    h.add(Trial(id=h.next_id(), params=MIXED.sample(np.random.default_rng(8)), fidelity=dict(TARGET), state="running"))
    assert len(read_prompt_runs(render_prompt(h, MIXED, TARGET), MIXED)) == 2


# ---------------------------------------------------------------------------------------------- answers
def test_render_answer_parses_back_strict() -> None:
    text = render_answer(GOOD, PARSE, predicted=2.7512345, reason='say "why"')
    assert text == GOOD_TEXT.replace("2.75,", "2.7512,").replace("near the optimum", 'say \\"why\\"')
    a = parse_action(text, PARSE)
    assert (a.level, a.repairs, a.params, a.reason, a.predicted) == ("strict", [], GOOD, 'say "why"', 2.7512)
    assert "predicted" not in render_answer(GOOD, PARSE, predicted=float("nan"))
    assert parse_action(render_answer(GOOD, PARSE), PARSE).predicted is None


NO_SIMPLEX = SearchSpace.from_dict({"params": {k: v for k, v in PARSE.params.items() if k != "mix"}})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), predicted=st.floats(-1e6, 1e6, allow_nan=False), reason=st.text(max_size=30))
def test_render_answer_round_trips_strict_for_random_configs(seed: int, predicted: float, reason: str) -> None:
    cfg = NO_SIMPLEX.sample(np.random.default_rng(seed))
    a = parse_action(render_answer(cfg, NO_SIMPLEX, predicted=predicted, reason=reason), NO_SIMPLEX)
    assert a.level == "strict", a.repairs
    assert a.reason == reason and a.predicted == sig(predicted, 5)
    for name, p in NO_SIMPLEX.params.items():
        want = sig(cfg[name], 3) if isinstance(p, FloatParam) else cfg[name]
        assert a.params[name] == want


@pytest.mark.parametrize("weights", [(1 / 3, 1 / 3, 1 / 3), (0.1236, 0.4326, 0.4438), (0.0006, 0.4996, 0.4998)])
def test_render_answer_round_trips_strict_with_simplex(weights: tuple[float, float, float]) -> None:
    cfg = {**GOOD, "mix": dict(zip(["web", "code", "math"], weights, strict=True))}
    a = parse_action(render_answer(cfg, PARSE), PARSE)
    assert a.level == "strict", a.repairs


@pytest.mark.parametrize(("param", "value"), [
    ({"type": "float", "low": 1.2345e-4, "high": 0.1, "log": True}, 1.2345e-4),
    ({"type": "categorical", "choices": [0.12345, 0.5]}, 0.12345),
    ({"type": "float", "low": 0.0, "high": 1.0, "step": 0.0125}, 0.4625),
])
def test_render_answer_round_trips_strict_with_fine_values(param: dict[str, Any], value: float) -> None:
    space = SearchSpace.from_dict({"params": {"x": param}})
    a = parse_action(render_answer({"x": value}, space), space)
    assert a.level == "strict" and a.params == {"x": value}, a.repairs


# ---------------------------------------------------------------------------------------------- repairs
def _value_ends(text: str) -> dict[str, int]:
    """For each parameter of GOOD_TEXT, the length of the shortest prefix that holds its whole value."""
    out = {}
    for name in GOOD:
        m = re.search(rf'"{name}": (\[[^\]]*\]|"[^"]*"|[^,}}]+)', text)
        assert m is not None
        out[name] = m.end() + 1  # with the delimiter after the value
    return out


def test_truncated_answers_at_every_cut_are_repaired() -> None:
    ends = _value_ends(GOOD_TEXT)
    first = GOOD_TEXT.index('"lr"')
    levels = set()
    for cut in range(len(GOOD_TEXT)):
        a = parse_action(GOOD_TEXT[:cut], PARSE, fallback=FALLBACK)
        assert_valid(PARSE, a.params)
        assert a.level != "strict", cut
        levels.add(a.level)
        if cut <= first:
            assert a.level == "failed" and a.params == FALLBACK, cut
        for name, end in ends.items():
            if cut >= end:
                assert a.params[name] == GOOD[name], (cut, name, a.repairs)
        if cut >= ends["mix"] + 1:  # the params object is closed: nothing is snapped
            assert a.level == "lenient", (cut, a.repairs)
            assert any("truncated" in r for r in a.repairs)
    assert levels == {"lenient", "snap", "failed"}


@pytest.mark.parametrize(("cut_after", "level", "changes"), [
    ('"reason": "near the', "lenient", {}),
    ('"predicted": 2.7', "lenient", {}),
    ('"mix": [0.5, 0.25', "snap", {"mix": {"web": 2 / 3, "code": 1 / 3, "math": 0.0}}),
    ('"layers": ', "snap", {"layers": FALLBACK["layers"], "tie": FALLBACK["tie"], "mix": FALLBACK["mix"]}),
    ('"layers": 1', "snap", {"layers": 2, "tie": FALLBACK["tie"], "mix": FALLBACK["mix"]}),
    ('"optimizer": "li', "snap", {"layers": FALLBACK["layers"], "tie": FALLBACK["tie"], "mix": FALLBACK["mix"]}),
])
def test_truncation_examples(cut_after: str, level: str, changes: dict[str, Any]) -> None:
    text = GOOD_TEXT[: GOOD_TEXT.index(cut_after) + len(cut_after)]
    a = parse_action(text, PARSE, fallback=FALLBACK)
    assert a.level == level, a.repairs
    want = {**GOOD, **changes}
    assert a.params.keys() == want.keys()
    for k, v in want.items():
        assert a.params[k] == (pytest.approx(v) if k == "mix" else v), k
    if cut_after.startswith('"reason"'):
        assert a.reason == "near the" and a.predicted == 2.75
    if cut_after.startswith('"predicted"'):
        assert a.predicted == 2.7 and a.reason == ""


def test_truncated_exponent_drops_the_value() -> None:
    a = parse_action('{"params": {"batch_size": 64, "lr": 1e-', PARSE, fallback=FALLBACK)
    assert a.level == "snap" and a.params["lr"] == FALLBACK["lr"] and a.params["batch_size"] == 64


@pytest.mark.parametrize("text", [
    "Sure! Here is the configuration:\n" + GOOD_TEXT + "\nI hope this helps.",
    "```json\n" + GOOD_TEXT + "\n```",
    GOOD_TEXT.replace('"', "'"),
    GOOD_TEXT.replace("]}", "],}").replace('optimum"}', 'optimum",}'),
    GOOD_TEXT.replace("false", "False").replace("2.75", "None"),
    GOOD_TEXT.replace('"reason"', '"momentum": 0.9, "reason"').replace('"lr"', '"warmup_steps": 100, "lr"'),
])
def test_lenient_syntax_repairs_keep_every_value(text: str) -> None:
    a = parse_action(text, PARSE, fallback=FALLBACK)
    assert a.level == "lenient", a.repairs
    assert a.params == GOOD and a.reason == "near the optimum"
    assert a.repairs


def test_python_none_and_unknown_names() -> None:
    a = parse_action(GOOD_TEXT.replace("2.75", "None").replace("false", "False"), PARSE)
    assert a.predicted is None and a.params["tie"] is False
    a = parse_action(GOOD_TEXT.replace('"lr"', '"momentum": 0.9, "lr"'), PARSE)
    assert "momentum" not in a.params and any("momentum" in r for r in a.repairs)


@pytest.mark.parametrize(("key", "name"), [
    ("LR", "lr"), ("Batch_Size", "batch_size"), ("batchsize", "batch_size"), ("batch-size", "batch_size"),
    ("optimiser", "optimizer"), ("Layer", "layers"), ("OPTIMIZER", "optimizer"),
])
def test_misnamed_parameters_are_matched(key: str, name: str) -> None:
    a = parse_action(GOOD_TEXT.replace(f'"{name}"', f'"{key}"', 1), PARSE, fallback=FALLBACK)
    assert a.level == "lenient", a.repairs
    assert a.params == GOOD
    assert any(repr(key) in r and repr(name) in r for r in a.repairs)


@pytest.mark.parametrize(("name", "raw", "value"), [
    ("lr", "0.5", 0.1), ("lr", "-3", 1e-4), ("lr", "1e-9", 1e-4), ("lr", '"0.002"', 0.002),
    ("layers", "100", 24), ("layers", "7.6", 8), ("layers", "-1", 2),
    ("batch_size", "100", 128), ("batch_size", "95", 128), ("batch_size", "40", 32), ("batch_size", '"64"', 64),
    ("optimizer", '"Adam"', "adam"), ("optimizer", '"lionn"', "lion"), ("optimizer", '" SGD "', "sgd"),
    ("tie", "1", True), ("tie", '"true"', True),
])
def test_invalid_values_are_snapped(name: str, raw: str, value: Any) -> None:
    text = re.sub(rf'"{name}": ("[^"]*"|[^,}}]+)', f'"{name}": {raw}', GOOD_TEXT, count=1)
    assert text != GOOD_TEXT
    a = parse_action(text, PARSE, fallback=FALLBACK)
    assert a.params[name] == value and type(a.params[name]) is type(value)
    assert {k: v for k, v in a.params.items() if k != name} == {k: v for k, v in GOOD.items() if k != name}
    assert_valid(PARSE, a.params)
    if raw.strip('"') != str(value):
        # a categorical value matched by spelling, case or type is a lenient read; a moved value is a snap
        assert a.level == ("lenient" if name in ("optimizer", "tie") else "snap"), a.repairs
        assert a.repairs


@pytest.mark.parametrize("raw", ['"xyz"', "null", "[1, 2]", "NaN", '{"a": 1}'])
def test_unreadable_values_come_from_the_fallback(raw: str) -> None:
    text = GOOD_TEXT.replace('"optimizer": "lion"', f'"optimizer": {raw}').replace('"lr": 0.003', f'"lr": {raw}')
    a = parse_action(text, PARSE, fallback=FALLBACK)
    assert a.level == "snap"
    assert a.params == {**GOOD, "optimizer": FALLBACK["optimizer"], "lr": FALLBACK["lr"]}
    assert sum("unreadable" in r for r in a.repairs) == 2


def test_missing_parameters_come_from_the_fallback_or_the_centre() -> None:
    a = parse_action('{"params": {"lr": 0.003, "optimizer": "lion"}, "reason": "r"}', PARSE, fallback=FALLBACK)
    assert a.level == "snap" and a.reason == "r"
    assert a.params == {**FALLBACK, "lr": 0.003, "optimizer": "lion"}
    assert sum("filled missing" in r for r in a.repairs) == 4
    a = parse_action('{"params": {"lr": 0.003}}', PARSE)
    centre = PARSE.from_unit(np.full(PARSE.width, 0.5))
    assert a.params == {**centre, "lr": 0.003}
    # top-level parameters without a "params" object
    a = parse_action('{"lr": 0.003, "batch_size": 256, "reason": "flat"}', PARSE, fallback=FALLBACK)
    assert a.level == "snap" and a.params["batch_size"] == 256 and a.reason == "flat"


@pytest.mark.parametrize(("mix", "level", "weights"), [
    ('{"web": 0.5, "code": 0.25, "math": 0.25}', "strict", (0.5, 0.25, 0.25)),
    ('{"math": 0.25, "web": 0.5, "code": 0.25}', "strict", (0.5, 0.25, 0.25)),
    ('{"Web": 0.5, "CODE": 0.25, "math": 0.25}', "lenient", (0.5, 0.25, 0.25)),
    ("[2, 1, 1]", "snap", (0.5, 0.25, 0.25)),
    ('{"web": 3, "code": 1}', "snap", (0.75, 0.25, 0.0)),
    ("[0.5, 0.5]", "snap", (0.5, 0.5, 0.0)),
    ("[0.6, -0.2, 0.6]", "snap", (0.5, 0.0, 0.5)),
    ('{"web": 0.5, "code": 0.5, "wiki": 0.3}', "snap", (0.5, 0.5, 0.0)),
    ("[0, 0, 0]", "snap", (0.2, 0.3, 0.5)),
])
def test_simplex_forms_and_renormalisation(mix: str, level: str, weights: tuple[float, ...]) -> None:
    a = parse_action(GOOD_TEXT.replace("[0.5, 0.25, 0.25]", mix), PARSE, fallback=FALLBACK)
    assert a.params["mix"] == pytest.approx(dict(zip(["web", "code", "math"], weights, strict=True)))
    assert_valid(PARSE, a.params)
    assert a.level == level, a.repairs
    assert bool(a.repairs) == (level != "strict")


def test_negative_weight_is_a_repair() -> None:
    a = parse_action(GOOD_TEXT.replace("[0.5, 0.25, 0.25]", "[0.5, -0.5, 0.5]"), PARSE)
    assert a.params["mix"] == {"web": 0.5, "code": 0.0, "math": 0.5}
    assert a.level == "snap" and a.repairs


@pytest.mark.parametrize("flat", [
    '"mix[web]": 0.5, "mix[code]": 0.25, "mix[math]": 0.25',
    '"mix.web": 0.5, "mix.code": 0.25, "mix.math": 0.25',
    '"web": 0.5, "code": 0.25, "math": 0.25',
])
def test_simplex_from_flat_keys(flat: str) -> None:
    a = parse_action(GOOD_TEXT.replace('"mix": [0.5, 0.25, 0.25]', flat), PARSE, fallback=FALLBACK)
    assert a.level == "lenient", a.repairs
    assert a.params == GOOD and any("gathered" in r for r in a.repairs)


def test_key_value_text_without_json() -> None:
    a = parse_action("lr=0.003, batch_size: 128, optimizer='lion' layers = 12", PARSE, fallback=FALLBACK)
    assert a.level == "snap"  # tie and mix come from the fallback
    assert a.params == {**FALLBACK, "lr": 0.003, "batch_size": 128, "optimizer": "lion", "layers": 12}
    assert any("key-value" in r for r in a.repairs)


@pytest.mark.parametrize("text", ["", "   ", "I do not know.", "[1, 2, 3]", "{}", '{"reason": "no idea"}',
                                  "{{{{", '{"params": {}}', '{"params": {"momentum": 0.9}}', "null", "42"])
def test_garbage_fails_to_the_fallback(text: str) -> None:
    a = parse_action(text, PARSE, fallback=FALLBACK)
    assert a.level == "failed" and a.params == FALLBACK and a.repairs
    a = parse_action(text, PARSE)
    assert a.level == "failed" and a.params == PARSE.from_unit(np.full(PARSE.width, 0.5))


def test_module_docstring_example() -> None:
    space = SearchSpace.from_dict({"params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}})
    a = parse_action('Sure! {"params": {"LR": 0.5}, "reason": "big steps', space)
    assert (a.level, a.params, a.reason) == ("snap", {"lr": 0.1}, "big steps")


_CHARS = st.sampled_from(list('{}[]":,\'. -0123456789eE') + ["lr", "mix", "web", "true", "None", "params", "\n"])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=80), st.lists(_CHARS, max_size=40).map("".join)),
       cut=st.integers(0, len(GOOD_TEXT)), insert=st.lists(_CHARS, max_size=4).map("".join))
def test_parse_action_never_raises_and_always_returns_a_valid_config(text: str, cut: int, insert: str) -> None:
    for t in (text, GOOD_TEXT[:cut] + insert + GOOD_TEXT[cut:], GOOD_TEXT[:cut] + text):
        a = parse_action(t, PARSE, fallback=FALLBACK)
        assert a.level in LEVELS
        assert_valid(PARSE, a.params)
        assert isinstance(a.reason, str)
        assert a.predicted is None or math.isfinite(a.predicted)


# ---------------------------------------------------------------------------------------------- stats
def test_repair_stats() -> None:
    s = RepairStats()
    assert s.total == 0 and s.repair_rate == 0.0
    assert s.to_dict() == {"answers": 0, "strict": 0, "lenient": 0, "snap": 0, "failed": 0, "repair_rate": 0.0, "too_long": 0}
    for text in (GOOD_TEXT, GOOD_TEXT, "x " + GOOD_TEXT, GOOD_TEXT.replace("128", "100"), "nothing", GOOD_TEXT):
        s.add(parse_action(text, PARSE).level)
    assert dict(s.counts) == {"strict": 3, "lenient": 1, "snap": 1, "failed": 1}
    assert s.total == 6 and s.repair_rate == pytest.approx(0.5)
    assert s.to_dict() == {"answers": 6, "strict": 3, "lenient": 1, "snap": 1, "failed": 1, "repair_rate": 0.5, "too_long": 0}
    json.dumps(s.to_dict())


def test_a_chat_template_that_rejects_every_layout_raises_in_strict_mode(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from autollm_sampler._strict import STRICT_ENV
    from autollm_sampler.agent._llm import chat_text

    class Broken:
        chat_template = "{{ raise }}"

        def apply_chat_template(self, *a: object, **k: object) -> str:
            raise RuntimeError("template error")

    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(RuntimeError, match="template error"):
        chat_text(Broken(), "hello")
    monkeypatch.setenv(STRICT_ENV, "0")
    with caplog.at_level("WARNING", logger="autollm_sampler.agent._llm"):
        text = chat_text(Broken(), "hello")
    assert text.endswith("hello\n") and "bare prompt" in caplog.text
