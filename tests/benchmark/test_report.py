"""Per-episode metrics from records, the rendered report, the CLI and the latency benchmark."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from autollm_sampler.benchmark._report import episode_metrics, headline_text, write_report
from autollm_sampler.benchmark._runner import BenchConfig, plan_episodes, run_benchmark
from autollm_sampler.cli import main


def _record(setting: str, steps: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"setting": setting, "history": "full" if setting == "A" else "none", "family": "toy", "task_id": "toy-v1",
            "target": "T", "method": "m", "seed": 0, "direction": "minimize", "optimum": 2.0, "p90": 2.2,
            "target_cost": 10.0, "steps": steps, **extra}


def test_episode_metrics_setting_a_by_hand() -> None:
    steps = [{"cell": "T", "target": True, "row": i, "value": v, "cost": 10.0, "invalid": i == 0, "repeat": False}
             for i, v in enumerate([2.2, 2.02, 2.0])]
    m = episode_metrics(_record("A", steps))
    assert m["gap_k1"] == pytest.approx(10.0) and m["regret_k1"] == pytest.approx(1.0)
    assert m["gap_k2"] == pytest.approx(1.0) and m["regret_k2"] == pytest.approx(0.1)
    assert m["gap_k3"] == 0.0 and m["hit_k3"] == 1.0 and m["hit_k2"] == 0.0
    assert m["gap_k10"] == 0.0  # the episode ended: the best so far carries over
    assert m["cost_to_1pct"] == pytest.approx(2.0) and m["cost_to_0.25pct"] == pytest.approx(3.0)
    assert m["invalid_rate"] == pytest.approx(1 / 3)


def test_episode_metrics_setting_b_by_hand() -> None:
    steps = [
        {"cell": "cheap", "target": False, "row": 0, "value": 3.0, "cost": 5.0, "invalid": False, "rec": 2.02},
        {"cell": "T", "target": True, "row": 1, "value": 2.0, "cost": 10.0, "invalid": False, "rec": 2.0},
    ]
    m = episode_metrics(_record("B", steps, rec0=2.2, final=2.0))
    assert m["gap_k1"] == pytest.approx(1.0)  # after 0.5 target-run equivalents: the cheap run's pick
    assert m["gap_k2"] == 0.0 and m["final_gap"] == 0.0 and m["final_hit"] == 1.0
    assert m["cost_to_1pct"] == pytest.approx(0.5) and m["cost_to_0.25pct"] == pytest.approx(1.5)
    assert m["cost_spent"] == pytest.approx(1.5)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory, raw_dir: Path) -> tuple[Path, list[dict[str, Any]], Any]:
    out = tmp_path_factory.mktemp("bench")
    cfg = BenchConfig(families=["steplaw-dense-v1"], methods=["random", "transfer", "steplaw-rule", "sh"], seeds=2,
                      out=out, workers=1, budget=5)
    plan = plan_episodes(cfg)
    records, errors = run_benchmark(cfg, plan=plan, progress=False)
    assert not errors
    return out, records, plan


def test_report_renders_tables_plots_and_csv(small_run: tuple[Path, list[dict[str, Any]], Any]) -> None:
    out, records, plan = small_run
    summ, notes = write_report(records, out, meta={"command": "autollm-sampler bench --test", "workers": 1,
                                                   "seeds": 2}, skipped=plan.skipped)
    assert notes == []
    text = (out / "RESULTS.md").read_text()
    for needle in ("autollm-sampler bench --test", "## Headline", "## Average rank", "Published anchors",
                   "Setting A (transfer), full", "Setting A (transfer), sparse", "Setting B", "### steplaw-dense-v1",
                   "gap % k=1", "| steplaw-rule |", "**", "![regret_vs_k_A_full.png](regret_vs_k_A_full.png)",
                   "Machine:", "Date:"):
        assert needle in text, needle
    for png in ("regret_vs_k_A_full.png", "regret_vs_k_A_sparse.png", "regret_vs_cost_B.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with open(out / "episodes.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(records)
    assert {"gap_k1", "regret_k10", "hit_k5", "cost_to_1pct", "invalid_rate"} <= set(rows[0])
    # transfer and the rule are deterministic on the full history: zero-width intervals
    ci = summ.get("A-full", "steplaw-dense-v1", "transfer", "gap_k1")
    assert ci is not None and ci.low == ci.high == ci.estimate
    assert "not run" in headline_text(summ)  # no agent in this run


def test_cli_bench_and_resume(tmp_path: Path, raw_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "--families", "steplaw-moe-v1", "--methods", "random", "steplaw-rule", "--seeds", "1",
            "--setting", "A", "--history", "full", "--out", str(tmp_path), "--workers", "1", "--no-plots"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "wrote" in first and (tmp_path / "RESULTS.md").is_file()
    assert main(argv) == 0  # resumed: nothing left to run, the report is rewritten
    text = (tmp_path / "RESULTS.md").read_text()
    assert "--families steplaw-moe-v1 --methods random steplaw-rule" in text
    assert main(["bench", "--families", "steplaw-moe-v1", "--plan", "--out", str(tmp_path)]) == 0
    assert "episodes on steplaw-moe-v1" in capsys.readouterr().out


def test_latency_benchmark_writes_ratios_to_tpe(tmp_path: Path, raw_dir: Path) -> None:
    argv = ["bench", "--latency", "--methods", "random", "transfer", "--sizes", "10", "--repeats", "1",
            "--out", str(tmp_path)]
    assert main(argv) == 0
    text = (tmp_path / "LATENCY.md").read_text()
    assert "| tpe | " in text and "(1×)" in text and "| transfer | " in text and "n=10" in text


def test_cli_bench_unknown_method_is_one_clean_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--methods", "classical", "--plan", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("autollm-sampler: error: unknown method 'classical'") and "tpe-warm" in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_coverage_table_counts_outcomes_inside_the_80_percent_interval() -> None:
    from autollm_sampler.benchmark._report import coverage_table

    steps = [{"value": 1.0, "pred": [1.0, 0.1], "target": True},   # inside
             {"value": 1.2, "pred": [1.0, 0.1], "target": True},   # 2 std out
             {"value": 1.1, "pred": [1.0, 0.1], "target": True},   # 1 std: inside
             {"value": 9.0, "target": True},                        # no prediction: not counted
             {"value": 5.0, "pred": [1.0, 0.1], "target": False}]  # a cheap run: not counted
    recs = [{"method": "agent", "setting": "A", "history": "full", "task_id": "t", "steps": steps}]
    assert coverage_table(recs)[2] == "| agent | A-full | t | 67% | 3 |"
    assert coverage_table([{**recs[0], "steps": steps[3:4]}]) == []


def test_steplaw_anchors_leave_out_missing_data_but_raise_a_bug_in_strict_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    from autollm_sampler.benchmark import _report
    from autollm_sampler.exceptions import RawDataError

    rows = [{"task_id": "steplaw-dense-v1", "setting": "A", "history": "full", "method": "agent", "gap_k1": 0.1,
             "gap_k5": 0.0}]

    def missing() -> None:
        raise RawDataError("no raw files here")

    def bug() -> None:
        raise TypeError("a bug")

    monkeypatch.setattr(_report, "_rule_anchor_gaps", missing)
    out = _report.steplaw_anchors(rows)
    assert out is not None and any("n/a (RawDataError)" in cell for row in out for cell in row)
    monkeypatch.setattr(_report, "_rule_anchor_gaps", bug)
    monkeypatch.setenv("AUTOLLM_STRICT", "1")
    with pytest.raises(TypeError, match="a bug"):
        _report.steplaw_anchors(rows)
