"""HW-GPT-Bench recipe: ``hwgpt-arch-v1`` (GPT architecture search, perplexity surrogates for S / M / L).

Source: Sukthanker et al., "HW-GPT-Bench" (NeurIPS 2024 Datasets & Benchmarks, arXiv 2405.10299), repo
``automl/HW-GPT-Bench``, files ``perplexity_{s,m,l}.pt``. Licence: Apache-2.0.

The ground-truth table is not public in a usable form, so this task is a *surrogate* benchmark made into a
table like the others:

* **Surrogate.** Each ``.pt`` file is a state dict of a 5-layer MLP (``fc1``..``fc5``; ReLU after the first
  four). It is loaded with ``torch.load(..., map_location="cpu", weights_only=True)`` (no arbitrary
  unpickling; torch is imported here only, lazily) and evaluated in numpy (float64).
* **Candidate pool.** For each space, :data:`POOL_SIZE` = 2,000 distinct architectures drawn with
  ``numpy.random.default_rng(POOL_SEED + k)`` (k = 0, 1, 2 for S, M, L): embed dim, layer count and bias
  uniform over their choices, and for each active layer an MLP ratio and a head count, uniform over their
  choices (see :func:`candidate_pool` for the exact draw order). Duplicates are skipped. The surrogate's perplexity of each architecture is the outcome
  (minimised).
* **Parameters.** ``embed_dim``, ``n_layers``, ``mlp_ratio_{i}`` and ``heads_{i}`` for every i below the
  space's maximum depth (12 / 24 / 36), and ``bias``. Value sets differ between S, M and L and are kept
  as published. **Inactive layers** (i >= n_layers) take the fixed value ``0`` for both ``mlp_ratio_{i}`` and
  ``heads_{i}`` ("no layer"); so the last one or two layers of each space have the choices {0, ...}.
* **Fidelity.** One axis, ``model_size``: the parameter count (formula below) of the largest architecture
  of the space (S ~ 124M, M ~ 353M, L ~ 773M). Cells are named ``"S"``, ``"M"``, ``"L"``.
* **Cost.** Per run, the architecture's own parameter count (unit ``parameters``): a proxy for training
  compute at a fixed token budget. Count (GPT-2 style, an assumption documented in docs/gym.md):
  tied token embedding ``V * E`` (V = 50,304) plus learned positions ``1,024 * E``; per active layer with
  ``h`` heads of size 64 and MLP ratio ``r``: two LayerNorms ``4E``, QKV ``E * 3*64h``, projection
  ``64h * E``, MLP ``2 * r * E^2``, plus biases ``3*64h + E + r*E + E`` when ``bias``; a final LayerNorm ``2E``.

Example:
    >>> from autollm_sampler.gym.recipes import hwgpt
    >>> task = hwgpt.build()  # doctest: +SKIP
    >>> [(c.name, len(c), round(c.optimum, 1)) for c in task.cells]  # doctest: +SKIP
    [('S', 2000, 22.6), ('M', 2000, 21.1), ('L', 2000, 18.6)]
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autollm_sampler.exceptions import RawDataError
from autollm_sampler.gym._data import raw_file, source_info
from autollm_sampler.gym._table import Cell, TabularTask, TaskMetadata
from autollm_sampler.gym.recipes._common import check_counts

__all__ = [
    "ArchSpace",
    "SPACES",
    "POOL_SIZE",
    "POOL_SEED",
    "PPL_RANGES",
    "build",
    "candidate_pool",
    "encode",
    "load_surrogate",
    "param_count",
    "predict",
]

POOL_SIZE = 2000
POOL_SEED = 20240510
VOCAB = 50304
CONTEXT = 1024
HEAD_SIZE = 64
MLP_RATIOS = (2, 3, 4)
BIAS = (True, False)  # the order of the bias one-hot block: True first
#: Plausible surrogate outputs per space (gym_data/README.md: S 22-42, M 21-36, L 18-29), with a margin.
PPL_RANGES = {"S": (20.0, 45.0), "M": (19.0, 39.0), "L": (16.0, 32.0)}


@dataclass(frozen=True)
class ArchSpace:
    """One HW-GPT-Bench search space: its value sets, in the surrogate's one-hot order."""

    name: str
    file: str
    embed_dims: tuple[int, ...]
    layers: tuple[int, ...]
    heads: tuple[int, ...]

    @property
    def max_layers(self) -> int:
        return max(self.layers)

    @property
    def input_width(self) -> int:
        return len(self.embed_dims) + len(self.layers) + self.max_layers * (len(MLP_RATIOS) + len(self.heads)) + 2


SPACES: dict[str, ArchSpace] = {
    "S": ArchSpace("S", "perplexity_s.pt", (192, 384, 768), (10, 11, 12), (4, 8, 12)),
    "M": ArchSpace("M", "perplexity_m.pt", (256, 512, 1024), (22, 23, 24), (8, 12, 16)),
    "L": ArchSpace("L", "perplexity_l.pt", (320, 640, 1280), (34, 35, 36), (8, 16, 20)),
}
ROWS, CELLS = POOL_SIZE * len(SPACES), len(SPACES)

Weights = list[tuple[np.ndarray, np.ndarray]]


def load_surrogate(path: str | os.PathLike[str], *, input_width: int | None = None) -> Weights:
    """Load the 5 (weight, bias) pairs of a surrogate state dict safely, as float64 numpy arrays.

    Raises:
        RawDataError: if torch is missing, or the file is not a state dict of the expected shapes.
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is installed with the [agent] extra
        raise RawDataError(
            "hwgpt-arch-v1 reads the HW-GPT-Bench surrogates with torch.load(weights_only=True); install "
            "torch (pip install 'autollm-sampler[agent]')"
        ) from None
    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise RawDataError(f"{str(path)!r} is not a loadable torch state dict: {exc}") from None
    out: Weights = []
    for i in range(1, 6):
        try:
            w = state[f"fc{i}.weight"].detach().cpu().numpy().astype(np.float64)
            b = state[f"fc{i}.bias"].detach().cpu().numpy().astype(np.float64)
        except (KeyError, TypeError, AttributeError):
            raise RawDataError(f"{str(path)!r} lacks the tensors fc{i}.weight / fc{i}.bias") from None
        out.append((w, b))
    if input_width is not None and out[0][0].shape[1] != input_width:
        raise RawDataError(f"{str(path)!r}: fc1 takes {out[0][0].shape[1]} inputs, expected {input_width}")
    if out[-1][0].shape[0] != 1:
        raise RawDataError(f"{str(path)!r}: fc5 has {out[-1][0].shape[0]} outputs, expected 1")
    return out


def predict(weights: Weights, x: np.ndarray) -> np.ndarray:
    """The surrogate MLP in numpy: ReLU after the first four layers, linear output. ``x``: (n, width)."""
    h = np.asarray(x, dtype=np.float64)
    for k, (w, b) in enumerate(weights):
        h = h @ w.T + b
        if k < len(weights) - 1:
            h = np.maximum(h, 0.0)
    return h[:, 0]


def encode(space: ArchSpace, arch: dict[str, Any]) -> np.ndarray:
    """The surrogate's input vector of one architecture (one-hot blocks, see gym_data/README.md)."""
    x = np.zeros(space.input_width)
    n_e, n_l, lmax = len(space.embed_dims), len(space.layers), space.max_layers
    x[space.embed_dims.index(arch["embed_dim"])] = 1.0
    x[n_e + space.layers.index(arch["n_layers"])] = 1.0
    mlp0 = n_e + n_l
    head0 = mlp0 + lmax * len(MLP_RATIOS)
    for i in range(arch["n_layers"]):
        x[mlp0 + i * len(MLP_RATIOS) + MLP_RATIOS.index(arch[f"mlp_ratio_{i}"])] = 1.0
        x[head0 + i * len(space.heads) + space.heads.index(arch[f"heads_{i}"])] = 1.0
    x[head0 + lmax * len(space.heads) + BIAS.index(arch["bias"])] = 1.0
    return x


def param_count(arch: Mapping[str, Any]) -> int:
    """Approximate parameter count of an architecture (GPT-2 style; see the module docstring)."""
    e = int(arch["embed_dim"])
    bias = bool(arch["bias"])
    total = VOCAB * e + CONTEXT * e + 2 * e
    for i in range(int(arch["n_layers"])):
        h, r = int(arch[f"heads_{i}"]), int(arch[f"mlp_ratio_{i}"])
        attn = HEAD_SIZE * h
        total += 4 * e + e * 3 * attn + attn * e + 2 * r * e * e
        if bias:
            total += 3 * attn + e + r * e + e
    return total


def _largest(space: ArchSpace) -> dict[str, Any]:
    arch: dict[str, Any] = {"embed_dim": max(space.embed_dims), "n_layers": space.max_layers, "bias": True}
    for i in range(space.max_layers):
        arch[f"mlp_ratio_{i}"], arch[f"heads_{i}"] = max(MLP_RATIOS), max(space.heads)
    return arch


def candidate_pool(space: ArchSpace, n: int = POOL_SIZE, seed: int = POOL_SEED) -> list[dict[str, Any]]:
    """``n`` distinct architectures of ``space``, drawn uniformly per choice from a fixed seed.

    Draws are made in batches of ``n`` (embed, depth, per-layer MLP ratio and heads, bias, in that order);
    an architecture equal to an earlier one is skipped, so the pool is a deterministic function of the seed.
    """
    rng = np.random.default_rng(seed)
    lmax = space.max_layers
    seen: set[tuple[Any, ...]] = set()
    pool: list[dict[str, Any]] = []
    while len(pool) < n:
        emb = np.asarray(space.embed_dims)[rng.integers(len(space.embed_dims), size=n)]
        depth = np.asarray(space.layers)[rng.integers(len(space.layers), size=n)]
        mlp = np.asarray(MLP_RATIOS)[rng.integers(len(MLP_RATIOS), size=(n, lmax))]
        heads = np.asarray(space.heads)[rng.integers(len(space.heads), size=(n, lmax))]
        bias = rng.integers(len(BIAS), size=n)
        inactive = np.arange(lmax)[None, :] >= depth[:, None]
        mlp[inactive] = 0
        heads[inactive] = 0
        for j in range(n):
            arch: dict[str, Any] = {"embed_dim": int(emb[j]), "n_layers": int(depth[j])}
            for i in range(lmax):
                arch[f"mlp_ratio_{i}"] = int(mlp[j, i])
                arch[f"heads_{i}"] = int(heads[j, i])
            arch["bias"] = BIAS[int(bias[j])]
            key = tuple(arch.values())
            if key not in seen:
                seen.add(key)
                pool.append(arch)
                if len(pool) == n:
                    break
    return pool


def _build_cell(space: ArchSpace, k: int, raw_dir: str | os.PathLike[str] | None) -> Cell:
    weights = load_surrogate(raw_file("hw_gpt_bench", space.file, raw_dir), input_width=space.input_width)
    pool = candidate_pool(space, POOL_SIZE, POOL_SEED + k)
    ppl = predict(weights, np.stack([encode(space, a) for a in pool]))
    lo, hi = PPL_RANGES[space.name]
    if not np.all(np.isfinite(ppl)) or ppl.min() < lo or ppl.max() > hi:
        raise RawDataError(
            f"hw_gpt_bench/{space.file}: surrogate perplexities span [{ppl.min():.3g}, {ppl.max():.3g}], outside "
            f"the plausible [{lo}, {hi}]; the file is not the pinned surrogate or the input encoding is wrong"
        )
    size = float(param_count(_largest(space)))
    rows = [{**a, "perplexity": float(y), "model_size": size} for a, y in zip(pool, ppl, strict=True)]
    names = ["embed_dim", "n_layers"]
    for i in range(space.max_layers):
        names += [f"mlp_ratio_{i}", f"heads_{i}"]
    names.append("bias")
    roles = {"embed_dim": "width", "n_layers": "depth", "bias": "bias"}
    for i in range(space.max_layers):
        roles[f"mlp_ratio_{i}"], roles[f"heads_{i}"] = "mlp_ratio", "heads"
    sub = TabularTask.from_table(
        rows,
        params=names,
        fidelity=["model_size"],
        objective="perplexity",
        direction="minimize",
        cost=lambda r: float(param_count(r)),
        id="hwgpt-arch-v1",
        cell_name=lambda f: space.name,
        roles=roles,
    )
    return sub.cells[0]


def build(raw_dir: str | os.PathLike[str] | None = None) -> TabularTask:
    """Build ``hwgpt-arch-v1``: 3 cells (S, M, L) of 2,000 surrogate-evaluated architectures each.

    Raises:
        RawDataError: when a surrogate file is missing, differs from the pinned version, cannot be read
            safely, or predicts implausible perplexities.
    """
    cells = [_build_cell(space, k, raw_dir) for k, space in enumerate(SPACES.values())]
    info = source_info("hw_gpt_bench")
    meta = TaskMetadata(
        objective="perplexity",
        direction="minimize",
        cost_unit="parameters (per-run proxy for training compute at a fixed token budget)",
        citation=info["citation"],
        licence=info["licence"],
        description="GPT architecture search (embed dim, depth, per-layer heads and MLP ratio, bias) on "
        f"HW-GPT-Bench perplexity surrogates; a fixed pool of {POOL_SIZE} architectures per space.",
        source=f"https://github.com/{info['repo']} @ {info['commit'][:12]}",
    )
    task = TabularTask("hwgpt-arch-v1", cells, meta)
    check_counts(task.id, task.n_rows, len(task.cells), ROWS, CELLS)
    return task
