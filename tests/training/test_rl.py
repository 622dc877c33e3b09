"""Stage 4 (GRPO-style RL) and the pipeline's configuration validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from autollm_sampler.agent._model import AgentModelConfig
from autollm_sampler.agent._net import PolicyNet
from autollm_sampler.exceptions import ConfigError
from training.config import PipelineConfig, RLConfig, load_config
from training.curate import ExperimentSpec, materialize
from training.rl import TransformerRLPolicy, _rollout, group_advantages, grpo
from training.synthetic import make_synthetic

TINY = AgentModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
TINY_YAML = Path(__file__).resolve().parents[2] / "training" / "configs" / "tiny.yaml"


# ---------------------------------------------------------------------------------------------- advantages
@pytest.mark.parametrize("value", [0.0, 0.37, -2.0])
def test_group_advantages_are_zero_when_every_rollout_scored_the_same(value: float) -> None:
    adv = group_advantages(np.full(6, value))
    assert adv.shape == (6,) and np.all(adv == 0.0)


@pytest.mark.parametrize("returns", [[0.1, 0.2], [0.9, 0.1, 0.5, 0.5], list(np.linspace(-3, 7, 8)), [0.01, 0.02, 0.0]])
def test_group_advantages_are_standardised(returns: list[float]) -> None:
    r = np.array(returns)
    adv = group_advantages(r)
    assert adv.mean() == pytest.approx(0.0, abs=1e-9)
    assert adv.std() == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_array_equal(np.argsort(adv, kind="stable"), np.argsort(r, kind="stable"))


# ---------------------------------------------------------------------------------------------- GRPO
def _spec(seed: int = 7) -> ExperimentSpec:
    task = make_synthetic("lr_bs", seed)
    target = max(task.cells, key=lambda c: c.cost).name
    return ExperimentSpec(f"synthetic:lr_bs:{seed}", target, tuple(c.name for c in task.cheaper_cells(target)),
                          "sparse", 15, 0.0, False, seed)


def _cfg(**rl: object) -> PipelineConfig:
    return PipelineConfig(name="test-rl", seed=0, rl=RLConfig(**{"iterations": 1, "group_size": 4, "steps": 2,
                                                                  "temperature": 1.0, "lr": 1e-2, **rl}))  # type: ignore[arg-type]


def test_rl_policy_samples_untried_rows_and_starts_with_zero_kl() -> None:
    torch.manual_seed(0)
    policy = TransformerRLPolicy(PolicyNet(TINY), max_queries=32)
    _, env = materialize(_spec())
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    records = []
    for _ in range(3):
        action, rec = policy.sample(obs, rng, temperature=1.0)
        assert action in obs.candidates
        row = obs.candidates.index(action)
        assert row not in obs.tried[obs.target.name]
        assert rec.enc.q_dims.shape[0] <= 32
        records.append(rec)
        obs, *_ = env.step(action)
    logp, kl = policy.logprob_kl(records, temperature=1.0)
    assert logp.shape == kl.shape == (3,)
    assert torch.all(logp <= 0) and logp.requires_grad
    assert torch.allclose(kl, torch.zeros(3), atol=1e-6), "the reference is a copy: KL must start at zero"


def test_rollout_return_is_an_anytime_regret_reduction() -> None:
    torch.manual_seed(0)
    policy = TransformerRLPolicy(PolicyNet(TINY), max_queries=32)
    _, env = materialize(_spec())
    ret, records, first = _rollout(policy, env, seed=3, steps=3, rng=np.random.default_rng(0), temperature=1.0)
    assert 0.0 <= ret <= 1.0 and 0.0 <= first <= 1.0
    assert len(records) == 3
    assert ret >= 1.0 - first - 1e-12  # regret never grows within an episode


def test_one_grpo_iteration_changes_the_policy_but_not_the_reference() -> None:
    torch.manual_seed(0)
    net = PolicyNet(TINY)
    policy = TransformerRLPolicy(net, max_queries=32)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    summary = grpo(policy, [_spec()], _cfg(), progress=False)
    assert summary["iterations"] == 1 and len(summary["curve"]) == 1
    assert 0.0 <= summary["curve"][0]["mean_return"] <= 1.0
    changed = [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "one GRPO step with non-equal returns must update the policy"
    assert any(k.startswith("score_head") for k in changed)
    for k, v in policy.ref.state_dict().items():
        assert torch.equal(v, before[k]), f"the reference policy changed at {k}"
    assert not any(p.requires_grad for p in policy.ref.parameters())


def test_grpo_with_zero_iterations_leaves_the_policy_alone() -> None:
    torch.manual_seed(0)
    net = PolicyNet(TINY)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    summary = grpo(TransformerRLPolicy(net), [_spec()], _cfg(iterations=0), progress=False)
    assert summary["iterations"] == 0 and summary["return_first_fifth"] is None
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())


# ---------------------------------------------------------------------------------------------- config
def _yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_tiny_config_loads_with_overrides(tmp_path: Path) -> None:
    cfg = load_config(TINY_YAML, out_dir=str(tmp_path), export_dir=None)
    assert cfg.name == "tiny" and cfg.out == tmp_path and cfg.export_dir is None
    assert cfg.model.hidden_size == 32 and cfg.rl.group_size >= 2
    assert PipelineConfig(**{k: v for k, v in cfg.to_dict().items() if k not in ("model", "curate", "simulate", "distill", "rl")})


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("rl: {group_size: 1}", "rl.group_size"),
        ("rl: {temperature: 0}", "rl.temperature"),
        ("rl: {iterations: -1}", "rl.iterations"),
        ("curate: {sparse_prob: 1.5}", "curate.sparse_prob"),
        ("curate: {augment_per_experiment: 0}", "curate.augment_per_experiment"),
        ("curate: {synthetic_families: [lr_bs, spirals]}", "curate.synthetic_families"),
        ("simulate: {steps: 0}", "simulate.steps"),
        ("simulate: {experts: [hindsight, oracle]}", "simulate.experts"),
        ("distill: {lr: 0.0}", "distill.lr"),
        ("distill: {epochs: 0}", "distill.epochs"),
        ("distill: {batch_size: 0}", "distill.batch_size"),
        ("model: {hidden_size: 30, num_heads: 4}", "model.hidden_size"),
        ("model: {num_heads: 0}", "model.num_heads"),
    ],
)
def test_bad_values_raise_config_error_naming_the_key(tmp_path: Path, yaml_text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(_yaml(tmp_path, f"name: bad\n{yaml_text}\n"))


def test_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['epochz'\].*valid keys") as err:
        load_config(_yaml(tmp_path, "name: x\nepochz: 3\n"))
    assert "cfg.yaml" in str(err.value) and "'distill'" in str(err.value)


def test_unknown_section_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\['groupsize'\] in section 'rl'.*group_size"):
        load_config(_yaml(tmp_path, "rl: {groupsize: 4}\n"))


def test_unknown_override_is_named() -> None:
    with pytest.raises(ConfigError, match="out_dri"):
        load_config(TINY_YAML, out_dri="runs/x")


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_config_errors_are_value_errors() -> None:
    with pytest.raises(ValueError):
        RLConfig(group_size=1)
