"""autollm-sampler: a trained research agent for expensive LLM experiment configuration.

It reads multi-fidelity trial history (cheap small-scale runs plus any expensive ones so far) and proposes
the next configuration for the expensive target. Use it as an Optuna sampler (:class:`AutoLLMSampler`), a
Ray Tune searcher (:class:`AutoLLMSearcher`), an ask/tell object (:class:`AskTell`) or the
``autollm-sampler`` CLI. Optional heavy pieces (torch, optuna, ray) are imported lazily.
"""

from __future__ import annotations

from typing import Any

from autollm_sampler.exceptions import (
    AutoLLMSamplerError,
    CheckpointError,
    InvalidHistoryError,
    InvalidSpaceError,
    InvalidTrialError,
    RawDataError,
    UnknownTaskError,
)
from autollm_sampler.history import History, Trial
from autollm_sampler.space import CategoricalParam, FloatParam, IntParam, SearchSpace, SimplexParam

__version__ = "0.1.0"

__all__ = [
    "AskTell",
    "AutoLLMSampler",
    "AutoLLMSamplerError",
    "AutoLLMSearcher",
    "CategoricalParam",
    "CheckpointError",
    "FloatParam",
    "History",
    "IntParam",
    "InvalidHistoryError",
    "InvalidSpaceError",
    "InvalidTrialError",
    "Proposal",
    "RawDataError",
    "SearchSpace",
    "SimplexParam",
    "Trial",
    "UnknownTaskError",
    "load_agent",
    "__version__",
]

_LAZY = {
    "AutoLLMSampler": ("autollm_sampler.integrations.optuna", "AutoLLMSampler"),
    "AutoLLMSearcher": ("autollm_sampler.integrations.ray", "AutoLLMSearcher"),
    "AskTell": ("autollm_sampler.integrations.asktell", "AskTell"),
    "load_agent": ("autollm_sampler.agent", "load_agent"),
    "Proposal": ("autollm_sampler.agent", "Proposal"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'autollm_sampler' has no attribute {name!r}")
