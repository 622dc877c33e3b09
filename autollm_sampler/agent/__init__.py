"""The research agent: proposals with predictions and rationales, behind one interface.

Backends: the embedded transformer (``TransformerAgent``, loaded by ``load_agent("default")``), the
text-LLM backend (``TextLLMAgent``: any local causal LM, see ``docs/text-llm.md``) and the classical
fallback (``ClassicalAgent``). Proposing with the shipped checkpoint needs numpy only; torch is imported by
training (``agent/_net.py``) and by the text-LLM backend.
"""

from __future__ import annotations

from typing import Any

from autollm_sampler.agent._base import Agent, Proposal
from autollm_sampler.agent._classical import ClassicalAgent
from autollm_sampler.agent._loader import DEFAULT_CHECKPOINT, load_agent

__all__ = ["Agent", "ClassicalAgent", "DEFAULT_CHECKPOINT", "Proposal", "TextLLMAgent", "TransformerAgent", "load_agent"]


def __getattr__(name: str) -> Any:
    if name == "TransformerAgent":
        from autollm_sampler.agent._model import TransformerAgent

        return TransformerAgent
    if name == "TextLLMAgent":
        from autollm_sampler.agent._llm import TextLLMAgent

        return TextLLMAgent
    raise AttributeError(name)
