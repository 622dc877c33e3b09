"""The policy network in torch (training and the reference of the numpy forward pass).

This is the one definition of the architecture: ``PolicyNet`` (a ``transformers.LlamaModel`` over trial
tokens with a policy head and a value head) is what training optimises and what checkpoints store. Proposing
does not need it: :mod:`autollm_sampler.agent._numpy_net` runs the same forward pass in numpy from the same
named weights (tested to match), so torch and transformers are imported only here, by training and by code
that asks for ``TransformerAgent.net``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from autollm_sampler.agent._features import D_MAX, N_CH, N_SCAL, Encoded
from autollm_sampler.agent._model import STATE_KEYS, AgentModelConfig, pad_arrays
from autollm_sampler.agent._numpy_net import LOG_SIGMA_RANGE
from autollm_sampler.space import ROLES

__all__ = ["PolicyNet", "pad_batch", "collate"]


class PolicyNet(nn.Module):
    """Trial-token transformer with a policy head and a value head."""

    def __init__(self, cfg: AgentModelConfig) -> None:
        super().__init__()
        from transformers import LlamaConfig, LlamaModel  # transformers lives in this module only

        self.cfg = cfg
        d = cfg.hidden_size
        self.role_w = nn.Embedding(len(ROLES), N_CH * d)
        self.slot_w = nn.Embedding(D_MAX, N_CH * d)
        nn.init.normal_(self.role_w.weight, std=0.3)
        nn.init.normal_(self.slot_w.weight, std=0.05)
        self.scal = nn.Linear(N_SCAL, d)
        self.mix = nn.Sequential(nn.GELU(), nn.Linear(d, d))
        llama = LlamaConfig(
            hidden_size=d,
            intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_layers,
            num_attention_heads=cfg.num_heads,
            num_key_value_heads=cfg.num_heads,
            vocab_size=8,
            max_position_embeddings=8,
            attention_dropout=0.0,
        )
        self.backbone = LlamaModel(llama)
        self.backbone.embed_tokens = None  # type: ignore[assignment]  # we feed inputs_embeds only
        self.score_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 1))
        self.value_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 2))

    @classmethod
    def seeded(cls, cfg: AgentModelConfig, seed: int = 0) -> PolicyNet:
        """A freshly initialised network, reproducible from ``seed``."""
        torch.manual_seed(seed)
        return cls(cfg)

    @classmethod
    def from_arrays(cls, cfg: AgentModelConfig, weights: Mapping[str, np.ndarray]) -> PolicyNet:
        """The network with the given named weights (e.g. a checkpoint loaded as numpy arrays)."""
        net = cls(cfg)
        net.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32)) for k, v in weights.items()}, strict=True)
        return net

    def embed(self, dims: torch.Tensor, scal: torch.Tensor, roles: torch.Tensor, slots: torch.Tensor, dim_mask: torch.Tensor) -> torch.Tensor:
        # dims [B, T, W, K]; roles/slots/dim_mask [B, W]
        B, W = roles.shape
        d = self.cfg.hidden_size
        wts = (self.role_w(roles) + self.slot_w(slots)).view(B, W, N_CH, d)
        wts = wts * dim_mask[..., None, None]
        width = dim_mask.sum(dim=1).clamp(min=1.0).sqrt()[:, None, None]
        h = torch.einsum("btwk,bwkd->btd", dims, wts) / width
        return self.mix(h) + self.scal(scal)  # type: ignore[no-any-return]

    def forward(self, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        ctx = self.embed(batch["ctx_dims"], batch["ctx_scal"], batch["roles"], batch["slots"], batch["dim_mask"])
        qry = self.embed(batch["q_dims"], batch["q_scal"], batch["roles"], batch["slots"], batch["dim_mask"])
        x = torch.cat([ctx, qry], dim=1)
        B, C, Q = x.shape[0], ctx.shape[1], qry.shape[1]
        T = C + Q
        cm, qm = batch["ctx_mask"], batch["q_mask"]
        attend = torch.zeros(B, T, T, dtype=torch.bool)
        attend[:, :, :C] = cm[:, None, :]
        eye = torch.eye(T, dtype=torch.bool)[None]
        attend = attend | eye
        pos = torch.zeros(B, T, dtype=torch.long)
        h = self.backbone(inputs_embeds=x, attention_mask=attend[:, None], position_ids=pos).last_hidden_state
        hq = h[:, C:]
        score = self.score_head(hq).squeeze(-1)
        value = self.value_head(hq)
        score = score.masked_fill(~qm, float("-inf"))
        return {"score": score, "mu": value[..., 0], "log_sigma": value[..., 1].clamp(*LOG_SIGMA_RANGE)}


def pad_batch(items: Sequence[Mapping[str, Any]], labels: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """:func:`~autollm_sampler.agent._model.pad_arrays` as torch tensors (training batches)."""
    return {k: torch.from_numpy(v) for k, v in pad_arrays(items, labels).items()}


def collate(items: Sequence[Encoded]) -> dict[str, torch.Tensor]:
    """Pad a list of encoded states into one batch of model inputs."""
    return pad_batch([{k: getattr(e, k) for k in STATE_KEYS} for e in items])


@torch.no_grad()
def infer(net: PolicyNet, enc: Encoded, *, max_query: int = 256) -> dict[str, np.ndarray]:
    """Outputs of ``net`` for one encoded state as numpy arrays [1, Q], running ``max_query`` queries at a time."""
    net.eval()
    Q = enc.q_dims.shape[0]
    chunks = [enc] if Q <= max_query else [_slice_queries(enc, s, s + max_query) for s in range(0, Q, max_query)]
    outs = [{k: v.numpy() for k, v in net(collate([c])).items()} for c in chunks]
    return {k: np.concatenate([o[k][:, : c.q_dims.shape[0] or 1] for o, c in zip(outs, chunks, strict=True)], axis=1)
            for k in ("score", "mu", "log_sigma")}


def _slice_queries(enc: Encoded, a: int, b: int) -> Encoded:
    import dataclasses

    return dataclasses.replace(enc, q_dims=enc.q_dims[a:b], q_scal=enc.q_scal[a:b])
