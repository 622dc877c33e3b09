"""The whole training pipeline on ``training/configs/tiny.yaml``: four stages, export, resume, load, propose.

It checks that the stages run and produce a loadable checkpoint that proposes valid configurations, not
quality (the tiny config trains for seconds).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from autollm_sampler import gym
from autollm_sampler.agent import load_agent
from autollm_sampler.agent._model import TransformerAgent
from training import pipeline
from training.config import PipelineConfig, load_config
from training.curate import ExperimentSpec, materialize
from training.evaluate import AgentGymPolicy
from training.simulate import label_state, load_states, query_rows, save_states
from training.synthetic import make_synthetic

TINY_YAML = Path(__file__).resolve().parents[2] / "training" / "configs" / "tiny.yaml"
CKPT_FILES = ("model.safetensors", "config.json", "manifest.json")
STAGE_OUTPUTS = ("config.json", "curate.json", "states.pt", "simulate.json", "distill.json", "distilled",
                 "rl.json", "final", "summary.json")
WATCHED = ("curate.json", "states.pt", "distilled/model.safetensors", "final/model.safetensors")


@dataclass
class Run:
    cfg: PipelineConfig
    summary: dict[str, Any]
    wall_s: float
    mtimes: dict[str, int]


def _mtimes(out: Path) -> dict[str, int]:
    return {name: (out / name).stat().st_mtime_ns for name in WATCHED}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, raw_dir: Path) -> Run:
    base = tmp_path_factory.mktemp("tiny")
    cfg = load_config(TINY_YAML, out_dir=str(base / "run"), export_dir=str(base / "export" / "final"),
                      export_distilled_dir=str(base / "export" / "distilled"), raw_dir=str(raw_dir))
    t0 = time.perf_counter()
    summary = pipeline.run(cfg, progress=False)
    return Run(cfg, summary, time.perf_counter() - t0, _mtimes(cfg.out))


def test_every_stage_writes_its_output(tiny_run: Run) -> None:
    out = tiny_run.cfg.out
    for name in STAGE_OUTPUTS:
        assert (out / name).exists(), f"missing stage output {name}"
    for ckpt in ("distilled", "final"):
        assert sorted(p.name for p in (out / ckpt).iterdir()) == sorted(CKPT_FILES)
    assert set(tiny_run.summary["minutes_by_stage"]) == {"curate", "simulate", "distill", "rl"}
    assert json.loads((out / "summary.json").read_text()) == tiny_run.summary
    assert json.loads((out / "config.json").read_text())["name"] == "tiny"


def test_stage_outputs_are_consistent(tiny_run: Run) -> None:
    out, cfg = tiny_run.cfg.out, tiny_run.cfg
    curated = json.loads((out / "curate.json").read_text())
    assert curated["synthetic"] == cfg.curate.synthetic_tasks and curated["real"] > 0
    task = gym.make("steplaw-dense-v1", raw_dir=cfg.raw_dir)
    for exp in curated["experiments"]:
        if exp["source"] == "steplaw-dense-v1":
            assert not gym.is_test_target(task, exp["target"])
    states = load_states(str(out / "states.pt"))
    assert len(states) == json.loads((out / "simulate.json").read_text())["states"] > 0
    assert {"ctx_dims", "q_dims", "roles", "y", "quantile", "untried", "expert"} <= set(states[0])
    for s in states:
        legal = s["untried"] > 0
        assert torch.all(s["expert"][~legal] == 0)
        assert float(s["expert"].sum()) == pytest.approx(1.0, abs=1e-4) or not legal.any()
    distill = json.loads((out / "distill.json").read_text())
    assert distill["steps"] >= 1 and set(distill["before"]) == {"policy", "value", "chosen_quantile"}
    rl = json.loads((out / "rl.json").read_text())
    assert rl["iterations"] == cfg.rl.iterations
    meta = {c: json.loads((out / c / "manifest.json").read_text())["meta"] for c in ("distilled", "final")}
    assert meta["distilled"]["stage"] == "distilled" and meta["final"]["stage"] == "rl"
    assert meta["final"]["config"] == "tiny"


def test_exports_are_byte_identical_copies(tiny_run: Run) -> None:
    cfg = tiny_run.cfg
    assert cfg.export_dir is not None and cfg.export_distilled_dir is not None
    for src, dst in ((cfg.out / "final", Path(cfg.export_dir)), (cfg.out / "distilled", Path(cfg.export_distilled_dir))):
        for name in CKPT_FILES:
            assert (dst / name).read_bytes() == (src / name).read_bytes()


def test_the_exported_checkpoint_proposes_valid_configurations(tiny_run: Run) -> None:
    agent = load_agent(tiny_run.cfg.export_dir)  # type: ignore[arg-type]
    assert isinstance(agent, TransformerAgent) and agent.cfg.hidden_size == 32
    env = gym.make_env("steplaw-dense-v1", raw_dir=tiny_run.cfg.raw_dir, history="sparse")
    assert gym.is_test_target(env.task, env.target)
    obs, _ = env.reset(seed=0)
    target = obs.target.fidelity
    # over the target grid (what the benchmark does) ...
    grid_keys = {obs.space.config_key(c) for c in obs.candidates}
    props = agent.propose(obs.history, obs.space, target, n=3, seed=0, candidates=obs.candidates)
    # ... and free in the space, after one target run
    obs, *_ = env.step(props[0].params)
    free = agent.propose(obs.history, obs.space, target, n=3, seed=0)
    for p in [*props, *free]:
        assert p.source == "model"
        assert obs.space.validate_params(p.params) == p.params
        assert p.rationale and "low-fidelity runs" in p.rationale
    assert all(obs.space.config_key(p.params) in grid_keys for p in props)
    assert obs.space.config_key(props[0].params) not in {obs.space.config_key(p.params) for p in free}


def test_the_checkpoints_drive_a_gym_episode_without_invalid_proposals(tiny_run: Run) -> None:
    cfg = tiny_run.cfg
    env = gym.make_env("steplaw-dense-v1", target="N=1.07B,D=20B", raw_dir=cfg.raw_dir, budget=3)
    for ckpt in (cfg.export_dir, cfg.export_distilled_dir):
        steps = gym.run_episode(env, AgentGymPolicy(load_agent(ckpt)), seed=0)  # type: ignore[arg-type]
        assert len(steps) == 3
        assert steps[-1]["invalid_count"] == 0
        assert len({s["row"] for s in steps}) == 3, "a tried configuration was proposed again"
        assert 0.0 <= steps[-1]["regret"] <= steps[0]["regret"] <= 1.0


def test_rerun_is_resumable(tiny_run: Run) -> None:
    t0 = time.perf_counter()
    summary = pipeline.run(tiny_run.cfg, progress=False)
    wall = time.perf_counter() - t0
    assert _mtimes(tiny_run.cfg.out) == tiny_run.mtimes, "a finished stage was recomputed"
    assert wall < max(5.0, tiny_run.wall_s / 3), f"rerun took {wall:.1f}s, first run {tiny_run.wall_s:.1f}s"
    assert summary["minutes_total"] <= tiny_run.summary["minutes_total"]


def test_members_train_as_single_runs_with_their_own_seeds_and_export_one_ensemble(tiny_run: Run, tmp_path: Path) -> None:
    """``members: 2``: member 0 is the single run with the config's seed (here resumed from a copy of that run,
    so nothing of it is recomputed), member 1 trains with seed + 1, and the export is one ensemble checkpoint."""
    import dataclasses
    import shutil

    from safetensors.numpy import load_file

    out = tmp_path / "ens"
    shutil.copytree(tiny_run.cfg.out, out / "member0")
    cfg = dataclasses.replace(tiny_run.cfg, members=2, out_dir=str(out), export_dir=str(tmp_path / "exp" / "final"),
                              export_distilled_dir=str(tmp_path / "exp" / "distilled"))
    before = _mtimes(out / "member0")
    summary = pipeline.run(cfg, progress=False)
    assert _mtimes(out / "member0") == before, "member 0 (the single run's seed) was recomputed"
    assert json.loads((out / "member1" / "config.json").read_text())["seed"] == cfg.seed + 1
    assert len(summary["members"]) == 2 and summary["minutes_total"] >= 0
    single = load_file(str(tiny_run.cfg.out / "final" / "model.safetensors"))
    other = load_file(str(out / "member1" / "final" / "model.safetensors"))
    for stage in ("final", "distilled"):
        exported = tmp_path / "exp" / stage
        assert (exported / "model.safetensors").read_bytes() == (out / stage / "model.safetensors").read_bytes()
        agent = load_agent(exported)
        assert isinstance(agent, TransformerAgent) and agent.cfg.members == 2
    ens = load_file(str(out / "final" / "model.safetensors"))
    assert all(np.array_equal(ens[f"member0.{k}"], v) for k, v in single.items())
    assert all(np.array_equal(ens[f"member1.{k}"], v) for k, v in other.items())
    assert any(not np.array_equal(single[k], other[k]) for k in single), "member 1 must differ (another seed)"


def test_cli_runs_selected_stages_only(tmp_path: Path, raw_dir: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOLLM_GYM_RAW", str(raw_dir))
    out = tmp_path / "partial"
    rc = pipeline.main(["--config", str(TINY_YAML), "--out", str(out), "--stages", "curate",
                        "--no-progress", "--no-export"])
    assert rc == 0
    assert (out / "curate.json").exists() and not (out / "states.pt").exists() and not (out / "final").exists()
    assert json.loads(capsys.readouterr().out)["config"] == "tiny"
    assert pipeline.main(["--config", str(TINY_YAML), "--out", str(out), "--stages", "curate,train"]) == 2
    assert "unknown stage(s) ['train']" in capsys.readouterr().err


def test_labelled_states_round_trip_through_the_packed_file(tmp_path: Path) -> None:
    """States of different widths, context sizes (none included) and query counts survive save/load."""
    states = []
    for family, seed in (("lr_bs", 2), ("mixture", 3)):
        task = make_synthetic(family, seed)
        target = max(task.cells, key=lambda c: c.cost)
        for hist in ((), tuple(c.name for c in task.cheaper_cells(target.name))):
            _, env = materialize(ExperimentSpec(f"synthetic:{family}:{seed}", target.name, hist, "sparse", 12, 0.0, False, 0))
            obs, _ = env.reset(seed=0)
            rows = query_rows(env.target, set(), 16 + 8 * len(states), np.random.default_rng(0))
            states.append(label_state(obs, env.target, rows, 0.05))
    assert any(s.enc.ctx_dims.shape[0] == 0 for s in states) and len({s.enc.width for s in states}) == 2
    save_states(states, str(tmp_path / "states.pt"))
    loaded = load_states(str(tmp_path / "states.pt"))
    assert len(loaded) == len(states)
    for s, d in zip(states, loaded, strict=True):
        e = s.enc
        for key, arr in (("ctx_dims", e.ctx_dims), ("ctx_scal", e.ctx_scal), ("q_dims", e.q_dims), ("q_scal", e.q_scal)):
            assert tuple(d[key].shape) == arr.shape
            np.testing.assert_allclose(d[key].float().numpy(), arr, rtol=1e-3, atol=1e-3)  # stored as float16
        for key, arr in (("roles", e.roles), ("slots", e.slots), ("y", s.y), ("quantile", s.quantile),
                         ("untried", s.untried), ("expert", s.expert)):
            np.testing.assert_array_equal(d[key].numpy(), arr)
