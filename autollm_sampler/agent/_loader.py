"""``load_agent``: the shipped default checkpoint, any checkpoint directory, or the classical agent."""

from __future__ import annotations

import os
from pathlib import Path

from autollm_sampler.agent._base import Agent
from autollm_sampler.agent._classical import ClassicalAgent

__all__ = ["load_agent", "DEFAULT_CHECKPOINT"]

DEFAULT_CHECKPOINT = Path(__file__).parent / "checkpoints" / "default"


def load_agent(name_or_path: str | os.PathLike[str] = "default", **kwargs: object) -> Agent:
    """Load an agent.

    Args:
        name_or_path: ``"default"`` (the checkpoint shipped in the package), ``"classical"`` (no model),
            a checkpoint directory (``model.safetensors`` + ``config.json`` + ``manifest.json``), a
            text-LLM agent checkpoint (a folder with ``llm_agent.json``, see ``docs/text-llm.md``), or
            ``"llm:<folder>"`` for any local Hugging Face causal LM folder used as a text-LLM agent
            (pass ``adapter=<folder>`` for a LoRA adapter).
        kwargs: passed to the backend's loader.

    Checkpoints are verified against their ``manifest.json`` (sha256 of every file loading reads) unless
    ``verify=False`` is passed; see "Checkpoint integrity" in ``docs/agent.md``.

    Raises:
        CheckpointError: if the checkpoint is missing, corrupt, fails its sha256 check or describes an invalid
            model; every defect the loaders can detect is reported this way, naming the file.
    """
    if str(name_or_path) == "classical":
        return ClassicalAgent()
    text = str(name_or_path)
    if text.startswith("llm:"):
        from autollm_sampler.agent._llm import TextLLMAgent  # transformers lives there

        return TextLLMAgent.from_pretrained(text[4:], **kwargs)  # type: ignore[arg-type]
    path = DEFAULT_CHECKPOINT if text == "default" else Path(name_or_path)
    if (path / "llm_agent.json").is_file():
        from autollm_sampler.agent._llm import TextLLMAgent

        return TextLLMAgent.load(path, **kwargs)  # type: ignore[arg-type]
    from autollm_sampler.agent._model import TransformerAgent  # numpy inference; torch only to train

    return TransformerAgent.load(path, **kwargs)  # type: ignore[arg-type]
