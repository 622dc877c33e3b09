"""The registry of benchmark methods: names, what each supports, and why one is skipped.

A method is built from its name inside every worker process (policies are not sent between processes).
Besides the fixed names, ``agent:<name-or-path>`` benchmarks any agent ``load_agent`` accepts, for example
``agent:classical`` or ``agent:/path/to/checkpoint``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from autollm_sampler.benchmark._policies import (
    AgentPolicy,
    BenchPolicy,
    ExtrapolatedSearch,
    OptunaSearch,
    RandomSearch,
    SuccessiveHalving,
    TransferSearch,
    checkpoint_fingerprint,
    cmaes_warm_start_supported,
    load_agent_cached,
)
from autollm_sampler.benchmark._steplaw import StepLawRulePolicy, steplaw_axes
from autollm_sampler.gym import TabularTask

__all__ = [
    "MethodSpec",
    "METHODS",
    "DEFAULT_METHODS",
    "AGENT_METHODS",
    "DISTILLED_CHECKPOINT",
    "LLM_AGENT_ENV",
    "method_spec",
    "make_policy",
]

#: Where the distilled-only (no RL) checkpoint is looked for.
DISTILLED_CHECKPOINT = Path(__file__).resolve().parents[1] / "agent" / "checkpoints" / "distilled"
#: Environment variable naming a text-LLM agent checkpoint for the ``agent-llm`` ablation.
LLM_AGENT_ENV = "AUTOLLM_BENCH_LLM_AGENT"


@dataclass(frozen=True)
class MethodSpec:
    """One benchmark method.

    Attributes:
        name: the method's name in tables and on the command line.
        description: one line for the report.
        settings: the settings it runs in (``"A"``, ``"B"``).
        deterministic: same episode for every seed when the history is fixed (Setting A, ``full``).
        uses_history: reads the low-fidelity runs (Setting A); if not, ``full`` and ``sparse`` share episodes.
        build: makes a fresh policy (called in the worker).
        agent: the ``load_agent`` argument of an agent method, checked before the run.
    """

    name: str
    description: str
    settings: tuple[str, ...]
    deterministic: bool
    uses_history: bool
    build: Callable[[], BenchPolicy]
    agent: str | None = None

    def unavailable(self) -> str | None:
        """Why the method cannot run at all on this installation (``None`` when it can)."""
        if self.name == "cmaes-warm":
            return cmaes_warm_start_supported()
        if self.name == "agent-distilled" and not DISTILLED_CHECKPOINT.is_dir():
            return f"no distilled-only checkpoint at {DISTILLED_CHECKPOINT} (the training pipeline writes it)"
        if self.name == "agent-llm" and not os.environ.get(LLM_AGENT_ENV):
            return f"no text-LLM agent checkpoint configured (set {LLM_AGENT_ENV}=/path/to/checkpoint)"
        if self.agent is not None:
            try:
                load_agent_cached(self.agent)
            except Exception as exc:  # missing checkpoint, missing torch, corrupt file ...: not raised, the
                # method is skipped with this reason, printed on the console and listed in RESULTS.md
                return f"load_agent({self.agent!r}) failed: {type(exc).__name__}: {exc}"
        return None

    def not_applicable(self, task: TabularTask) -> str | None:
        """Why the method does not apply to a task (``None`` when it does)."""
        if self.name == "steplaw-rule":
            cell = task.cells[-1]
            if steplaw_axes(cell.space, cell.fidelity) is None:
                return "Step Law families only (needs N/Na and D fidelity axes and lr/batch-size parameters)"
        return None


def _agent_spec(name: str, agent: str, description: str, *, use_history: bool = True,
                adapt: bool = True) -> MethodSpec:
    return MethodSpec(
        name, description, ("A", "B"), False, use_history,
        lambda: AgentPolicy(agent_name=agent, use_history=use_history, name=name, adapt=adapt), agent=agent,
    )


def _llm_agent() -> str:
    return os.environ.get(LLM_AGENT_ENV, "")


METHODS: dict[str, MethodSpec] = {
    m.name: m
    for m in [
        MethodSpec("random", "random search on the target", ("A", "B"), False, False, RandomSearch),
        MethodSpec("tpe", "Optuna TPESampler on the target only", ("A", "B"), False, False,
                   lambda: OptunaSearch(sampler="tpe")),
        MethodSpec("gp", "Optuna GPSampler on the target only", ("A", "B"), False, False,
                   lambda: OptunaSearch(sampler="gp")),
        MethodSpec("cmaes", "Optuna CmaEsSampler on the target only", ("A", "B"), False, False,
                   lambda: OptunaSearch(sampler="cmaes")),
        MethodSpec("qmc", "Optuna QMCSampler (scrambled Sobol) on the target only", ("A", "B"), False, False,
                   lambda: OptunaSearch(sampler="qmc")),
        MethodSpec("tpe-warm", "TPE with the low-fidelity runs added as completed trials", ("A",), False, True,
                   lambda: OptunaSearch(sampler="tpe", warm=True)),
        MethodSpec("cmaes-warm", "CMA-ES warm-started (source_trials) from the low-fidelity runs", ("A",), False,
                   True, lambda: OptunaSearch(sampler="cmaes", warm=True)),
        MethodSpec("transfer", "best config of the nearest cheaper cell, then its neighbours (B: cheap cells "
                   "first)", ("A", "B"), True, True, TransferSearch),
        MethodSpec("steplaw-rule", "Step Law lr*/B* power laws refit on the cheaper cells, snapped to the grid",
                   ("A",), True, True, StepLawRulePolicy),
        MethodSpec("sh", "successive halving across cells (eta=3)", ("B",), False, False, SuccessiveHalving),
        _agent_spec("agent", "default", "the trained agent (load_agent('default'))"),
        _agent_spec("agent-distilled", str(DISTILLED_CHECKPOINT), "the agent after distillation only (no RL)"),
        _agent_spec("agent-nohist", "default", "the trained agent without low-fidelity history",
                    use_history=False),
        _agent_spec("agent-noadapt", "default", "the trained agent without the in-context adaptation step "
                    "(agent/_adapt.py; ablation)", adapt=False),
        MethodSpec("agent-extrap", "the agent's extrapolated optimum, nearest untried candidate, no model "
                   "(ablation)", ("A", "B"), True, True, ExtrapolatedSearch),
    ]
}

#: Every method, in table order (``agent-llm`` runs only where a text-LLM checkpoint is configured).
DEFAULT_METHODS: tuple[str, ...] = (*METHODS, "agent-llm")
#: The agent and its ablations (excluded when picking "the best baseline").
AGENT_METHODS = frozenset({"agent", "agent-distilled", "agent-nohist", "agent-noadapt", "agent-extrap", "agent-llm"})


def method_fingerprint(name: str) -> str:
    """What a cached episode of method ``name`` depends on: the library's code (:func:`code_fingerprint`) and,
    for an agent with a checkpoint, a digest of its manifest (which holds the sha256 of its weights and
    config), so that neither a change of the adaptation step or of a baseline nor a retrained or restamped
    checkpoint is ever scored with episodes of the old one. 16 hex digits."""
    import hashlib

    agent = method_spec(name).agent
    ckpt = checkpoint_fingerprint(agent) if agent else ""
    return hashlib.sha256(f"{code_fingerprint()}:{ckpt}".encode()).hexdigest()[:16]


_CODE_FP: list[str] = []


def code_fingerprint() -> str:
    """A digest of every Python source file of the ``autollm_sampler`` package (path and bytes), computed once
    per process: an episode cached by other code is run again."""
    if not _CODE_FP:
        import hashlib

        root = Path(__file__).resolve().parents[1]
        h = hashlib.sha256()
        for f in sorted(root.rglob("*.py")):
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
        _CODE_FP.append(h.hexdigest()[:16])
    return _CODE_FP[0]


def method_spec(name: str) -> MethodSpec:
    """The spec of a method name, including ``agent:<name-or-path>`` and ``agent-llm``.

    Raises:
        ValueError: naming the unknown method and the known ones.
    """
    if name in METHODS:
        return METHODS[name]
    if name == "agent-llm":
        return MethodSpec("agent-llm", "the text-LLM agent backend", ("A", "B"), False, True,
                          lambda: AgentPolicy(agent_name=_llm_agent(), name="agent-llm"),
                          agent=_llm_agent() or None)
    if name.startswith("agent:") and len(name) > len("agent:"):
        return _agent_spec(name, name[len("agent:"):], f"agent loaded with load_agent({name[6:]!r})")
    raise ValueError(
        f"unknown method {name!r}; choose from {sorted([*METHODS, 'agent-llm'])} or 'agent:<name-or-path>'"
    )


def make_policy(name: str) -> BenchPolicy:
    """A fresh policy for a method name."""
    policy = method_spec(name).build()
    policy.name = name
    return policy
