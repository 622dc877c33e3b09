"""Batching of stored training states (dicts of tensors) into padded model inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from autollm_sampler.agent._features import N_CH, N_SCAL

__all__ = ["collate_states"]


def collate_states(states: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Pad states of different widths, context and query counts into one batch."""
    B = len(states)
    W = max(int(s["roles"].shape[0]) for s in states)
    C = max(max(int(s["ctx_dims"].shape[0]) for s in states), 1)
    Q = max(max(int(s["q_dims"].shape[0]) for s in states), 1)
    out = {
        "ctx_dims": torch.zeros(B, C, W, N_CH),
        "ctx_scal": torch.zeros(B, C, N_SCAL),
        "q_dims": torch.zeros(B, Q, W, N_CH),
        "q_scal": torch.zeros(B, Q, N_SCAL),
        "roles": torch.zeros(B, W, dtype=torch.long),
        "slots": torch.zeros(B, W, dtype=torch.long),
        "dim_mask": torch.zeros(B, W),
        "ctx_mask": torch.zeros(B, C, dtype=torch.bool),
        "q_mask": torch.zeros(B, Q, dtype=torch.bool),
    }
    labels: dict[str, torch.Tensor] = {k: torch.zeros(B, Q) for k in ("y", "quantile", "untried", "expert") if k in states[0]}
    for b, s in enumerate(states):
        c, q, w = int(s["ctx_dims"].shape[0]), int(s["q_dims"].shape[0]), int(s["roles"].shape[0])
        out["ctx_dims"][b, :c, :w] = s["ctx_dims"].float()
        out["ctx_scal"][b, :c] = s["ctx_scal"].float()
        out["q_dims"][b, :q, :w] = s["q_dims"].float()
        out["q_scal"][b, :q] = s["q_scal"].float()
        out["roles"][b, :w] = s["roles"]
        out["slots"][b, :w] = s["slots"]
        out["dim_mask"][b, :w] = 1.0
        out["ctx_mask"][b, :c] = True
        out["q_mask"][b, :q] = True
        for k in labels:
            labels[k][b, :q] = s[k].float()
    out.update(labels)
    return out
