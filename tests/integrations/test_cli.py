"""``autollm-sampler suggest`` / ``explain``: formats, output, and exit code 2 with file, line and field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autollm_sampler.cli import main

SPACE_YAML = """\
direction: minimize
params:
  lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
  batch_size:
    type: categorical
    choices: [64, 128, 256]
  mix: {type: simplex, components: [web, code]}
"""
HISTORY = [
    {"params": {"lr": 0.003, "batch_size": 128, "mix": {"web": 0.7, "code": 0.3}}, "fidelity": {"n_params": 1e8}, "value": 3.1},
    {"params": {"lr": 0.01, "batch_size": 64, "mix": {"web": 0.5, "code": 0.5}}, "fidelity": {"n_params": 1e8}, "value": 3.3},
    {"params": {"lr": 0.001, "batch_size": 256, "mix": {"web": 0.2, "code": 0.8}}, "fidelity": {"n_params": 1e8}, "state": "failed"},
]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "space.yaml").write_text(SPACE_YAML)
    import yaml

    (tmp_path / "space.json").write_text(json.dumps(yaml.safe_load(SPACE_YAML), indent=1))
    (tmp_path / "h.jsonl").write_text("\n".join(json.dumps(r) for r in HISTORY) + "\n")
    (tmp_path / "h.csv").write_text(
        "param:lr,batch_size,fidelity:n_params,value,state\n0.003,128,1e8,3.1,complete\n0.01,64,1e8,3.3,complete\n"
    )
    (tmp_path / "space_nomix.yaml").write_text("\n".join(SPACE_YAML.splitlines()[:-1]) + "\n")
    (tmp_path / "empty.jsonl").write_text("")
    return {p.name: p for p in tmp_path.iterdir()}


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_suggest_prints_a_json_list_of_proposals(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "suggest", "--space", str(files["space.yaml"]), "--history", str(files["h.jsonl"]),
                     "--target", "n_params=1e9", "-n", "2", "--seed", "0", "--agent", "classical")
    assert rc == 0
    props = json.loads(out)
    assert len(props) == 2
    for p in props:
        assert set(p) == {"params", "predicted_value", "predicted_std", "rationale"}
        assert set(p["params"]) == {"lr", "batch_size", "mix"} and sum(p["params"]["mix"].values()) == pytest.approx(1.0)
    # one cheaper cell: the classical agent has no trend to extrapolate, so no prediction for the target
    assert props[0]["params"]["lr"] == 0.003 and props[0]["predicted_value"] is None
    # reproducible with --seed, JSON space and CSV history accepted
    rc2, out2, _ = run(capsys, "suggest", "--space", str(files["space.json"]), "--history", str(files["h.jsonl"]),
                       "--target", "n_params=1e9", "-n", "2", "--seed", "0", "--agent", "classical")
    assert rc2 == 0 and json.loads(out2) == props
    rc3, out3, _ = run(capsys, "suggest", "--space", str(files["space_nomix.yaml"]), "--history", str(files["h.csv"]),
                       "--target", "n_params=1e9", "--agent", "classical")
    assert rc3 == 0 and json.loads(out3)[0]["params"] == {"lr": 0.003, "batch_size": 128}


def test_empty_or_no_history_is_valid(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    for extra in (["--history", str(files["empty.jsonl"])], []):
        rc, out, _ = run(capsys, "suggest", "--space", str(files["space.yaml"]), *extra, "--agent", "classical", "--seed", "1")
        assert rc == 0
        (p,) = json.loads(out)
        assert p["predicted_value"] is None and 1e-4 <= p["params"]["lr"] <= 0.1


def test_explain_prints_the_evidence_in_words(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, "explain", "--space", str(files["space.yaml"]), "--history", str(files["h.jsonl"]),
                     "--target", "n_params=1e9", "--agent", "classical")
    assert rc == 0
    assert "n_params=1e+08: 3 runs (2 complete, 1 failed); best 3.1 at lr=0.003" in out
    assert "Proposals for n_params=1e+09" in out and "why: Transferred" in out


BAD_CASES = [
    # (file name, content, other args, expected fragments)
    ("s.yaml", "params:\n  lr: {type: float, low: 1, high: [\n", None, ["s.yaml", "line 3", "not valid YAML"]),
    ("s.yaml", "params:\n  lr:\n    type: float\n    low: 1.0\n    high: abc\n", None, ["s.yaml", "line 5", "'params.lr.high'"]),
    ("s.json", '{"params": {"lr": {"type": "float", "low": 2, "high": 1}}}', None, ["s.json", "line 1", "'params.lr'", "swap them"]),
    ("s.json", '{"params": {"bs": {"type": "categorical",\n "choices": []}}}', None, ["s.json", "line 1", "'params.bs'", "choices is empty"]),
    ("s.yaml", "direction: sideways\nparams: {}\n", None, ["s.yaml", "line 1", "'direction'"]),
    ("h.jsonl", '{"params": {"lr": 0.003, "batch_size": 128}, "value": 3.1}\n{"params": {"lr": 0.003}, oops}\n',
     "history", ["h.jsonl", "line 2", "not valid JSON"]),
    ("h.jsonl", '\n{"params": {"lr": 0.003, "batch_size": 128}, "value": "abc"}\n', "history", ["h.jsonl", "line 2", "value"]),
    ("h.jsonl", '{"params": {"lr": 0.5, "batch_size": 128}, "value": 1.0}\n', "history", ["h.jsonl", "line 1", "'params.lr'", "outside"]),
    ("h.jsonl", '{"params": {"lr": 0.01, "batch_size": 128, "wd": 1}, "fidelity": {"n_params": 1e8}, "value": 1.0}\n',
     "history", ["h.jsonl", "line 1", "'params.wd'", "unknown parameter"]),
    ("h.jsonl", '{"params": {"lr": 0.01, "batch_size": 128}, "fidelity": {"n_params": 1e8}, "state": "complete"}\n',
     "history", ["h.jsonl", "line 1", "'value'", "complete trial needs a value"]),
    ("h.csv", "param:lr,batch_size,fidelity:n_params,value\n0.003,128,1e8,3.1\n0.002,128,1e8,abc\n",
     "history", ["h.csv", "line 3", "'value'"]),
]


@pytest.mark.parametrize(("name", "content", "kind", "fragments"), BAD_CASES)
def test_bad_files_exit_2_naming_file_line_and_field(
    tmp_path: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str], name: str, content: str, kind: str | None,
    fragments: list[str],
) -> None:
    bad = tmp_path / name
    bad.write_text(content)
    space = str(files["space_nomix.yaml"]) if kind == "history" else str(bad)
    args = ["suggest", "--space", space, "--agent", "classical", "--target", "n_params=1e9"]
    if kind == "history":
        args += ["--history", str(bad)]
    rc, out, err = run(capsys, *args)
    assert rc == 2 and out == ""
    for frag in fragments:
        assert frag in err, (frag, err)


def test_argument_errors_exit_2(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    base = ["suggest", "--space", str(files["space.yaml"]), "--agent", "classical"]
    rc, _, err = run(capsys, *base, "--history", str(files["h.jsonl"]))
    assert rc == 2 and "pass --target" in err
    rc, _, err = run(capsys, *base, "--history", str(files["h.jsonl"]), "--target", "n_tokens=1e9")
    assert rc == 2 and "missing ['n_params']" in err
    rc, _, err = run(capsys, *base, "--target", "n_params")
    assert rc == 2 and "AXIS=VALUE" in err
    rc, _, err = run(capsys, "suggest", "--space", str(files["space.yaml"]) + ".missing")
    assert rc == 2 and "space.yaml.missing" in err and "cannot read" in err


def test_installed_script_and_no_gym_import(files: dict[str, Path]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "autollm_sampler.cli", "suggest", "--space", str(files["space.yaml"]), "--history",
         str(files["h.jsonl"]), "--target", "n_params=1e9", "--agent", "classical"],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(out.stdout)[0]["params"]["lr"] == 0.003
    code = ("import sys, autollm_sampler.integrations.cli, autollm_sampler.integrations.asktell, "
            "autollm_sampler.integrations.optuna; print('autollm_sampler.gym' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "False"


def test_a_rounded_target_is_warned_about(files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          caplog: pytest.LogCaptureFixture) -> None:
    h = tmp_path / "near.jsonl"
    h.write_text('{"params": {"lr": 0.003, "batch_size": 128}, "fidelity": {"n_params": 1073741824}, "value": 2.2}\n')
    with caplog.at_level("WARNING", logger="autollm_sampler"):
        rc, _, _ = run(capsys, "suggest", "--space", str(files["space_nomix.yaml"]), "--history", str(h),
                       "--target", "n_params=1.07e9", "--agent", "classical")
    assert rc == 0
    assert any("within 1% of --target" in r.getMessage() for r in caplog.records)


def test_trials_without_fidelity_are_target_runs_for_the_agent(files: dict[str, Path], tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # the documented rule: a trial without fidelity is a target run; the agent must adapt to it as one
    target_runs = [{"params": {"lr": 0.002, "batch_size": 128, "mix": {"web": 0.6, "code": 0.4}}, "value": 2.9},
                   {"params": {"lr": 0.004, "batch_size": 64, "mix": {"web": 0.5, "code": 0.5}}, "value": 3.0}]
    plain, explicit = tmp_path / "plain.jsonl", tmp_path / "explicit.jsonl"
    plain.write_text("\n".join(json.dumps(r) for r in [*HISTORY, *target_runs]) + "\n")
    explicit.write_text("\n".join(json.dumps(r) for r in [*HISTORY, *({**r, "fidelity": {"n_params": 1e9}} for r in target_runs)]) + "\n")
    outs = []
    for h in (plain, explicit):
        rc, out, err = run(capsys, "suggest", "--space", str(files["space.yaml"]), "--history", str(h),
                           "--target", "n_params=1e9", "--seed", "3")
        assert rc == 0, err
        outs.append(json.loads(out))
    assert outs[0] == outs[1]
    assert "2 target runs completed so far" in outs[0][0]["rationale"]


def test_negative_seed_and_a_repeated_target_axis_exit_2(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:  # argparse's own error for a bad --seed
        main(["suggest", "--space", str(files["space.yaml"]), "--seed", "-1"])
    assert exc.value.code == 2 and "integer >= 0" in capsys.readouterr().err
    rc, out, err = run(capsys, "suggest", "--space", str(files["space.yaml"]), "--history", str(files["h.jsonl"]),
                       "--target", "n_params=7e9,n_params=1e9")
    assert rc == 2 and out == "" and "'n_params' is given twice" in err


@pytest.mark.parametrize(("space", "n_distinct"), [
    ("params:\n  a: {type: float, low: 0, high: 1}\n  b: {type: float, low: 0, high: 1}\n", 400),
    ("params:\n  a: {type: int, low: 0, high: 29}\n  b: {type: int, low: 0, high: 19}\n", 400),  # 600 points
    ("params:\n  a: {type: int, low: 0, high: 9}\n  b: {type: categorical, choices: [x, y]}\n", 20),  # 20 points
])
def test_large_batches_are_distinct_where_the_space_allows(space: str, n_distinct: int, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "s.yaml").write_text(space)
    rc, out, err = run(capsys, "suggest", "--space", str(tmp_path / "s.yaml"), "-n", "400", "--seed", "0")
    assert rc == 0, err
    props = json.loads(out)
    assert len(props) == 400
    assert len({json.dumps(p["params"], sort_keys=True) for p in props}) == n_distinct


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from autollm_sampler import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"autollm-sampler {__version__}"


def test_help_is_plain_text_and_names_every_role(capsys: pytest.CaptureFixture[str]) -> None:
    from autollm_sampler.space import ROLES

    for cmd in ("suggest", "explain"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        out = capsys.readouterr().out
        assert "``" not in out and ":class:" not in out
        if cmd == "suggest":
            assert '"role": ROLE' in out and all(r in out for r in ROLES)
        else:
            assert "same files and options as `suggest`" in " ".join(out.split())


@pytest.mark.parametrize("cmd", [[], ["suggest"], ["explain"], ["bench"], ["gym"], ["gym", "list"], ["gym", "info"],
                                 ["gym", "fetch"], ["gym", "rollout"]])
def test_every_help_is_free_of_rst_markup(cmd: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*cmd, "--help"])
    out = capsys.readouterr().out
    assert exc.value.code == 0 and out.startswith("usage: autollm-sampler")
    for markup in ("``", ":class:", ":func:", ":meth:", ":mod:", ":data:", "\n.. ", "::\n"):
        assert markup not in out, (cmd, markup)


def test_output_folders_default_to_one_folder_under_the_working_directory() -> None:
    """``bench --out`` and the standalone latency benchmark write to ./bench-results unless told otherwise (the
    latency one used to default to docs/benchmarks, the project's published tables)."""
    import argparse

    from autollm_sampler.benchmark import latency
    from autollm_sampler.benchmark._cli import add_parser

    bench = add_parser(argparse.ArgumentParser().add_subparsers())
    lat = argparse.ArgumentParser()
    latency.add_latency_arguments(lat)
    assert bench.parse_args([]).out == lat.parse_args([]).out == "bench-results"


def test_verbose_after_the_subcommand_logs(files: dict[str, Path]) -> None:
    # a fresh process, so the root logger is configured as a user's shell would have it
    argv = [sys.executable, "-m", "autollm_sampler.cli", "suggest", "--space", str(files["space.yaml"]),
            "--history", str(files["h.jsonl"]), "--target", "n_params=1e9", "--agent", "classical"]
    quiet = subprocess.run(argv, capture_output=True, text=True, check=True)
    loud = subprocess.run([*argv, "-v"], capture_output=True, text=True, check=True)
    assert "INFO" not in quiet.stderr
    assert "Parameter roles: lr -> lr" in loud.stderr and "History: 3 trials" in loud.stderr
    assert json.loads(loud.stdout) and json.loads(quiet.stdout)


def test_explain_shows_the_roles_and_where_they_came_from(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--space", str(files["space.yaml"]), "--history", str(files["h.jsonl"]),
                 "--target", "n_params=1e9"]) == 0
    out = capsys.readouterr().out
    assert "Parameter roles: lr -> lr (from the name); batch_size -> batch_size (from the name); mix -> mixture" in out
