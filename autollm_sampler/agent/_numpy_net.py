"""The policy network's forward pass in numpy: proposing with the default agent needs no torch.

:class:`NumpyPolicyNet` runs the same computation as ``PolicyNet.forward`` (``agent/_net.py``, the one
definition of the architecture, used for training) from the same named weights, so a checkpoint trained in
torch proposes through numpy alone. ``tests/agent/test_numpy_net.py`` checks that both give the same
logits and value predictions, on random networks of several shapes and on the shipped checkpoint.

Two facts of the architecture make the numpy version short and cheaper than running the torch graph:

* every token shares position id 0, so the Llama rotary embedding is the identity (cos 0 = 1, sin 0 = 0);
* a query token attends to the context and to itself only, so the context tokens' hidden states do not
  depend on the queries: they are computed once per call and every query chunk reuses them, and each
  query's attention is over ``C + 1`` keys instead of ``C + Q``.

Example:
    >>> import numpy as np
    >>> from autollm_sampler.agent._numpy_net import NumpyPolicyNet
    >>> net = NumpyPolicyNet.random(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32, seed=0)
    >>> sorted(net.weights)[:2]
    ['backbone.layers.0.input_layernorm.weight', 'backbone.layers.0.mlp.down_proj.weight']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from autollm_sampler.agent._features import D_MAX, N_CH, N_SCAL
from autollm_sampler.space import ROLES

__all__ = ["NumpyPolicyNet", "expected_shapes", "RMS_EPS", "LOG_SIGMA_RANGE"]

#: ``LlamaConfig``'s default ``rms_norm_eps``, which ``PolicyNet`` keeps.
RMS_EPS = 1e-6
#: the clamp ``PolicyNet`` applies to the value head's log-std.
LOG_SIGMA_RANGE = (-5.0, 3.0)

_F = np.float32


def expected_shapes(hidden_size: int, num_layers: int, intermediate_size: int) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every weight of a policy network (the checkpoint's ``model.safetensors``)."""
    d, m = hidden_size, intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "role_w.weight": (len(ROLES), N_CH * d),
        "slot_w.weight": (D_MAX, N_CH * d),
        "scal.weight": (d, N_SCAL),
        "scal.bias": (d,),
        "mix.1.weight": (d, d),
        "mix.1.bias": (d,),
        "backbone.norm.weight": (d,),
        "score_head.0.weight": (d, d),
        "score_head.0.bias": (d,),
        "score_head.2.weight": (1, d),
        "score_head.2.bias": (1,),
        "value_head.0.weight": (d, d),
        "value_head.0.bias": (d,),
        "value_head.2.weight": (2, d),
        "value_head.2.bias": (2,),
    }
    for i in range(num_layers):
        p = f"backbone.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (d,),
            p + "post_attention_layernorm.weight": (d,),
            p + "self_attn.q_proj.weight": (d, d),
            p + "self_attn.k_proj.weight": (d, d),
            p + "self_attn.v_proj.weight": (d, d),
            p + "self_attn.o_proj.weight": (d, d),
            p + "mlp.gate_proj.weight": (m, d),
            p + "mlp.up_proj.weight": (m, d),
            p + "mlp.down_proj.weight": (d, m),
        })
    return shapes


def _erf(x: np.ndarray) -> np.ndarray:
    # the Chebyshev-fitted complementary error function of Numerical Recipes (fractional error below
    # 1.2e-7 everywhere), evaluated in float64: as accurate as float32 arithmetic can tell
    x64 = x.astype(np.float64)
    t = 1.0 / (1.0 + 0.5 * np.abs(x64))
    poly = -x64 * x64 - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (
        -0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))))
    y = 1.0 - t * np.exp(poly)
    return np.where(x64 >= 0, y, -y).astype(x.dtype)


def _gelu(x: np.ndarray) -> np.ndarray:
    """torch's exact (erf) GELU."""
    return (0.5 * x * (1.0 + _erf(x / np.sqrt(_F(2.0))))).astype(_F)


def _silu(x: np.ndarray) -> np.ndarray:
    return (x / (1.0 + np.exp(-x))).astype(_F)


def _linear(x: np.ndarray, w: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    y = x @ w.T
    return y + b if b is not None else y


def _rms(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    var = np.mean(x * x, axis=-1, keepdims=True)
    return (w * (x / np.sqrt(var + _F(RMS_EPS)))).astype(_F)


class NumpyPolicyNet:
    """``PolicyNet``'s inference in numpy, from its named weights.

    Args:
        weights: name -> array, exactly the names and shapes of :func:`expected_shapes` (float32).
        hidden_size, num_layers, num_heads, intermediate_size: the architecture (``AgentModelConfig``).
    """

    def __init__(self, weights: Mapping[str, np.ndarray], *, hidden_size: int, num_layers: int, num_heads: int,
                 intermediate_size: int) -> None:
        want = expected_shapes(hidden_size, num_layers, intermediate_size)
        missing = sorted(set(want) - set(weights))
        unexpected = sorted(set(weights) - set(want))
        if missing or unexpected:
            raise ValueError(f"weights do not match the architecture: missing {missing[:5]}, unexpected {unexpected[:5]}")
        bad = [f"{k} {tuple(weights[k].shape)} (expected {s})" for k, s in want.items() if tuple(weights[k].shape) != s]
        if bad:
            raise ValueError("weights of the wrong shape: " + "; ".join(bad[:5]))
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size={hidden_size} is not divisible by num_heads={num_heads}")
        self.weights = {k: np.ascontiguousarray(np.asarray(v, dtype=_F)) for k, v in weights.items()}
        self.hidden_size, self.num_layers, self.num_heads = hidden_size, num_layers, num_heads
        self.intermediate_size = intermediate_size
        # the context pass of the last forward: one propose scores several query sets against one history
        self._ctx_memo: tuple[tuple[np.ndarray, ...], list[tuple[np.ndarray, np.ndarray]]] | None = None

    @classmethod
    def random(cls, *, hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int,
               seed: int = 0) -> NumpyPolicyNet:
        """A randomly initialised network (tests and examples)."""
        rng = np.random.default_rng(seed)
        shapes = expected_shapes(hidden_size, num_layers, intermediate_size)
        w = {k: rng.normal(0, 0.3, s).astype(_F) for k, s in shapes.items()}
        return cls(w, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads,
                   intermediate_size=intermediate_size)

    def all_finite(self) -> bool:
        return all(bool(np.isfinite(v).all()) for v in self.weights.values())

    # ------------------------------------------------------------------ pieces
    def _embed(self, dims: np.ndarray, scal: np.ndarray, roles: np.ndarray, slots: np.ndarray,
               dim_mask: np.ndarray) -> np.ndarray:
        w, d = self.weights, self.hidden_size
        B, W = roles.shape
        wts = (w["role_w.weight"][roles] + w["slot_w.weight"][slots]).reshape(B, W, N_CH, d)
        wts = wts * dim_mask[..., None, None]
        width = np.sqrt(np.maximum(dim_mask.sum(axis=1), 1.0))[:, None, None]
        h = np.einsum("btwk,bwkd->btd", dims, wts, optimize=True) / width
        return (_linear(_gelu(h.astype(_F)), w["mix.1.weight"], w["mix.1.bias"])
                + _linear(scal, w["scal.weight"], w["scal.bias"])).astype(_F)

    def _heads(self, x: np.ndarray) -> np.ndarray:
        B, T, _ = x.shape
        return x.reshape(B, T, self.num_heads, self.hidden_size // self.num_heads).transpose(0, 2, 1, 3)

    def _mlp(self, x: np.ndarray, p: str) -> np.ndarray:
        w = self.weights
        g = _linear(x, w[p + "mlp.gate_proj.weight"])
        u = _linear(x, w[p + "mlp.up_proj.weight"])
        return _linear(_silu(g) * u, w[p + "mlp.down_proj.weight"])

    def _context(self, ctx: np.ndarray, ctx_mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Run the context through every layer; return each layer's (keys, values) for the queries."""
        w = self.weights
        B, C, _ = ctx.shape
        hd = self.hidden_size // self.num_heads
        scale = _F(1.0 / np.sqrt(hd))
        # context token i attends to the unmasked context tokens and to itself
        allow = ctx_mask[:, None, :] | np.eye(C, dtype=bool)[None]
        kv: list[tuple[np.ndarray, np.ndarray]] = []
        x = ctx
        for i in range(self.num_layers):
            p = f"backbone.layers.{i}."
            hn = _rms(x, w[p + "input_layernorm.weight"])
            q = self._heads(_linear(hn, w[p + "self_attn.q_proj.weight"]))
            k = self._heads(_linear(hn, w[p + "self_attn.k_proj.weight"]))
            v = self._heads(_linear(hn, w[p + "self_attn.v_proj.weight"]))
            kv.append((k, v))
            s = (q @ k.transpose(0, 1, 3, 2)) * scale
            s = np.where(allow[:, None], s, _F(-np.inf))
            s = s - s.max(axis=-1, keepdims=True)
            a = np.exp(s)
            a /= a.sum(axis=-1, keepdims=True)
            o = (a @ v).transpose(0, 2, 1, 3).reshape(B, C, self.hidden_size)
            x = x + _linear(o, w[p + "self_attn.o_proj.weight"])
            x = x + self._mlp(_rms(x, w[p + "post_attention_layernorm.weight"]), p)
        return kv

    def _queries(self, qry: np.ndarray, ctx_mask: np.ndarray, kv: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        w = self.weights
        B, Q, _ = qry.shape
        hd = self.hidden_size // self.num_heads
        scale = _F(1.0 / np.sqrt(hd))
        x = qry
        for i in range(self.num_layers):
            p = f"backbone.layers.{i}."
            kc, vc = kv[i]
            hn = _rms(x, w[p + "input_layernorm.weight"])
            q = self._heads(_linear(hn, w[p + "self_attn.q_proj.weight"]))
            k = self._heads(_linear(hn, w[p + "self_attn.k_proj.weight"]))
            v = self._heads(_linear(hn, w[p + "self_attn.v_proj.weight"]))
            s_ctx = (q @ kc.transpose(0, 1, 3, 2)) * scale  # [B, H, Q, C]
            s_ctx = np.where(ctx_mask[:, None, None, :], s_ctx, _F(-np.inf))
            s_self = np.sum(q * k, axis=-1, keepdims=True) * scale  # [B, H, Q, 1]
            s = np.concatenate([s_ctx, s_self], axis=-1)
            s = s - s.max(axis=-1, keepdims=True)
            a = np.exp(s)
            a /= a.sum(axis=-1, keepdims=True)
            o = a[..., :-1] @ vc + a[..., -1:] * v
            o = o.transpose(0, 2, 1, 3).reshape(B, Q, self.hidden_size)
            x = x + _linear(o, w[p + "self_attn.o_proj.weight"])
            x = x + self._mlp(_rms(x, w[p + "post_attention_layernorm.weight"]), p)
        return _rms(x, w["backbone.norm.weight"])

    def _context_kv(self, ctx_dims: np.ndarray, ctx_scal: np.ndarray, roles: np.ndarray, slots: np.ndarray,
                    dim_mask: np.ndarray, ctx_mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Keys and values of the context, reused when the inputs equal the last call's (compared exactly).

        Queries attend to the context and to themselves only, so the context pass is the same for every
        query set scored against one history (candidates, the target runs, the rationale's two points).
        """
        key = (ctx_dims, ctx_scal, roles, slots, dim_mask, ctx_mask)
        memo = self._ctx_memo
        if memo is not None and all(a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b)
                                    for a, b in zip(memo[0], key, strict=True)):
            return memo[1]
        kv = self._context(self._embed(ctx_dims, ctx_scal, roles, slots, dim_mask), ctx_mask)
        self._ctx_memo = (tuple(np.array(a, copy=True) for a in key), kv)
        return kv

    # ------------------------------------------------------------------ forward
    def forward(self, batch: Mapping[str, Any], *, max_query: int = 256) -> dict[str, np.ndarray]:
        """Policy logits and value outputs for a padded batch (``pad_arrays`` of ``agent/_model.py``).

        Returns ``score`` [B, Q] (``-inf`` at padded queries), ``mu`` and ``log_sigma`` [B, Q], as
        ``PolicyNet.forward`` does.
        """
        w = self.weights
        roles, slots = np.asarray(batch["roles"]), np.asarray(batch["slots"])
        dim_mask = np.asarray(batch["dim_mask"], dtype=_F)
        ctx_mask, q_mask = np.asarray(batch["ctx_mask"], dtype=bool), np.asarray(batch["q_mask"], dtype=bool)
        kv = self._context_kv(np.asarray(batch["ctx_dims"], _F), np.asarray(batch["ctx_scal"], _F), roles, slots,
                              dim_mask, ctx_mask)
        q_dims, q_scal = np.asarray(batch["q_dims"], _F), np.asarray(batch["q_scal"], _F)
        outs = []
        for s in range(0, max(q_dims.shape[1], 1), max_query):
            qry = self._embed(q_dims[:, s : s + max_query], q_scal[:, s : s + max_query], roles, slots, dim_mask)
            outs.append(self._queries(qry, ctx_mask, kv))
        hq = np.concatenate(outs, axis=1)
        score = _linear(_gelu(_linear(hq, w["score_head.0.weight"], w["score_head.0.bias"])),
                        w["score_head.2.weight"], w["score_head.2.bias"])[..., 0]
        value = _linear(_gelu(_linear(hq, w["value_head.0.weight"], w["value_head.0.bias"])),
                        w["value_head.2.weight"], w["value_head.2.bias"])
        score = np.where(q_mask, score, _F(-np.inf))
        return {"score": score.astype(_F), "mu": value[..., 0].astype(_F),
                "log_sigma": np.clip(value[..., 1], *LOG_SIGMA_RANGE).astype(_F)}
