"""``autollm-sampler gym ...`` through the real top-level entry point."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autollm_sampler.cli import main

Capture = pytest.CaptureFixture[str]


def test_gym_list_prints_the_five_tasks_with_counts(raw_dir: Path, capsys: Capture) -> None:
    assert main(["gym", "list"]) == 0
    out = capsys.readouterr().out
    expected = {
        "steplaw-dense-v1": (17, 1911, "smooth loss"),
        "steplaw-moe-v1": (16, 708, "smooth loss"),
        "admire-ift-v1": (3, 460, "metric_avg_id+ood"),
        "regmix-v1": (3, 1088, "metric/the_pile_pile_cc_val_loss"),
        "hwgpt-arch-v1": (3, 6000, "perplexity"),
    }
    for tid, (cells, rows, objective) in expected.items():
        line = next(ln for ln in out.splitlines() if ln.startswith(tid + " "))
        assert re.search(rf"\b{cells}\s+{rows}\s+{re.escape(objective)}\b", line), line
    assert "CC BY-NC-SA 4.0" in out and "MIT" in out and "Apache-2.0" in out


def test_gym_list_without_raw_data_still_lists(tmp_path: Path, capsys: Capture) -> None:
    assert main(["gym", "list", "--raw-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "hwgpt-arch-v1" in out and "6000" in out and "raw data missing" in out and "gym fetch" in out
    # licences come from the manifest, so they show without the raw files
    assert "CC BY-NC-SA 4.0" in out and "MIT" in out and "Apache-2.0" in out


def test_gym_info(raw_dir: Path, capsys: Capture) -> None:
    assert main(["gym", "info", "regmix-v1"]) == 0
    out = capsys.readouterr().out
    assert "1088 rows in 3 cells" in out and "MIT" in out and "arXiv:2407.01492" in out
    assert "test  target 1B  (history: 1M, 60M)" in out and "train target 60M  (history: 1M)" in out
    assert "mixture: simplex over 17 components" in out
    assert main(["gym", "info", "admire-ift-v1", "--objective", "metric_avg_ood"]) == 0
    assert "metric_avg_ood (maximize)" in capsys.readouterr().out


@pytest.mark.parametrize(("setting", "history"), [("A", "full"), ("A", "sparse"), ("B", "full")])
@pytest.mark.parametrize("policy", ["random", "transfer"])
def test_gym_rollout_prints_steps_and_regret(setting: str, history: str, policy: str, raw_dir: Path,
                                             capsys: Capture) -> None:
    argv = ["gym", "rollout", "admire-ift-v1", "--policy", policy, "--target", "7B", "--seed", "3",
            "--setting", setting, "--history", history, "--budget", "4"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"target=7B  setting={setting}  history={history}  policy={policy}  seed=3" in out
    step_lines = [ln for ln in out.splitlines() if re.match(r"^\d+\s+(0\.5B|3B|7B)\s", ln)]
    assert step_lines and ("regret" in out) and re.search(r"final: best .* regret \d\.\d{4}", out)
    if setting == "A":
        assert len(step_lines) == 4
    else:
        assert "recommendation: value" in out


def test_gym_rollout_show_config_and_default_target(raw_dir: Path, capsys: Capture) -> None:
    assert main(["gym", "rollout", "steplaw-dense-v1", "--budget", "2", "--show-config"]) == 0
    out = capsys.readouterr().out
    assert "target=N=537M,D=10B" in out and '"lr":' in out and '"batch_size":' in out


def test_gym_rollout_is_reproducible(raw_dir: Path, capsys: Capture) -> None:
    argv = ["gym", "rollout", "regmix-v1", "--policy", "random", "--target", "1B", "--seed", "5", "--budget", "3"]
    main(argv)
    first = capsys.readouterr().out
    main(argv)
    assert capsys.readouterr().out == first


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["gym", "info", "regmix-v2"], "Did you mean 'regmix-v1'?"),
        (["gym", "rollout", "admire-ift-v2", "--policy", "random", "--target", "7B"], "Did you mean 'admire-ift-v1'?"),
        (["gym", "rollout", "regmix-v1", "--target", "2B"], "no cell '2B'; did you mean '1B'?"),
        (["gym", "rollout", "regmix-v1", "--budget", "0"], "--budget must be >= 1"),
        (["gym", "rollout", "regmix-v1", "--policy", "agnet"], "--policy: unknown method 'agnet'; choose from"),
        (["gym", "info", "steplaw-dense-v1", "--objective", "loss"], "fixed objective"),
        (["gym", "info", "regmix-v1", "--objective", "pile_cc"], "did you mean 'metric/the_pile_pile_cc_val_loss'"),
    ],
)
def test_gym_errors_exit_2_with_a_message(argv: list[str], needle: str, raw_dir: Path, capsys: Capture) -> None:
    assert main(argv) == 2
    assert needle in capsys.readouterr().err


def test_missing_raw_data_exits_2_naming_the_fix(tmp_path: Path, capsys: Capture) -> None:
    assert main(["gym", "info", "admire-ift-v1", "--raw-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "admire_ift_runs" in err and "autollm-sampler gym fetch" in err


def test_an_unknown_policy_is_refused_listing_the_known_ones(raw_dir: Path, capsys: Capture) -> None:
    assert main(["gym", "rollout", "regmix-v1", "--policy", "oracle"]) == 2
    err = capsys.readouterr().err
    assert "unknown method 'oracle'" in err and "'transfer'" in err and "'agent'" in err


def test_bare_gym_prints_help(capsys: Capture) -> None:
    assert main(["gym"]) == 2
    assert "rollout" in capsys.readouterr().out


def test_gym_rollout_runs_the_agent(raw_dir: Path, capsys: Capture) -> None:
    # the agent is a benchmark method, offered to the gym CLI by the benchmark layer
    assert main(["gym", "rollout", "steplaw-moe-v1", "--policy", "agent", "--budget", "3", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "policy=agent" in out and out.count("\n") >= 6 and "final: best" in out


def test_bench_help_lists_every_method(capsys: Capture) -> None:
    from autollm_sampler.benchmark._methods import METHODS

    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    assert "methods:" in out and all(f"  {m} " in out for m in METHODS) and "(default: ./bench-" in out
