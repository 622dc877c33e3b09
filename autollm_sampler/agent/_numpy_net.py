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

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autollm_sampler.agent._features import D_MAX, N_CH, N_SCAL
from autollm_sampler.space import ROLES

__all__ = ["NumpyPolicyNet", "NumpyEnsembleNet", "expected_shapes", "RMS_EPS", "LOG_SIGMA_RANGE"]

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


# The elementwise steps below work in place where they can: on a 2-core machine every large temporary is a
# fresh allocation of a few hundred KB that glibc maps and unmaps each time, and those page faults cost more
# than the arithmetic (measured: the ensemble's forward pass over 300 candidates took 7.5 ms with the plain
# expressions and 4.6 ms with glibc told to keep freed memory, which is what fewer temporaries gives).


def _erf(x: np.ndarray) -> np.ndarray:
    """erf, elementwise: Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7 everywhere), in the
    input's dtype (in float32 that is as accurate as float32 arithmetic can tell). ``x`` is not changed."""
    f = x.dtype.type
    ax = np.abs(x)
    t = ax * f(0.3275911)
    t += f(1.0)
    np.reciprocal(t, out=t)
    poly = t * f(1.061405429)
    for c in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        poly += f(c)
        poly *= t
    np.multiply(ax, ax, out=ax)
    np.negative(ax, out=ax)
    np.exp(ax, out=ax)
    poly *= ax
    np.subtract(f(1.0), poly, out=poly)
    return np.copysign(poly, x, out=poly)  # type: ignore[no-any-return]


def _gelu(x: np.ndarray) -> np.ndarray:
    """torch's exact (erf) GELU, float32; ``x`` is not changed."""
    x = np.asarray(x, _F)
    e = _erf(x * _F(1.0 / np.sqrt(2.0)))
    e += _F(1.0)
    e *= _F(0.5)
    e *= x
    return e


def _silu_mul(g: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``silu(g) * u`` (the gated MLP's product), float32, in one new array."""
    e = np.negative(g, dtype=_F)
    np.exp(e, out=e)
    e += _F(1.0)
    np.divide(g, e, out=e)
    e *= u
    return e


def _mask_bias(mask: np.ndarray) -> np.ndarray:
    """0 where ``mask`` allows attention, ``-inf`` where it does not (added to the attention scores)."""
    bias = np.zeros(mask.shape, _F)
    bias[~mask] = -np.inf
    return bias


def _rms(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``LlamaRMSNorm``: ``w * x / sqrt(mean(x^2) + eps)`` over the last axis, float32."""
    ms = np.einsum("...i,...i->...", x, x)[..., None] / _F(x.shape[-1])
    ms += _F(RMS_EPS)
    np.sqrt(ms, out=ms)
    out = np.divide(x, ms, dtype=_F)
    out *= w
    return out


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
        self._stack: NumpyEnsembleNet | None = None  # this network alone, packed (built on first forward)

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

    def forward(self, batch: Mapping[str, Any], *, max_query: int = 256) -> dict[str, np.ndarray]:
        """Policy logits and value outputs for a padded batch (``pad_arrays`` of ``agent/_model.py``).

        Returns ``score`` [B, Q] (``-inf`` at padded queries), ``mu`` and ``log_sigma`` [B, Q], as
        ``PolicyNet.forward`` does.
        """
        if self._stack is None:
            self._stack = NumpyEnsembleNet([self])
        return {k: v[0] for k, v in self._stack.forward(batch, max_query=max_query).items()}


class NumpyEnsembleNet:
    """Several networks of one architecture run as one: their weights are stacked on a leading member axis,
    so the members' forward passes are the same numpy calls (the one implementation of the forward pass;
    :meth:`NumpyPolicyNet.forward` is this with one member).

    Every activation is ``[M, B, T, d]`` (members, states, tokens, width); the matrices are stored
    transposed, ``[M, 1, in, out]``, so ``x @ w`` broadcasts over the states, and the query/key/value and
    gate/up projections are each one product.
    """

    def __init__(self, nets: Sequence[NumpyPolicyNet]) -> None:
        if not nets:
            raise ValueError("an ensemble needs at least one network")
        n0 = nets[0]
        arch = (n0.hidden_size, n0.num_layers, n0.num_heads, n0.intermediate_size)
        for n in nets[1:]:
            if (n.hidden_size, n.num_layers, n.num_heads, n.intermediate_size) != arch:
                raise ValueError(f"ensemble members must share one architecture: {arch} != "
                                 f"{(n.hidden_size, n.num_layers, n.num_heads, n.intermediate_size)}")
        self.members = len(nets)
        self.hidden_size, self.num_layers, self.num_heads, self.intermediate_size = arch
        ws = [n.weights for n in nets]

        def st(k: str) -> np.ndarray:
            return np.stack([w[k] for w in ws])

        def mat(*keys: str) -> np.ndarray:  # [M, 1, in, out]: torch's [out, in] weights, transposed, side by side
            return np.ascontiguousarray(np.concatenate([st(k).transpose(0, 2, 1) for k in keys], axis=-1)[:, None])

        def vec(k: str) -> np.ndarray:  # [M, 1, 1, n]: a bias or a norm weight
            return np.ascontiguousarray(st(k)[:, None, None, :])

        self.role, self.slot = st("role_w.weight"), st("slot_w.weight")
        self.scal_w, self.scal_b = mat("scal.weight"), vec("scal.bias")
        self.mix_w, self.mix_b = mat("mix.1.weight"), vec("mix.1.bias")
        self.norm = vec("backbone.norm.weight")
        # the score and value heads' first layers as one product; their second layers as one block-diagonal one
        d = self.hidden_size
        self.head_w0 = mat("score_head.0.weight", "value_head.0.weight")
        self.head_b0 = np.concatenate([vec("score_head.0.bias"), vec("value_head.0.bias")], axis=-1)
        w2 = np.zeros((self.members, 1, 2 * d, 3), _F)
        w2[:, 0, :d, :1] = st("score_head.2.weight").transpose(0, 2, 1)
        w2[:, 0, d:, 1:] = st("value_head.2.weight").transpose(0, 2, 1)
        self.head_w2 = w2
        self.head_b2 = np.concatenate([vec("score_head.2.bias"), vec("value_head.2.bias")], axis=-1)
        self.layers = []
        for i in range(self.num_layers):
            p = f"backbone.layers.{i}."
            a = p + "self_attn."
            self.layers.append((
                vec(p + "input_layernorm.weight"), mat(a + "q_proj.weight", a + "k_proj.weight", a + "v_proj.weight"),
                mat(a + "o_proj.weight"), vec(p + "post_attention_layernorm.weight"),
                mat(p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"), mat(p + "mlp.down_proj.weight"),
            ))
        # the context pass of the last forward: one propose scores several query sets against one history
        self._ctx_memo: tuple[tuple[np.ndarray, ...], list[tuple[np.ndarray, np.ndarray]]] | None = None

    # ------------------------------------------------------------------ pieces
    def _embed(self, dims: np.ndarray, scal: np.ndarray, roles: np.ndarray, slots: np.ndarray,
               dim_mask: np.ndarray) -> np.ndarray:
        M, d = self.members, self.hidden_size
        B, W = roles.shape
        wts = (self.role[:, roles] + self.slot[:, slots]).reshape(M, B, W, N_CH, d)
        wts = wts * dim_mask[None, :, :, None, None]
        width = np.sqrt(np.maximum(dim_mask.sum(axis=1), 1.0))[None, :, None, None]
        h = np.einsum("btwk,mbwkd->mbtd", dims, wts, optimize=True) / width
        out = _gelu(h) @ self.mix_w
        out += self.mix_b
        out += scal @ self.scal_w
        out += self.scal_b
        return out

    def _split(self, x: np.ndarray) -> np.ndarray:
        M, B, T, _ = x.shape
        return x.reshape(M, B, T, self.num_heads, self.hidden_size // self.num_heads).transpose(0, 1, 3, 2, 4)

    def _merge(self, o: np.ndarray) -> np.ndarray:
        M, B, _, T, _ = o.shape
        return o.transpose(0, 1, 3, 2, 4).reshape(M, B, T, self.hidden_size)

    def _qkv(self, x: np.ndarray, ln: np.ndarray, qkv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d = self.hidden_size
        h = _rms(x, ln) @ qkv
        return self._split(h[..., :d]), self._split(h[..., d : 2 * d]), self._split(h[..., 2 * d :])

    def _mlp(self, x: np.ndarray, ln: np.ndarray, gu: np.ndarray, down: np.ndarray) -> np.ndarray:
        h = _rms(x, ln) @ gu
        m = self.intermediate_size
        return _silu_mul(h[..., :m], h[..., m:]) @ down  # type: ignore[no-any-return]

    def _context(self, ctx: np.ndarray, ctx_mask: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Run the context through every layer; return each layer's (keys, values) for the queries."""
        scale = _F(1.0 / np.sqrt(self.hidden_size // self.num_heads))
        C = ctx.shape[2]
        # context token i attends to the unmasked context tokens and to itself (an additive mask: np.where
        # over the scores costs ten times the addition)
        allow = _mask_bias(ctx_mask[:, None, :] | np.eye(C, dtype=bool)[None])[None, :, None]
        kv: list[tuple[np.ndarray, np.ndarray]] = []
        x = ctx
        for ln1, qkv, o_w, ln2, gu, down in self.layers:
            q, k, v = self._qkv(x, ln1, qkv)
            kv.append((k.swapaxes(-1, -2).copy(), v))
            s = q @ kv[-1][0]
            s *= scale
            s += allow
            s -= s.max(axis=-1, keepdims=True)
            np.exp(s, out=s)
            s /= s.sum(axis=-1, keepdims=True)
            x += self._merge(s @ v) @ o_w
            x += self._mlp(x, ln2, gu, down)
        return kv

    def _queries(self, qry: np.ndarray, ctx_mask: np.ndarray, kv: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        scale = _F(1.0 / np.sqrt(self.hidden_size // self.num_heads))
        allow = _mask_bias(ctx_mask)[None, :, None, None, :]
        x = qry
        for (ln1, qkv, o_w, ln2, gu, down), (kt, vc) in zip(self.layers, kv, strict=True):
            q, k, v = self._qkv(x, ln1, qkv)
            s = q @ kt  # [M, B, H, Q, C]: the query's scores over the context
            s *= scale
            s += allow
            s_self = np.einsum("...i,...i->...", q, k)[..., None] * scale  # [M, B, H, Q, 1]: over itself
            top = np.maximum(s.max(axis=-1, keepdims=True), s_self)
            s -= top
            np.exp(s, out=s)
            s_self -= top
            np.exp(s_self, out=s_self)
            norm = s.sum(axis=-1, keepdims=True) + s_self
            o = s @ vc
            o += s_self * v
            o /= norm
            x += self._merge(o) @ o_w
            x += self._mlp(x, ln2, gu, down)
        return _rms(x, self.norm)

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
        """Every member's policy logits and value outputs for a padded batch: ``score``, ``mu`` and
        ``log_sigma``, each ``[M, B, Q]`` (``score`` is ``-inf`` at padded queries).

        Queries are independent of each other, so ``max_query`` (queries per chunk) bounds memory only; numpy
        runs chunks of at least 1,024 queries, which gives the same outputs as smaller ones.
        """
        roles, slots = np.asarray(batch["roles"]), np.asarray(batch["slots"])
        dim_mask = np.asarray(batch["dim_mask"], dtype=_F)
        ctx_mask, q_mask = np.asarray(batch["ctx_mask"], dtype=bool), np.asarray(batch["q_mask"], dtype=bool)
        kv = self._context_kv(np.asarray(batch["ctx_dims"], _F), np.asarray(batch["ctx_scal"], _F), roles, slots,
                              dim_mask, ctx_mask)
        q_dims, q_scal = np.asarray(batch["q_dims"], _F), np.asarray(batch["q_scal"], _F)
        chunk = max(int(max_query), _MIN_CHUNK)
        outs = []
        for s in range(0, max(q_dims.shape[1], 1), chunk):
            qry = self._embed(q_dims[:, s : s + chunk], q_scal[:, s : s + chunk], roles, slots, dim_mask)
            outs.append(self._queries(qry, ctx_mask, kv))
        hq = np.concatenate(outs, axis=2)
        out = _gelu(hq @ self.head_w0 + self.head_b0) @ self.head_w2 + self.head_b2  # [M, B, Q, 3]
        score = np.where(q_mask[None], out[..., 0], _F(-np.inf))
        return {"score": score.astype(_F), "mu": out[..., 1].astype(_F),
                "log_sigma": np.clip(out[..., 2], *LOG_SIGMA_RANGE).astype(_F)}


#: the fewest queries numpy runs in one chunk (whatever ``max_query`` says: chunking bounds memory only)
_MIN_CHUNK = 1024
