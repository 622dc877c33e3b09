"""Bad input to ``autollm-sampler suggest``: exit code 2, one bounded message naming file, line and field.

A table of bad SPACE and HISTORY files (cheap and target trials under one rule, JSONL, CSV, YAML, JSON,
broken encodings, alias bombs, deep nesting, huge numbers), each run through the real command line
(``main()`` in this process; three through a subprocess), and a table of valid edge cases that must exit 0.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from autollm_sampler.cli import main

SPACE = """\
direction: minimize
params:
  learning_rate: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
  warmup_steps: {type: int, low: 0, high: 1000, step: 100}
  batch_size: {type: categorical, choices: [64, 128, 256]}
  optimizer: {type: categorical, choices: [adam, lion]}
  mix: {type: simplex, components: [web, code, books]}
"""
GOOD = {"learning_rate": 0.003, "warmup_steps": 200, "batch_size": 128, "optimizer": "adam",
        "mix": {"web": 0.5, "code": 0.3, "books": 0.2}}
CHEAP = {"n_params": 1e8}
GOOD_LINE = json.dumps({"params": GOOD, "fidelity": CHEAP, "value": 3.0})
CSV_HEAD = "param:learning_rate,param:warmup_steps,param:batch_size,param:optimizer,param:mix.web,param:mix.code,param:mix.books,fidelity:n_params,value"
CSV_GOOD = "0.003,200,128,adam,0.5,0.3,0.2,1e8,3.0"
#: an error message must be one line (plus at most one more for a log line) and at most this long
MAX_MESSAGE = 1500


@dataclass
class Case:
    id: str
    files: dict[str, str | bytes]
    fragments: list[str]
    args: list[str] = field(default_factory=list)  # replaces the default arguments when given


def _line(params: dict | None = None, *, at: str = "cheap", raw: str | None = None, name: str = "learning_rate",
          **top: object) -> str:
    """One JSONL trial; ``raw`` is written verbatim as the value of ``params[name]`` (for NaN, huge ints ...)."""
    p = dict(GOOD if params is None else params)
    if raw is not None:
        p[name] = "@@RAW@@"
    rec: dict[str, object] = {"params": p, "value": 3.0}
    if at == "cheap":
        rec["fidelity"] = CHEAP
    rec.update(top)
    text = json.dumps(rec)
    return text.replace('"@@RAW@@"', raw) if raw is not None else text


def _jsonl(*lines: str) -> str:
    return "\n".join((GOOD_LINE, *lines)) + "\n"  # the bad trial is on line 2


def _with(name: str, value: object) -> dict:
    return {**GOOD, name: value}


def _without(name: str) -> dict:
    return {k: v for k, v in GOOD.items() if k != name}


def _csv(*rows: str, head: str = CSV_HEAD) -> str:
    return "\n".join((head, CSV_GOOD, *rows)) + "\n"  # the bad row is on line 3


def _space_with(line: str) -> str:
    return SPACE + line + "\n"  # the added line is line 8


# ------------------------------------------------------------------ the bad cases
CASES: list[Case] = []

# parameter values that cannot be read: the same refusal in a cheap trial and in a target trial
UNREADABLE = [
    ("lr-string", "learning_rate", '"0.008"', "without quotes"),
    ("lr-bool", "learning_rate", "true", "expected a number"),
    ("lr-dict", "learning_rate", '{"web": 0.5, "code": 0.5}', "expected a number"),
    ("lr-list", "learning_rate", "[0.001]", "expected a number"),
    ("lr-null", "learning_rate", "null", "expected a number"),
    ("lr-nan", "learning_rate", "NaN", "NaN"),
    ("lr-inf", "learning_rate", "Infinity", "inf"),
    ("lr-minus-inf", "learning_rate", "-Infinity", "inf"),
    ("lr-int-10e400", "learning_rate", "1" + "0" * 400, "too large"),
    ("lr-int-5001-digits", "learning_rate", "7" * 5001, "too large"),
    ("lr-float-1e400", "learning_rate", "1e400", "inf"),
    ("warmup-string", "warmup_steps", '"100"', "expected a number"),
    ("warmup-bool", "warmup_steps", "false", "expected a number"),
    ("bs-string", "batch_size", '"128"', "expected a number or one of the choices"),
    ("bs-bool", "batch_size", "true", "one of the choices"),
    ("bs-dict", "batch_size", '{"a": 1}', "one of the choices"),
    ("opt-unknown-choice", "optimizer", '"sgd"', "one of the choices"),
    ("opt-number", "optimizer", "1", "one of the choices"),
    ("opt-bool", "optimizer", "true", "one of the choices"),
    ("opt-list", "optimizer", '["adam"]', "one of the choices"),
    ("mix-json-text", "mix", '"{\\"web\\": 0.5, \\"code\\": 0.5}"', "mapping"),
    ("mix-list", "mix", "[0.5, 0.5, 0.0]", "mapping"),
    ("mix-number", "mix", "0.5", "mapping"),
    ("mix-sum-1.02", "mix", '{"web": 0.5, "code": 0.52}', "sum to 1.02"),
    ("mix-sum-0.8", "mix", '{"web": 0.5, "code": 0.3}', "sum to 0.8"),
    ("mix-negative", "mix", '{"web": 1.2, "code": -0.2}', "outside [0, 1]"),
    ("mix-weight-text", "mix", '{"web": "0.5", "code": 0.5}', "weight"),
    ("mix-weight-bool", "mix", '{"web": true, "code": 0}', "weight"),
    ("mix-unknown-component", "mix", '{"web": 0.5, "news": 0.5}', "unknown component 'news'"),
    ("mix-weight-nan", "mix", '{"web": NaN, "code": 1}', "NaN"),
    ("mix-weight-huge-int", "mix", '{"web": ' + "9" * 400 + "}", "too large"),
]
for cid, name, raw, frag in UNREADABLE:
    for at in ("cheap", "target"):
        CASES.append(Case(f"{cid}-{at}", {"h.jsonl": _jsonl(_line(at=at, raw=raw, name=name))},
                          ["h.jsonl", "line 2", f"params.{name}", frag]))
for at in ("cheap", "target"):
    CASES.append(Case(f"unknown-param-{at}", {"h.jsonl": _jsonl(_line(_with("wd", 0.1), at=at))},
                      ["h.jsonl", "line 2", "'params.wd'", "unknown parameter"]))
    CASES.append(Case(f"huge-unknown-name-{at}", {"h.jsonl": _jsonl(_line(_with("w" * 200_000, 0.1), at=at))},
                      ["h.jsonl", "line 2", "unknown parameter"]))
    CASES.append(Case(f"huge-string-value-{at}", {"h.jsonl": _jsonl(_line(_with("optimizer", "x" * 1_000_000), at=at))},
                      ["h.jsonl", "line 2", "params.optimizer", "one of the choices"]))

# target trials must also fit the space
TARGET_ONLY = [
    ("lr-out-of-range", _with("learning_rate", 0.5), "params.learning_rate", "outside"),
    ("warmup-off-grid", _with("warmup_steps", 150), "params.warmup_steps", "step grid"),
    ("warmup-not-integer", _with("warmup_steps", 200.5), "params.warmup_steps", "not an integer"),
    ("warmup-out-of-range", _with("warmup_steps", 1100), "params.warmup_steps", "outside"),
    ("bs-not-a-choice", _with("batch_size", 100), "params.batch_size", "not one of the choices"),
    ("missing-param", _without("optimizer"), "params.optimizer", "missing"),
    ("missing-mix", _without("mix"), "params.mix", "missing"),
]
for cid, params, fld, frag in TARGET_ONLY:
    CASES.append(Case(f"target-{cid}", {"h.jsonl": _jsonl(_line(params, at="target"))}, ["h.jsonl", "line 2", fld, frag]))

# the trial record itself
raw_good = json.dumps({"params": GOOD})[:-1]  # '{"params": {...}' without the closing brace
RECORDS = [
    ("value-text", raw_good + ', "fidelity": {"n_params": 1e8}, "value": "abc"}', "'value'"),
    ("value-bool", raw_good + ', "fidelity": {"n_params": 1e8}, "value": true}', "'value'"),
    ("value-dict", raw_good + ', "fidelity": {"n_params": 1e8}, "value": {"loss": 1}}', "'value'"),
    ("value-huge-int", raw_good + ', "fidelity": {"n_params": 1e8}, "value": ' + "1" * 5001 + "}", "'value'"),
    ("complete-without-value", raw_good + ', "fidelity": {"n_params": 1e8}}', "'value'"),
    ("state-unknown", raw_good + ', "fidelity": {"n_params": 1e8}, "value": 1, "state": "done"}', "'state'"),
    ("state-number", raw_good + ', "fidelity": {"n_params": 1e8}, "value": 1, "state": 1}', "'state'"),
    ("fidelity-bool", raw_good + ', "fidelity": {"n_params": true}, "value": 1}', "fidelity.n_params"),
    ("fidelity-text", raw_good + ', "fidelity": {"n_params": "big"}, "value": 1}', "fidelity.n_params"),
    ("fidelity-nan", raw_good + ', "fidelity": {"n_params": NaN}, "value": 1}', "fidelity.n_params"),
    ("fidelity-inf", raw_good + ', "fidelity": {"n_params": Infinity}, "value": 1}', "fidelity.n_params"),
    ("fidelity-huge-int", raw_good + ', "fidelity": {"n_params": ' + "1" * 400 + '}, "value": 1}', "fidelity.n_params"),
    ("fidelity-list", raw_good + ', "fidelity": [1e8], "value": 1}', "'fidelity'"),
    ("fidelity-other-axis", raw_good + ', "fidelity": {"n_tokens": 1e8}, "value": 1}', "n_tokens"),
    ("cost-negative", raw_good + ', "fidelity": {"n_params": 1e8}, "value": 1, "cost": -1}', "'cost'"),
    ("cost-text", raw_good + ', "fidelity": {"n_params": 1e8}, "value": 1, "cost": "cheap"}', "'cost'"),
    ("cost-bool", raw_good + ', "fidelity": {"n_params": 1e8}, "value": 1, "cost": true}', "'cost'"),
    ("id-float", raw_good + ', "fidelity": {"n_params": 1e8}, "value": 1, "id": 1.5}', "'id'"),
    ("id-bool", raw_good + ', "fidelity": {"n_params": 1e8}, "value": 1, "id": true}', "'id'"),
    ("id-list", raw_good + ', "fidelity": {"n_params": 1e8}, "value": 1, "id": [1]}', "'id'"),
    ("id-duplicate", raw_good + ', "fidelity": {"n_params": 1e8}, "value": 1, "id": 0}', "duplicate trial id"),
    ("extra-field", raw_good + ', "fidelity": {"n_params": 1e8}, "value": 1, "bogus": 2}', "'bogus'"),
    ("duplicate-key", raw_good + ', "fidelity": {"n_params": 1e8}, "value": 1, "value": 2}', "'value' appears twice"),
    ("params-list", '{"params": [1, 2], "value": 1}', "'params'"),
    ("params-missing", '{"fidelity": {"n_params": 1e8}, "value": 1}', "'params'"),
    ("record-list", "[1, 2]", "expected a JSON object"),
    ("record-number", "3.5", "expected a JSON object"),
    ("record-string", '"trial"', "expected a JSON object"),
    ("not-json", '{"params": {"learning_rate": 0.003}, oops}', "not valid JSON"),
    ("truncated-json", '{"params": {"learning_rate": 0.003', "not valid JSON"),
    ("control-char-in-string", '{"params": {"optimizer": "ad\x01am"}, "value": 1}', "not valid JSON"),
    ("nested-100k-lists", "[" * 100_000, "nested too deeply"),
    ("nested-100k-objects", '{"a": ' * 100_000, "nested too deeply"),
    ("nested-in-params", '{"params": {"x": ' + "[" * 50_000 + "]" * 50_000 + "}, \"value\": 1}", "nested too deeply"),
]
for cid, line, frag in RECORDS:
    CASES.append(Case(f"record-{cid}", {"h.jsonl": _jsonl(line)}, ["h.jsonl", "line 2", frag]))

# encodings
ENCODED = [
    ("latin1", GOOD_LINE.encode() + b'\n{"params": {"optimizer": "\xe9"}, "value": 1}\n', "line 2"),
    ("binary", bytes(range(256)) * 4, "not UTF-8"),
    ("utf16", ("\ufeff" + GOOD_LINE + "\n").encode("utf-16"), "not UTF-8"),
    ("nul-byte", GOOD_LINE.encode() + b"\n\x00\x00\x00\n", "line 2"),
    ("lone-surrogate-bytes", GOOD_LINE.encode() + b'\n{"params": {"optimizer": "\xed\xa0\x80"}}\n', "not UTF-8"),
]
for cid, data, frag in ENCODED:
    CASES.append(Case(f"jsonl-{cid}", {"h.jsonl": data}, ["h.jsonl", frag]))
    # the CSV header comes first, so a line number there is one more
    csv_frag = f"line {int(frag.split()[1]) + 1}" if frag.startswith("line ") else frag
    csv_data = CSV_HEAD.encode() + b"\n" + data.replace(GOOD_LINE.encode(), CSV_GOOD.encode(), 1)
    CASES.append(Case(f"csv-{cid}", {"h.csv": csv_data}, ["h.csv", csv_frag]))

# CSV histories
CSV_CASES = [
    ("extra-columns", _csv(CSV_GOOD + ",surprise"), ["line 3", "fields"]),
    ("short-row", _csv("0.003,200,128"), ["line 3", "fields"]),
    ("value-text", _csv("0.003,200,128,adam,0.5,0.3,0.2,1e8,abc"), ["line 3", "'value'"]),
    ("value-bool", _csv("0.003,200,128,adam,0.5,0.3,0.2,1e8,true"), ["line 3", "'value'"]),
    ("lr-text", _csv("lr=0.008,200,128,adam,0.5,0.3,0.2,1e8,3.0"), ["line 3", "params.learning_rate"]),
    ("lr-bool", _csv("true,200,128,adam,0.5,0.3,0.2,1e8,3.0"), ["line 3", "params.learning_rate"]),
    ("lr-nan", _csv("nan,200,128,adam,0.5,0.3,0.2,1e8,3.0"), ["line 3", "params.learning_rate"]),
    ("lr-huge-int", _csv("1" + "0" * 400 + ",200,128,adam,0.5,0.3,0.2,1e8,3.0"), ["line 3", "params.learning_rate"]),
    ("lr-5001-digits", _csv("7" * 5001 + ",200,128,adam,0.5,0.3,0.2,1e8,3.0"), ["line 3", "params.learning_rate"]),
    ("opt-unknown", _csv("0.003,200,128,sgd,0.5,0.3,0.2,1e8,3.0"), ["line 3", "params.optimizer"]),
    ("mix-sum-1.02", _csv("0.003,200,128,adam,0.5,0.32,0.2,1e8,3.0"), ["line 3", "params.mix", "sum to 1.02"]),
    ("mix-weight-text", _csv("0.003,200,128,adam,half,0.3,0.2,1e8,3.0"), ["line 3", "params.mix"]),
    ("mix-json-cell", _csv(head="param:learning_rate,param:warmup_steps,param:batch_size,param:optimizer,fidelity:n_params,value")
     .replace(CSV_GOOD, '0.003,200,128,adam,"{""web"": 0.5, ""code"": 0.5}",1e8,3.0', 1)
     .replace("param:optimizer,", "param:optimizer,param:mix,", 1), ["line 2", "params.mix", "one column per component"]),
    ("mix-both-forms", _csv(head=CSV_HEAD + ",param:mix").replace(CSV_GOOD, CSV_GOOD + ",x", 1), ["line 1", "mix"]),
    ("unknown-column", _csv(head=CSV_HEAD + ",param:wd").replace(CSV_GOOD, CSV_GOOD + ",0.1", 1), ["line 2", "params.wd"]),
    ("duplicate-column", _csv(head=CSV_HEAD + ",value").replace(CSV_GOOD, CSV_GOOD + ",3.0", 1), ["line 1", "'value' appears twice"]),
    ("nameless-column", _csv(head=CSV_HEAD + ",").replace(CSV_GOOD, CSV_GOOD + ",7", 1), ["line 2", "no name"]),
    ("empty-param-name", _csv(head=CSV_HEAD + ",param:").replace(CSV_GOOD, CSV_GOOD + ",7", 1), ["line 1", "names no parameter"]),
    ("trailing-dot", _csv(head=CSV_HEAD + ",param:mix.").replace(CSV_GOOD, CSV_GOOD + ",7", 1), ["line 1", "names no parameter"]),
    ("fidelity-text", _csv("0.003,200,128,adam,0.5,0.3,0.2,big,3.0"), ["line 3", "fidelity.n_params"]),
    ("fidelity-bool", _csv("0.003,200,128,adam,0.5,0.3,0.2,true,3.0"), ["line 3", "fidelity.n_params"]),
    ("state-unknown", _csv("0.003,200,128,adam,0.5,0.3,0.2,1e8,3.0,done", head=CSV_HEAD + ",state")
     .replace(CSV_GOOD, CSV_GOOD + ",complete", 1), ["line 3", "'state'"]),
    ("id-duplicate", _csv("0.003,200,128,adam,0.5,0.3,0.2,1e8,3.0,a", head=CSV_HEAD + ",id")
     .replace(CSV_GOOD, CSV_GOOD + ",a", 1), ["line 3", "duplicate trial id"]),
    ("target-off-grid", _csv("0.003,150,128,adam,0.5,0.3,0.2,1e9,3.0"), ["line 3", "params.warmup_steps", "step grid"]),
    ("multiline-quoted-row", _csv('"0.003\n",200,128,adam,0.5,0.3,0.2,1e8,3.0', "0.003,200,x"), ["line 5", "fields"]),
]
for cid, text, frags in CSV_CASES:
    CASES.append(Case(f"csv-{cid}", {"h.csv": text}, ["h.csv", *frags]))

# SPACE files (YAML and JSON)
BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(8)
) + "params: {}\n"
REFS = "x: &x [1]\n" + "y: [" + ", ".join(["*x"] * 60_000) + "]\nparams: {}\n"
SPACE_CASES: list[tuple[str, str, str | bytes, list[str]]] = [
    ("yaml-invalid", "s.yaml", "params:\n  lr: {type: float, low: 1, high: [\n", ["line 3", "not valid YAML"]),
    ("yaml-alias-bomb", "s.yaml", BOMB, ["line 2", "aliases"]),
    ("yaml-many-alias-references", "s.yaml", REFS, ["line 2", "aliases"]),
    ("yaml-one-alias", "s.yaml", _space_with("  other: *lr"), ["aliases"]),
    ("yaml-merge-key", "s.yaml", "base: &b {type: float, low: 0, high: 1}\nparams:\n  lr: {<<: *b}\n", ["line 3", "aliases"]),
    ("yaml-nested-100k", "s.yaml", "params: " + "[" * 100_000, ["s.yaml"]),
    ("yaml-duplicate-key", "s.yaml", _space_with("  optimizer: {type: categorical, choices: [sgd]}"), ["line 8", "appears twice"]),
    ("yaml-duplicate-top-key", "s.yaml", SPACE + "direction: maximize\n", ["line 8", "'direction' appears twice"]),
    ("yaml-int-5001-digits", "s.yaml", _space_with("  depth: {type: int, low: 1, high: " + "9" * 5001 + "}"), ["line 8", "too large"]),
    ("yaml-int-10e400", "s.yaml", _space_with("  depth: {type: int, low: 1, high: 1" + "0" * 400 + "}"), ["params.depth.high", "too large"]),
    ("yaml-low-above-high", "s.yaml", _space_with("  depth: {type: int, low: 9, high: 1}"), ["line 8", "'params.depth'", "swap them"]),
    ("yaml-float-inf", "s.yaml", _space_with("  wd: {type: float, low: 0, high: .inf}"), ["line 8", "'params.wd'", "not finite"]),
    ("yaml-log-zero", "s.yaml", _space_with("  wd: {type: float, low: 0, high: 1, log: true}"), ["line 8", "log=True needs low > 0"]),
    ("yaml-step-negative", "s.yaml", _space_with("  wd: {type: float, low: 0, high: 1, step: -1}"), ["line 8", "step"]),
    ("yaml-int-low-float", "s.yaml", _space_with("  depth: {type: int, low: 1.5, high: 4}"), ["line 8", "params.depth"]),
    ("yaml-choices-empty", "s.yaml", _space_with("  act: {type: categorical, choices: []}"), ["line 8", "choices is empty"]),
    ("yaml-simplex-one", "s.yaml", _space_with("  m2: {type: simplex, components: [a]}"), ["line 8", "at least two"]),
    ("yaml-unknown-type", "s.yaml", _space_with("  q: {type: quantum}"), ["line 8", "'params.q'"]),
    ("yaml-huge-type", "s.yaml", _space_with("  q: {type: " + "q" * 1_000_000 + "}"), ["line 8", "'params.q'"]),
    ("yaml-extra-field", "s.yaml", _space_with("  wd: {type: float, low: 0, high: 1, foo: 3}"), ["line 8", "params.wd"]),
    ("yaml-direction", "s.yaml", SPACE.replace("minimize", "sideways"), ["line 1", "'direction'"]),
    ("yaml-no-params", "s.yaml", "direction: minimize\n", ["'params'", "missing"]),
    ("yaml-list", "s.yaml", "- a\n- b\n", ["line 1", "mapping"]),
    ("yaml-empty", "s.yaml", "", ["line 1", "mapping"]),
    ("yaml-params-list", "s.yaml", "params: [lr, bs]\n", ["line 1", "'params'"]),
    ("yaml-python-tag", "s.yaml", "params: !!python/object/apply:os.system [echo]\n", ["line 1", "not valid YAML"]),
    ("yaml-many-bad-params", "s.yaml", "params:\n" + "".join(f"  p{i}: {{type: float, low: 2, high: 1}}\n" for i in range(20_000)),
     ["line 2", "more"]),
    ("yaml-latin1", "s.yaml", SPACE.encode() + b"  caf\xe9: {type: float, low: 0, high: 1}\n", ["line 8", "not UTF-8"]),
    ("yaml-binary", "s.yaml", bytes(range(256)) * 4, ["not UTF-8"]),
    ("yaml-nul", "s.yaml", SPACE.encode() + b"\x00\n", ["s.yaml"]),
    ("json-invalid", "s.json", '{"params": {"lr": }', ["line 1", "not valid JSON"]),
    ("json-nested-100k", "s.json", "[" * 100_000, ["nested too deeply"]),
    ("json-duplicate-key", "s.json", '{"params": {}, "params": {}}', ["'params' appears twice"]),
    ("json-int-5001-digits", "s.json", '{"params": {"d": {"type": "int", "low": 1, "high": ' + "9" * 5001 + "}}}",
     ["params.d.high", "too large"]),
    ("json-latin1", "s.json", b'{"params": {"caf\xe9": {"type": "float", "low": 0, "high": 1}}}', ["line 1", "not UTF-8"]),
    ("json-low-above-high", "s.json", '{"params": {"lr": {"type": "float", "low": 2, "high": 1}}}', ["line 1", "swap them"]),
]
for cid, name, text, frags in SPACE_CASES:
    CASES.append(Case(f"space-{cid}", {name: text}, [name, *frags], args=["--space", "{" + name + "}"]))

# arguments and paths
CASES += [
    Case("space-missing-file", {}, ["nope.yaml", "cannot read"], args=["--space", "{dir}/nope.yaml"]),
    Case("space-is-a-directory", {}, ["cannot read"], args=["--space", "{dir}"]),
    Case("history-missing-file", {}, ["nope.jsonl", "cannot read"], args=["--space", "{space.yaml}", "--history", "{dir}/nope.jsonl",
                                                                        "--target", "n_params=1e9"]),
    Case("history-is-a-directory", {}, ["cannot read"], args=["--space", "{space.yaml}", "--history", "{dir}", "--target", "n_params=1e9"]),
    Case("history-without-target", {"h.jsonl": _jsonl()}, ["h.jsonl", "--target"], args=["--space", "{space.yaml}", "--history", "{h.jsonl}"]),
    Case("target-wrong-axis", {"h.jsonl": _jsonl()}, ["missing ['n_params']"],
         args=["--space", "{space.yaml}", "--history", "{h.jsonl}", "--target", "n_tokens=1e9"]),
    Case("target-not-a-number", {}, ["--target", "not a number"], args=["--space", "{space.yaml}", "--target", "n_params=big"]),
]


def _materialise(tmp: Path, case: Case) -> list[str]:
    (tmp / "space.yaml").write_text(SPACE)
    paths = {"dir": str(tmp), "space.yaml": str(tmp / "space.yaml")}
    for name, content in case.files.items():
        p = tmp / name
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_bytes(content.encode("utf-8", "surrogatepass"))
        paths[name] = str(p)
    if case.args:
        args = []
        for a in case.args:
            for key, val in paths.items():
                a = a.replace("{" + key + "}", val)
            args.append(a)
    else:
        (hist,) = case.files
        args = ["--space", paths["space.yaml"], "--history", paths[hist], "--target", "n_params=1e9"]
    return ["suggest", *args, "--agent", "classical", "--seed", "0"]


def _check_refusal(rc: int, out: str, err: str, fragments: list[str]) -> None:
    assert rc == 2, (rc, err[:500])
    assert out == ""
    assert "Traceback" not in err
    assert len(err) <= MAX_MESSAGE, (len(err), err[:300])
    assert err.count("\n") <= 2, err
    assert err.startswith("autollm-sampler: error: ")
    for frag in fragments:
        assert frag in err, (frag, err)


def test_the_table_is_large() -> None:
    assert len(CASES) >= 120
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_a_bounded_message(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = _materialise(tmp_path, case)
    rc = main(argv)
    out, err = capsys.readouterr()
    _check_refusal(rc, out, err, case.fragments)


@pytest.mark.parametrize("cid", ["space-yaml-alias-bomb", "jsonl-binary", "record-nested-100k-lists"])
def test_bad_input_in_a_real_process(cid: str, tmp_path: Path) -> None:
    case = next(c for c in CASES if c.id == cid)
    argv = _materialise(tmp_path, case)
    res = subprocess.run([sys.executable, "-m", "autollm_sampler.cli", *argv], capture_output=True, text=True, timeout=120)
    _check_refusal(res.returncode, res.stdout, res.stderr, case.fragments)


# ------------------------------------------------------------------ valid edge cases
def _target_line(params: dict | None = None, **top: object) -> str:
    return json.dumps({"params": GOOD if params is None else params, "value": 2.5, **top})


VALID: list[tuple[str, str, str | bytes]] = [
    ("u2028-in-a-string", "h.jsonl", GOOD_LINE + "\n" + _line(id="run\u2028two", attrs={"note": "a\u2028b\u0085c"}) .replace("\\u2028", "\u2028").replace("\\u0085", "\u0085") + "\n"),
    ("crlf-lines", "h.jsonl", GOOD_LINE + "\r\n" + _line(id=7) + "\r\n"),
    ("utf8-bom", "h.jsonl", "\ufeff" + GOOD_LINE + "\n"),
    ("blank-lines", "h.jsonl", "\n  \n" + GOOD_LINE + "\n\n\t\n"),
    ("empty-file", "h.jsonl", ""),
    ("nan-value-is-failed", "h.jsonl", _jsonl(_line(value=None).replace('"value": null', '"value": NaN'))),
    ("inf-value-is-failed", "h.jsonl", _jsonl(_line().replace('"value": 3.0', '"value": Infinity'))),
    ("fidelity-as-numeric-text", "h.jsonl", _jsonl(_line(fidelity={"n_params": "1e8"}))),
    ("cheap-lr-out-of-range", "h.jsonl", _jsonl(_line(_with("learning_rate", 0.5)))),
    ("cheap-warmup-off-grid", "h.jsonl", _jsonl(_line(_with("warmup_steps", 150)))),
    ("cheap-bs-between-choices", "h.jsonl", _jsonl(_line(_with("batch_size", 96)))),
    ("cheap-missing-param", "h.jsonl", _jsonl(_line(_without("mix")))),
    ("cheap-huge-representable-number", "h.jsonl", _jsonl(_line(_with("learning_rate", 1e300)))),
    ("mix-within-tolerance", "h.jsonl", _jsonl(_line(_with("mix", {"web": 0.5, "code": 0.3, "books": 0.2005})),
                                                _target_line(_with("mix", {"web": 0.5, "code": 0.5004})))),
    ("mix-missing-component", "h.jsonl", _jsonl(_target_line(_with("mix", {"web": 1.0})))),
    ("target-integral-float", "h.jsonl", _jsonl(_target_line(_with("warmup_steps", 300.0)))),
    ("target-trial", "h.jsonl", _jsonl(_target_line())),
    ("failed-without-value", "h.jsonl", _jsonl(_line(state="failed").replace(', "value": 3.0', ""))),
    ("csv-mixture-columns", "h.csv", _csv("0.01,300,64,lion,0.2,0.2,0.6,1e8,3.3")),
    ("csv-nan-value-is-failed", "h.csv", _csv("0.01,300,64,lion,0.2,0.2,0.6,1e8,nan")),
    ("csv-blank-and-empty-rows", "h.csv", _csv("", ",,,,,,,,", "0.01,300,64,lion,0.2,0.2,0.6,1e8,3.3")),
    ("csv-crlf", "h.csv", _csv("0.01,300,64,lion,0.2,0.2,0.6,1e8,3.3").replace("\n", "\r\n")),
    ("csv-missing-component-cell", "h.csv", _csv("0.01,300,64,lion,,0.4,0.6,1e8,3.3")),
    ("json-document", "h.json", json.dumps({"fidelity_axes": ["n_params"], "trials": [json.loads(GOOD_LINE)]})),
]


@pytest.mark.parametrize(("cid", "name", "content"), VALID, ids=[v[0] for v in VALID])
def test_valid_edge_cases_exit_0(cid: str, name: str, content: str | bytes, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    case = Case(cid, {name: content}, [])
    rc = main(_materialise(tmp_path, case))
    out, err = capsys.readouterr()
    assert rc == 0, err[:800]
    (prop,) = json.loads(out)
    assert set(prop["params"]) == set(GOOD)


def test_a_nan_value_is_recorded_as_failed_not_best(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # the NaN trial would be the best by far if its value were read as a number; it must count as failed
    h = tmp_path / "h.jsonl"
    h.write_text(GOOD_LINE + "\n" + _line(_with("learning_rate", 0.05)).replace('"value": 3.0', '"value": NaN') + "\n")
    (tmp_path / "space.yaml").write_text(SPACE)
    rc = main(["explain", "--space", str(tmp_path / "space.yaml"), "--history", str(h), "--target", "n_params=1e9",
               "--agent", "classical"])
    out, _ = capsys.readouterr()
    assert rc == 0
    assert "2 runs (1 complete, 1 failed)" in out


def test_yaml_anchors_without_aliases_are_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = tmp_path / "s.yaml"
    s.write_text(SPACE.replace("learning_rate: {", "learning_rate: &lr {"))
    rc = main(["suggest", "--space", str(s), "--agent", "classical", "--seed", "0"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert set(json.loads(out)[0]["params"]) == set(GOOD)
