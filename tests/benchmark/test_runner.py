"""The runner: planning (fixed seeds, deterministic methods once, skips with reasons) and resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autollm_sampler import gym
from autollm_sampler.benchmark import _runner
from autollm_sampler.benchmark._runner import (
    CACHE_NAME,
    BenchConfig,
    EpisodeSpec,
    load_cache,
    plan_episodes,
    run_benchmark,
    run_episode,
)
from autollm_sampler.exceptions import ConfigError

pytestmark = pytest.mark.usefixtures("raw_dir")


def test_plan_uses_fixed_seeds_and_runs_deterministic_methods_once(tmp_path: Path) -> None:
    cfg = BenchConfig(families=["steplaw-dense-v1"], methods=["random", "transfer", "tpe-warm", "sh"], seeds=3,
                      out=tmp_path)
    plan = plan_episodes(cfg)
    n_targets = len(gym.experiments(gym.make("steplaw-dense-v1"), "test"))
    by = {}
    for e in plan.episodes:
        by.setdefault((e.setting, e.history, e.method), []).append(e)
    # random ignores the history: one set of Setting-A episodes, shared by the full and sparse tables
    assert len(by[("A", "-", "random")]) == 3 * n_targets
    assert ("A", "full", "random") not in by
    # transfer is deterministic: once per target on the full history, every seed on sparse histories
    assert len(by[("A", "full", "transfer")]) == n_targets
    assert len(by[("A", "sparse", "transfer")]) == 3 * n_targets
    assert {e.seed for e in by[("A", "sparse", "tpe-warm")]} == {0, 1, 2}
    assert len(by[("B", "none", "sh")]) == 3 * n_targets
    assert not any(e.method == "sh" and e.setting == "A" for e in plan.episodes)
    assert any(s.method == "sh" and "Setting B" in s.reason for s in plan.skipped)


def test_plan_skips_with_reasons(tmp_path: Path) -> None:
    plan = plan_episodes(BenchConfig(families=["admire-ift-v1"], methods=["steplaw-rule", "agent-distilled",
                                                                         "agent-llm"], seeds=1, out=tmp_path))
    reasons: dict[str, str] = {}
    for s in plan.skipped:
        reasons[s.method] = reasons.get(s.method, "") + s.reason + "; "
    assert "Step Law families only" in reasons["steplaw-rule"]
    assert "AUTOLLM_BENCH_LLM_AGENT" in reasons["agent-llm"]
    from autollm_sampler.agent import DEFAULT_CHECKPOINT

    distilled_shipped = (DEFAULT_CHECKPOINT.parent / "distilled" / "model.safetensors").is_file()
    if distilled_shipped:  # the ablation runs; only it has episodes
        assert "agent-distilled" not in reasons
        assert plan.episodes and {e.method for e in plan.episodes} == {"agent-distilled"}
    else:
        assert "distilled" in reasons["agent-distilled"]
        assert not plan.episodes


def test_bad_config_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="seeds"):
        BenchConfig(seeds=0)
    with pytest.raises(ConfigError, match="unknown family or task 'nope'"):
        plan_episodes(BenchConfig(families=["nope"], out=tmp_path))
    with pytest.raises(ValueError, match="unknown method"):
        plan_episodes(BenchConfig(families=["steplaw-dense-v1"], methods=["bogus"], out=tmp_path))


def test_full_history_shortcut_matches_the_env() -> None:
    task = gym.make("steplaw-moe-v1")
    exp = gym.experiments(task, "test")[1]
    spec = EpisodeSpec("A", "full", task.id, "steplaw-moe", exp.target, exp.history_cells, "transfer", 0)
    env = gym.LLMConfigEnv(task, exp.target, history="full", history_cells=list(exp.history_cells))
    obs, _ = env.reset(seed=0)
    shared = _runner._full_history(task, spec)
    assert [(t.attrs["cell"], t.attrs["row"], t.value) for t in shared] == [
        (t.attrs["cell"], t.attrs["row"], t.value) for t in obs.history.trials
    ]


def _record_runs(monkeypatch: pytest.MonkeyPatch, field: str) -> list[str]:
    """The ``field`` (key or method) of every episode the runner runs from now on, in order."""
    ran: list[str] = []
    real = _runner.run_episode

    def counting(spec: EpisodeSpec, policy: object = None) -> dict[str, object]:
        ran.append(getattr(spec, field))
        return real(spec)

    monkeypatch.setattr(_runner, "run_episode", counting)
    return ran


def test_resume_runs_only_missing_episodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = BenchConfig(families=["steplaw-moe-v1"], methods=["random", "transfer"], settings=("A",),
                      histories=("full",), seeds=2, out=tmp_path, workers=1)
    records, errors = run_benchmark(cfg, progress=False)
    assert not errors and len(records) == len(plan_episodes(cfg).episodes)
    cache = tmp_path / CACHE_NAME
    lines = cache.read_text().splitlines()
    assert len(lines) == len(records)

    ran = _record_runs(monkeypatch, "key")
    again, _ = run_benchmark(cfg, progress=False)
    assert ran == [] and [r["key"] for r in again] == [r["key"] for r in records]

    # drop one finished episode and cut the last line short (an interrupted run): only that one reruns
    dropped = json.loads(lines[0])["key"]
    cache.write_text("\n".join(lines[1:]) + "\n" + lines[0][:25])
    again, _ = run_benchmark(cfg, progress=False)
    assert ran == [dropped]
    assert {r["key"] for r in again} == {r["key"] for r in records}
    assert len(load_cache(cache)) == len(records)


def test_an_agents_cached_episodes_are_rerun_when_its_checkpoint_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autollm_sampler.agent._model import AgentModelConfig, TransformerAgent

    tiny = AgentModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=16)
    ckpt = TransformerAgent.from_config(tiny, seed=0).save(tmp_path / "ckpt")
    cfg = BenchConfig(families=["steplaw-moe-v1"], methods=[f"agent:{ckpt}", "transfer"], settings=("A",),
                      histories=("full",), seeds=1, out=tmp_path / "out", workers=1)
    first, errors = run_benchmark(cfg, progress=False)
    assert not errors and {r["method"] for r in first} == {f"agent:{ckpt}", "transfer"}
    assert all(len(r["fp"]) == 16 for r in first)
    ran = _record_runs(monkeypatch, "method")
    run_benchmark(cfg, progress=False)
    assert ran == []  # same checkpoint: every episode comes from the cache
    TransformerAgent.from_config(tiny, seed=1).save(ckpt)  # retrained in place
    again, _ = run_benchmark(cfg, progress=False)
    n_agent = sum(r["method"] != "transfer" for r in first)
    assert ran == [f"agent:{ckpt}"] * n_agent  # only the agent's episodes reran; transfer's were kept
    assert {r["fp"] for r in again if r["method"] != "transfer"} != {r["fp"] for r in first if r["method"] != "transfer"}
    # and they ran with the new weights (the process had the old checkpoint loaded)
    preds = lambda recs: [s["pred"] for r in recs if r["method"] != "transfer" for s in r["steps"]]  # noqa: E731
    assert preds(again) != preds(first)


def test_cached_episodes_are_rerun_when_the_librarys_code_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autollm_sampler.benchmark import _methods

    cfg = BenchConfig(families=["steplaw-moe-v1"], methods=["transfer", "agent-extrap"], settings=("A",),
                      histories=("full",), seeds=1, out=tmp_path / "out", workers=1)
    first, errors = run_benchmark(cfg, progress=False)
    assert not errors and first
    ran = _record_runs(monkeypatch, "method")
    run_benchmark(cfg, progress=False)
    assert ran == []  # same code: every episode comes from the cache
    monkeypatch.setattr(_methods, "_CODE_FP", ["another version of the code"])  # e.g. an edited adaptation step
    again, _ = run_benchmark(cfg, progress=False)
    assert sorted(ran) == sorted(r["method"] for r in first)  # every episode ran again
    assert {r["fp"] for r in again}.isdisjoint({r["fp"] for r in first})


def test_parallel_workers_give_the_same_records(tmp_path: Path) -> None:
    common = dict(families=["steplaw-moe-v1"], methods=["cmaes"], settings=("A",), histories=("full",), seeds=1)
    serial, _ = run_benchmark(BenchConfig(**common, out=tmp_path / "one", workers=1), progress=False)  # type: ignore[arg-type]
    parallel, _ = run_benchmark(BenchConfig(**common, out=tmp_path / "two", workers=2), progress=False)  # type: ignore[arg-type]
    assert [[s["row"] for s in r["steps"]] for r in serial] == [[s["row"] for s in r["steps"]] for r in parallel]


def test_episode_record_is_self_contained() -> None:
    task = gym.make("steplaw-moe-v1")
    exp = gym.experiments(task, "test")[0]
    rec = run_episode(EpisodeSpec("B", "none", task.id, "steplaw-moe", exp.target, exp.history_cells, "sh", 3))
    json.dumps(rec)
    cell = task.cell(exp.target)
    assert rec["optimum"] == cell.optimum and rec["p90"] == cell.p90 and rec["direction"] == "minimize"
    assert all("rec" in s for s in rec["steps"])


def test_fallbacks_are_counted_per_episode_and_reported() -> None:
    from autollm_sampler.agent._model import AgentModelConfig, TransformerAgent
    from autollm_sampler.benchmark._policies import AgentPolicy
    from autollm_sampler.benchmark._report import episode_metrics, fallback_lines

    task = gym.make("steplaw-moe-v1")
    exp = gym.experiments(task, "test")[0]
    spec = EpisodeSpec("A", "full", task.id, "steplaw-moe", exp.target, exp.history_cells, "agent", 0, 3)
    # a model too narrow for the 2-coordinate space: every proposal falls back by design (counted)
    narrow = TransformerAgent.from_config(AgentModelConfig(hidden_size=16, num_layers=1, num_heads=2,
                                                           intermediate_size=16, max_params=1))
    fell = run_episode(spec, AgentPolicy(agent=narrow, name="agent"))
    assert fell["fallbacks"] == len(fell["steps"]) == 3
    wide = TransformerAgent.from_config(AgentModelConfig(hidden_size=16, num_layers=1, num_heads=2,
                                                         intermediate_size=16))
    ok = run_episode(spec, AgentPolicy(agent=wide, name="agent"))
    assert ok["fallbacks"] == 0
    rows = [episode_metrics(fell), episode_metrics(ok), episode_metrics({**ok, "method": "old"} | {"fallbacks": None})]
    assert fallback_lines(rows) == ["agent: 3 of 6 proposals fell back", "old: not counted"]


def test_the_noadapt_ablation_switches_the_adaptation_off_per_policy() -> None:
    from autollm_sampler.agent._classical import ClassicalAgent
    from autollm_sampler.benchmark._methods import AGENT_METHODS, METHODS, make_policy
    from autollm_sampler.benchmark._policies import AgentPolicy

    assert "agent-noadapt" in METHODS and "agent-noadapt" in AGENT_METHODS
    task = gym.make("steplaw-moe-v1")
    exp = gym.experiments(task, "test")[0]
    spec = EpisodeSpec("A", "full", task.id, "steplaw-moe", exp.target, exp.history_cells, "agent", 0, 4)
    plain = make_policy("agent-noadapt")
    full = make_policy("agent")
    assert plain.adapt is False and full.adapt is True
    a = run_episode(spec, plain)
    assert plain.agent.adapt is False  # set on the shared agent before each proposal
    b = run_episode(spec, full)
    assert full.agent.adapt is True and a["fallbacks"] == b["fallbacks"] == 0
    # an agent without an adaptation step cannot run the ablation: said, not ignored
    with pytest.raises(TypeError, match="no adaptation step"):
        run_episode(spec, AgentPolicy(agent=ClassicalAgent(), name="x", adapt=False))


def test_agent_steps_record_the_prediction_of_their_outcome() -> None:
    task = gym.make("steplaw-moe-v1")
    exp = gym.experiments(task, "test")[0]
    spec = EpisodeSpec("A", "full", task.id, "steplaw-moe", exp.target, exp.history_cells, "agent", 0, 3)
    rec = run_episode(spec)
    preds = [s["pred"] for s in rec["steps"] if not (s["invalid"] or s["repeat"])]
    assert preds and all(len(p) == 2 and p[1] > 0 for p in preds)
    assert all("pred" not in s for s in run_episode(EpisodeSpec(**{**spec.__dict__, "method": "random"}))["steps"])
