"""LLMConfig-Gym: multi-fidelity environments built from real published LLM experiment tables.

Example:
    >>> from autollm_sampler import gym
    >>> task = gym.make("steplaw-dense-v1")  # doctest: +SKIP
    >>> [e.target for e in gym.experiments(task, "test")]  # doctest: +SKIP
    ['N=537M,D=10B', 'N=537M,D=28.4B', 'N=1.07B,D=20B', 'N=537M,D=50B', 'N=1.07B,D=56.9B']
"""

from __future__ import annotations

from autollm_sampler.gym._data import RAW_ENV, fetch, manifest, raw_file, resolve_raw_dir
from autollm_sampler.gym._env import CellInfo, LLMConfigEnv, Observation, make_env
from autollm_sampler.gym._policies import (
    POLICIES,
    Policy,
    RandomPolicy,
    TransferPolicy,
    run_cost_episode,
    run_episode,
)
from autollm_sampler.gym._registry import TaskSpec, list_ids, make, register, registry
from autollm_sampler.gym._splits import SPLITS, Experiment, experiments, is_test_target, register_split
from autollm_sampler.gym._table import SCHEMA_VERSION, Cell, TabularTask, TaskMetadata

__all__ = [
    "RAW_ENV",
    "SCHEMA_VERSION",
    "POLICIES",
    "SPLITS",
    "Cell",
    "CellInfo",
    "Experiment",
    "LLMConfigEnv",
    "Observation",
    "Policy",
    "RandomPolicy",
    "TabularTask",
    "TaskMetadata",
    "TaskSpec",
    "TransferPolicy",
    "experiments",
    "fetch",
    "is_test_target",
    "list_ids",
    "make",
    "make_env",
    "manifest",
    "raw_file",
    "register",
    "register_split",
    "registry",
    "resolve_raw_dir",
    "run_cost_episode",
    "run_episode",
]
