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
            or a checkpoint directory (``model.safetensors`` + ``config.json`` + ``manifest.json``).

    Raises:
        CheckpointError: if the checkpoint is missing, corrupt or fails its sha256 check.
    """
    if str(name_or_path) == "classical":
        return ClassicalAgent()
    path = DEFAULT_CHECKPOINT if str(name_or_path) == "default" else Path(name_or_path)
    from autollm_sampler.agent._model import TransformerAgent  # torch lives there only

    return TransformerAgent.load(path, **kwargs)  # type: ignore[arg-type]
