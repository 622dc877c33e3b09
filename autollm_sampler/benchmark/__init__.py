"""The benchmark: the agent against classical HPO, side by side, on held-out experiments.

It implements the project's BENCHMARK.md: every method runs on the same held-out experiments of the gym
(``gym.experiments(task, "test")``) with fixed seed lists, in Setting A (transfer from low-fidelity history,
``full`` or ``sparse``, k = 1..10 target evaluations) and Setting B (cost-aware, budget = 5 target runs).
Results (relative gap, normalised regret, hit rate, cost to target, invalid-proposal rate, average rank;
means with 95% bootstrap intervals) go to ``RESULTS.md``, PNG plots and CSVs; a second benchmark measures
per-suggestion latency and memory (:mod:`autollm_sampler.benchmark.latency`).

The performance scripts live here too, each run as ``python -m autollm_sampler.benchmark.<name>``:
``latency`` (every method's latency and memory as ratios to TPE), ``propose_latency`` (the agent's
``propose`` at several history sizes), ``overhead`` (AutoLLMSampler's per-trial overhead against
``TPESampler``) and ``gym_build`` (how long each gym task takes to verify, build and load).

Example:
    >>> from autollm_sampler.benchmark import BenchConfig, plan_episodes
    >>> plan = plan_episodes(BenchConfig(families=["steplaw-dense-v1"], methods=["random"], seeds=2))  # doctest: +SKIP
    >>> len(plan.episodes)  # doctest: +SKIP
    30
"""

from __future__ import annotations

from autollm_sampler.benchmark._candidates import CandidateIndex, resolve_proposal
from autollm_sampler.benchmark._methods import DEFAULT_METHODS, METHODS, MethodSpec, make_policy, method_spec
from autollm_sampler.benchmark._metrics import (
    CI,
    average_ranks,
    best_so_far,
    bootstrap_ci,
    cost_to_target,
    hit,
    normalised_regret,
    rank_with_ties,
    relative_gap,
    tied_with_best,
)
from autollm_sampler.benchmark._policies import (
    AgentPolicy,
    BenchPolicy,
    ExtrapolatedSearch,
    OptunaSearch,
    RandomSearch,
    SuccessiveHalving,
    TransferSearch,
)
from autollm_sampler.benchmark._report import episode_metrics, summarise, write_report
from autollm_sampler.benchmark._runner import (
    BenchConfig,
    EpisodeSpec,
    Plan,
    plan_episodes,
    run_benchmark,
    run_episode,
)
from autollm_sampler.benchmark._steplaw import PAPER_RULE, StepLawRule, StepLawRulePolicy

__all__ = [
    "AgentPolicy",
    "BenchConfig",
    "BenchPolicy",
    "CI",
    "CandidateIndex",
    "DEFAULT_METHODS",
    "EpisodeSpec",
    "ExtrapolatedSearch",
    "METHODS",
    "MethodSpec",
    "OptunaSearch",
    "PAPER_RULE",
    "Plan",
    "RandomSearch",
    "StepLawRule",
    "StepLawRulePolicy",
    "SuccessiveHalving",
    "TransferSearch",
    "average_ranks",
    "best_so_far",
    "bootstrap_ci",
    "cost_to_target",
    "episode_metrics",
    "hit",
    "make_policy",
    "method_spec",
    "normalised_regret",
    "plan_episodes",
    "rank_with_ties",
    "relative_gap",
    "resolve_proposal",
    "run_benchmark",
    "run_episode",
    "summarise",
    "tied_with_best",
    "write_report",
]
