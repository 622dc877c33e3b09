"""Training pipeline configuration: dataclasses whose fields carry help text, validated on construction."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from autollm_sampler.exceptions import ConfigError

__all__ = ["ModelSection", "CurateConfig", "SimulateConfig", "DistillConfig", "RLConfig", "PipelineConfig", "load_config"]


def _help(text: str, default: Any) -> Any:
    if callable(default):
        return field(default_factory=default, metadata={"help": text})
    return field(default=default, metadata={"help": text})


@dataclass
class ModelSection:
    hidden_size: int = _help("Width of the transformer.", 64)
    num_layers: int = _help("Transformer layers.", 2)
    num_heads: int = _help("Attention heads (must divide hidden_size).", 4)
    intermediate_size: int = _help("MLP width inside each layer.", 128)

    def __post_init__(self) -> None:
        if min(self.hidden_size, self.num_layers, self.num_heads, self.intermediate_size) < 1 or self.hidden_size % self.num_heads:
            raise ConfigError(f"model.hidden_size={self.hidden_size} must be a positive multiple of model.num_heads="
                              f"{self.num_heads} (and every model size >= 1); change one of them")


@dataclass
class CurateConfig:
    real_tasks: list[str] = _help(
        "Registered gym tasks whose *training* split is used (test targets never become training targets).",
        lambda: ["steplaw-dense-v1", "steplaw-moe-v1", "admire-ift-v1", "regmix-v1", "hwgpt-arch-v1",
                 "nanolm-pretrain-v1", "nanogrpo-v1", "nanolm-pretrain-v2", "nanogrpo-v2"],
    )
    augment_per_experiment: int = _help("Augmented copies per real training experiment.", 6)
    synthetic_tasks: int = _help("Synthetic tasks drawn from the LLM-like landscape prior.", 200)
    synthetic_families: list[str] = _help(
        "Synthetic families to draw from: lr_bs, generic, mixture, drift.", lambda: ["lr_bs", "generic", "mixture", "drift"]
    )
    max_queries: int = _help("Candidates scored per training state (the best rows are always kept).", 64)
    sparse_prob: float = _help("Probability that an experiment uses a sparse history.", 0.5)

    def __post_init__(self) -> None:
        if self.augment_per_experiment < 1:
            raise ConfigError(f"curate.augment_per_experiment must be >= 1, got {self.augment_per_experiment}")
        if not 0.0 <= self.sparse_prob <= 1.0:
            raise ConfigError(f"curate.sparse_prob must be in [0, 1], got {self.sparse_prob}")
        from training.synthetic import FAMILIES

        unknown = set(self.synthetic_families) - set(FAMILIES)
        if unknown:
            raise ConfigError(f"curate.synthetic_families has unknown families {sorted(unknown)}; use {', '.join(FAMILIES)}")


@dataclass
class SimulateConfig:
    steps: int = _help("Target evaluations per simulated episode.", 5)
    episodes_per_experiment: int = _help("Episodes per curated experiment (one expert each, cycling).", 2)
    experts: list[str] = _help(
        "Experts whose trajectories provide the states: hindsight (privileged), transfer, random.",
        lambda: ["hindsight", "transfer", "random"],
    )
    hindsight_temperature: float = _help("Softmax temperature of the hindsight expert over true quantiles.", 0.03)

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"simulate.steps must be >= 1, got {self.steps}")
        unknown = set(self.experts) - {"hindsight", "transfer", "random"}
        if unknown:
            raise ConfigError(f"simulate.experts has unknown experts {sorted(unknown)}; use hindsight, transfer, random")


@dataclass
class DistillConfig:
    epochs: int = _help("Passes over the simulated states.", 4)
    batch_size: int = _help("States per optimisation step.", 32)
    lr: float = _help("AdamW learning rate.", 1e-3)
    weight_decay: float = _help("AdamW weight decay.", 0.01)
    value_weight: float = _help("Weight of the outcome-prediction (value) loss next to the policy loss.", 0.5)
    max_minutes: float = _help("Wall-clock cap of this stage; training stops early when reached.", 30.0)

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("distill.epochs and distill.batch_size must be >= 1")
        if self.lr <= 0:
            raise ConfigError(f"distill.lr must be > 0, got {self.lr}")


@dataclass
class RLConfig:
    iterations: int = _help("GRPO iterations (one experiment, G rollouts each).", 100)
    group_size: int = _help("Rollouts per experiment (G).", 8)
    steps: int = _help("Target evaluations per rollout.", 5)
    temperature: float = _help("Sampling temperature of the policy during rollouts.", 0.5)
    kl_coef: float = _help("KL penalty to the distilled policy.", 0.05)
    lr: float = _help("AdamW learning rate.", 2e-4)
    max_minutes: float = _help("Wall-clock cap of this stage.", 30.0)

    def __post_init__(self) -> None:
        if self.group_size < 2:
            raise ConfigError(f"rl.group_size must be >= 2 for group-relative advantages, got {self.group_size}")
        if self.temperature <= 0:
            raise ConfigError(f"rl.temperature must be > 0, got {self.temperature}")
        if self.iterations < 0:
            raise ConfigError(f"rl.iterations must be >= 0, got {self.iterations}")


@dataclass
class PipelineConfig:
    name: str = _help("Name of this configuration.", "default")
    seed: int = _help("Seed of every random choice in the pipeline.", 0)
    out_dir: str = _help("Where stage outputs go (resumable).", "runs/default")
    export_dir: str | None = _help("Where the final checkpoint is copied (None: not exported).", None)
    export_distilled_dir: str | None = _help("Where the distilled-only checkpoint is copied.", None)
    raw_dir: str | None = _help("Raw gym data directory (default: AUTOLLM_GYM_RAW).", None)
    threads: int = _help("torch threads.", 2)
    members: int = _help(
        "Networks trained (seeds seed, seed+1, ...; each its own curate-to-RL run under out_dir/member<i>) and "
        "combined into one ensemble checkpoint; 1: a single network.", 1)
    model: ModelSection = _help("Policy network architecture.", ModelSection)
    curate: CurateConfig = _help("Stage 1.", CurateConfig)
    simulate: SimulateConfig = _help("Stage 2.", SimulateConfig)
    distill: DistillConfig = _help("Stage 3.", DistillConfig)
    rl: RLConfig = _help("Stage 4.", RLConfig)

    def __post_init__(self) -> None:
        if not 1 <= self.members <= 16:
            raise ConfigError(f"members must be in [1, 16], got {self.members}")

    @property
    def out(self) -> Path:
        return Path(self.out_dir)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_SECTIONS = {"model": ModelSection, "curate": CurateConfig, "simulate": SimulateConfig, "distill": DistillConfig, "rl": RLConfig}


def load_config(path: str | Path, **overrides: Any) -> PipelineConfig:
    """Read a YAML config; unknown keys are errors that name the key and the valid ones."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist; see training/configs/ for examples")
    data = yaml.safe_load(p.read_text()) or {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    return _build(data, str(p))


def _build(data: dict[str, Any], where: str) -> PipelineConfig:
    top = {f.name for f in fields(PipelineConfig)}
    unknown = set(data) - top
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys: {sorted(top)}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in _SECTIONS:
            cls = _SECTIONS[key]
            valid = {f.name for f in fields(cls)}
            bad = set(value or {}) - valid
            if bad:
                raise ConfigError(f"{where}: unknown key(s) {sorted(bad)} in section {key!r}; valid: {sorted(valid)}")
            kwargs[key] = cls(**(value or {}))
        else:
            kwargs[key] = value
    return PipelineConfig(**kwargs)


def parse_stages(text: str, valid: tuple[str, ...]) -> tuple[str, ...]:
    """A ``--stages`` value (comma-separated) checked against the pipeline's stages, in the given order.

    Raises:
        ConfigError: naming the unknown stages and the valid ones.
    """
    stages = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = set(stages) - set(valid)
    if bad:
        raise ConfigError(f"unknown stage(s) {sorted(bad)}; choose from {valid}")
    return stages
