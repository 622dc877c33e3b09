"""Batching of stored training states (dicts of tensors) into padded model inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from autollm_sampler.agent._net import pad_batch

__all__ = ["collate_states", "LABELS"]

LABELS = ("y", "quantile", "untried", "expert")


def collate_states(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad states of different widths, context and query counts into one batch, labels included."""
    return pad_batch(states, labels=[k for k in LABELS if k in states[0]])
