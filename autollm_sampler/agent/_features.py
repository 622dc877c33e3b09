"""Space-agnostic serialization of a multi-fidelity history for the agent (numpy only, no torch).

One *token* per trial, never one per number:

* every configuration is carried into the **target** space's unit cube (numbers keep their value, see
  :func:`~autollm_sampler.space.project_unit`), so all tokens share one geometry;
* each unit-cube coordinate becomes a small vector of per-dimension channels, tagged with the
  parameter's *role* (lr, batch size, mixture weight ...) and its slot, which the model pools into the
  token embedding: that is what lets one model read a 2-parameter grid and a 75-parameter architecture;
* fidelity enters as log-ratios to the target on each axis (their sum is the log-cost ratio for
  ``n_params x n_tokens`` ladders);
* outcomes are rank-normalised and robustly z-scored *per cell*, so tasks with different units look alike.

Query tokens are candidate configurations at the target; the model scores them. Two summaries of the
evidence are computed here and given to both token types as per-dimension channels: the soft optimum of the
nearest cheaper cell, and a ridge extrapolation of the per-cell optima along the log-fidelity axes to the
target (the generic form of a scaling-law fit). Long histories are summarised per cell (the best runs plus
a spread of the rest), not truncated.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from autollm_sampler.history import History, Trial, fidelity_key
from autollm_sampler.space import ROLES, Projector, SearchSpace

__all__ = [
    "D_MAX",
    "F_AX",
    "C_MAX",
    "N_CH",
    "N_SCAL",
    "Encoded",
    "CellSummary",
    "encode",
    "feature_spec",
    "with_queries",
]

D_MAX = 96  #: widest unit cube the model reads (wider spaces fall back to the classical agent)
F_AX = 4  #: fidelity axes the model reads
C_MAX = 64  #: context tokens after summarising
N_CH = 8  #: per-dimension channels
N_SCAL = 24  #: scalar features per token
_ROLE_INDEX = {r: i for i, r in enumerate(ROLES)}

#: name and version of what the network reads; a checkpoint records :func:`feature_spec` in its config.json
#: and is refused by a library whose spec differs (bump the version with any change to the tokens)
FEATURE_SPEC_NAME = "autollm-tokens"
FEATURE_SPEC_VERSION = 1
#: the per-dimension channels of a token, in slot order (see :func:`_dims`)
CHANNELS: tuple[str, ...] = (
    "unit", "to_extrap", "to_extrap_sq", "to_near", "to_near_sq", "to_best_target", "to_best_target_sq", "present",
)
#: the scalar features of a token, in slot order: 0-15 describe a context trial, 16-23 a query candidate
SCALARS: tuple[str, ...] = (
    "is_query", "at_target", "failed", "log_cost_ratio", "delta_0", "delta_1", "delta_2", "delta_3",
    "fidelity_distance", "cell_rank", "cell_z", "target_gap", "is_context", "in_nearest_cell", "log_cell_runs",
    "reserved",
    "dist_extrap", "dist_near", "dist_best_target", "dist_tried", "has_target_runs", "log_target_runs",
    "cheap_cells", "on_tried_point",
)
_S = {n: i for i, n in enumerate(SCALARS)}
#: temperature of the rank softmax that gives a cell's soft optimum
SOFT_OPT_TEMPERATURE = 0.08
#: ridge penalty of the fidelity slopes in the extrapolation of per-cell optima (the intercept gets 1e-6)
RIDGE_PENALTY = 0.05


@dataclass
class CellSummary:
    """What the serializer learned about one fidelity cell of the history."""

    fidelity: dict[str, float]
    deltas: np.ndarray  # log-ratio to the target per axis
    n: int
    best_unit: np.ndarray
    soft_opt: np.ndarray
    best_value: float
    is_target: bool


@dataclass
class Encoded:
    """Arrays for one state: context tokens, query tokens and what is needed to read predictions back."""

    ctx_dims: np.ndarray  # [C, W, N_CH]
    ctx_scal: np.ndarray  # [C, N_SCAL]
    q_dims: np.ndarray  # [Q, W, N_CH]
    q_scal: np.ndarray  # [Q, N_SCAL]
    roles: np.ndarray  # [W] int
    slots: np.ndarray  # [W] int
    ref: float  # reference loss (lower is better) for value normalisation
    scale: float
    sign: float
    extrap: np.ndarray  # [W] extrapolated optimum in the unit cube
    near: np.ndarray  # [W] soft optimum of the nearest cheaper cell
    cells: list[CellSummary] = field(default_factory=list)
    n_context_trials: int = 0
    best_t: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tried_units: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    n_cheap: int = 0

    @property
    def width(self) -> int:
        return int(self.roles.shape[0])

    def to_y(self, values: np.ndarray) -> np.ndarray:
        """Objective values -> the model's normalised outcome scale."""
        loss = self.sign * np.asarray(values, dtype=float)
        return np.arcsinh((loss - self.ref) / self.scale)

    def from_y(self, mu: np.ndarray, sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model's (mu, sigma) -> objective value and standard deviation."""
        loss = self.ref + self.scale * np.sinh(mu)
        std = self.scale * np.cosh(mu) * sigma
        return self.sign * loss, std


def _log(x: float) -> float:
    return math.log(x) if x > 0 else 0.0


def _deltas(fid: Mapping[str, float], target: Mapping[str, float], axes: Sequence[str]) -> np.ndarray:
    out = np.zeros(F_AX)
    for i, a in enumerate(axes[:F_AX]):
        if a in fid and a in target:
            out[i] = _log(float(fid[a])) - _log(float(target[a]))
    return out


def _cell_stats(loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank in [0, 1] (0 = best) and a robust z-score (asinh-squashed) within a cell."""
    n = len(loss)
    order = np.argsort(loss, kind="stable")
    rank = np.empty(n)
    rank[order] = np.arange(n) / max(n - 1, 1)
    lo, med = float(np.min(loss)), float(np.median(loss))
    spread = med - lo
    if spread <= 0:
        spread = max(float(np.std(loss)), 1e-8 * max(1.0, abs(lo)))
    return rank, np.arcsinh((loss - lo) / spread)


def _soft_opt(units: np.ndarray, rank: np.ndarray) -> np.ndarray:
    w = np.exp(-rank / SOFT_OPT_TEMPERATURE)
    w /= w.sum()
    return (w[:, None] * units).sum(axis=0)  # type: ignore[no-any-return]


#: how far the extrapolation goes from the nearest cheap cell's optimum towards the ridge trend: picked per
#: history from these by predicting held-out cheap cells (:func:`_extrapolate`)
TREND_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: with fewer than three cheap cells no cell can be held out; the trend then counts half
DEFAULT_TREND_WEIGHT = 0.5
#: how many of the cheap cells nearest the target are held out in turn to pick the trend weight
N_HELD_OUT = 2


def _extrapolate(cells: list[CellSummary], width: int) -> np.ndarray:
    """The optimum expected at the target: from the nearest cheap cell's soft optimum towards the ridge trend.

    A straight trend in log fidelity overshoots where optima saturate or turn, and is noisy with sparse
    cells; so the weight of the trend is chosen from the history itself. Each of the ``N_HELD_OUT`` cheap
    cells nearest the target is predicted from the cells beyond it (trend weight ``a``: its nearest
    remaining cell's optimum plus ``a`` times the way to that cell's ridge extrapolation), and the weight of
    ``TREND_WEIGHTS`` with the smallest squared error is used at the target. With fewer than three cheap
    cells the weight is ``DEFAULT_TREND_WEIGHT``. "Nearest" is by the log-fidelity distance (all axes).
    """
    cheap = [c for c in cells if not c.is_target and c.n >= 2]
    if len(cheap) < 2:
        return _ridge_extrapolate(cheap, width)
    cheap = sorted(cheap, key=lambda c: float(np.linalg.norm(c.deltas)))  # nearest to the target first
    near = cheap[0].soft_opt
    trend = _ridge_extrapolate(cheap, width)
    a = trend_weight(cells, width)
    return np.clip(near + a * (trend - near), 0.0, 1.0)  # type: ignore[no-any-return]


def trend_weight(cells: list[CellSummary], width: int) -> float:
    """The weight of the cheap cells' trend in :func:`_extrapolate` (``DEFAULT_TREND_WEIGHT`` with fewer
    than three cheap cells of two runs or more; 1.0 with fewer than two, where there is no trend)."""
    cheap = sorted((c for c in cells if not c.is_target and c.n >= 2), key=lambda c: float(np.linalg.norm(c.deltas)))
    if len(cheap) < 2:
        return 1.0
    a = DEFAULT_TREND_WEIGHT
    if len(cheap) >= 3:
        errs = np.zeros(len(TREND_WEIGHTS))
        for h in range(min(N_HELD_OUT, len(cheap) - 2)):
            held, rest = cheap[h], cheap[h + 1:]
            shifted = [replace(c, deltas=c.deltas - held.deltas) for c in rest]  # the held cell as the target
            t2 = _ridge_extrapolate(shifted, width)
            n2 = min(shifted, key=lambda c: float(np.linalg.norm(c.deltas))).soft_opt  # nearest the held cell
            for i, w in enumerate(TREND_WEIGHTS):
                errs[i] += float(np.sum((n2 + w * (t2 - n2) - held.soft_opt) ** 2))
        a = TREND_WEIGHTS[int(np.argmin(errs))]
    return float(a)


def _ridge_extrapolate(cheap: list[CellSummary], width: int) -> np.ndarray:
    """Ridge fit of per-cell soft optima against log-fidelity deltas, evaluated at the target (delta 0)."""
    if not cheap:
        return np.full(width, 0.5)
    if len(cheap) == 1:
        return cheap[0].soft_opt.copy()
    X = np.stack([c.deltas for c in cheap])
    Y = np.stack([c.soft_opt for c in cheap])
    keep = np.abs(X).sum(axis=0) > 0
    X = X[:, keep]
    if X.shape[1] == 0:
        return Y.mean(axis=0)  # type: ignore[no-any-return]
    wts = np.array([math.sqrt(c.n) for c in cheap])
    A = np.hstack([np.ones((len(cheap), 1)), X])
    lam = np.diag([1e-6] + [RIDGE_PENALTY] * X.shape[1])
    Aw = A * wts[:, None]
    coef = np.linalg.solve(Aw.T @ A + lam * wts.sum(), Aw.T @ Y)
    pred = coef[0]  # at delta = 0
    # do not extrapolate further than twice the observed range allows
    lo, hi = Y.min(axis=0), Y.max(axis=0)
    span = hi - lo
    return np.clip(np.clip(pred, lo - span, hi + span), 0.0, 1.0)  # type: ignore[no-any-return]


def _select_context(groups: list[tuple[list[int], bool]], budget: int) -> list[int]:
    """Choose at most ``budget`` trial indices: all target trials, then per cell the best and a spread."""
    chosen: list[int] = []
    for idx, is_target in groups:
        if is_target:
            chosen.extend(idx[-budget:])
    left = max(budget - len(chosen), 0)
    cheap = [idx for idx, t in groups if not t]
    total = sum(len(i) for i in cheap)
    if total <= left:
        for idx in cheap:
            chosen.extend(idx)
        return chosen
    spread: list[int] = []  # every cell's best goes first, so rounding overflow only drops spread points
    for idx in cheap:  # idx is sorted best first
        quota = max(2, int(round(left * len(idx) / max(total, 1))))
        if len(idx) <= quota:
            chosen.append(idx[0])
            spread.extend(idx[1:])
            continue
        n_best = max(1, quota // 2)
        rest = idx[n_best:]
        pick = np.linspace(0, len(rest) - 1, quota - n_best).round().astype(int)
        chosen.append(idx[0])
        spread.extend(idx[1:n_best] + [rest[i] for i in sorted(set(pick.tolist()))])
    return (chosen + spread)[:budget]


def encode(
    history: History,
    space: SearchSpace,
    target: Mapping[str, float],
    queries: np.ndarray,
    *,
    max_context: int = C_MAX,
) -> Encoded:
    """Serialise ``history`` and the query points (``[Q, width]`` in ``space``'s unit cube)."""
    width = space.width
    sign = space.sign
    axes = sorted(target)
    tkey = fidelity_key(target)
    roles = np.array([_ROLE_INDEX.get(r, 0) for r in space.roles()], dtype=np.int64)
    slots = np.minimum(np.arange(width), D_MAX - 1).astype(np.int64)

    # --- usable trials, projected into the target space
    trials: list[Trial] = []
    units: list[np.ndarray] = []
    project = Projector.for_space(space)
    for t in history.trials:
        if t.state == "running":
            continue
        if t.value is None and t.state != "failed":
            continue
        trials.append(t)
        units.append(project(t.params))
    # each trial's cell key, once (a trial without fidelity is a target run)
    cell_keys = [fidelity_key(t.fidelity) if t.fidelity else tkey for t in trials]
    is_tgt = np.array([k == tkey for k in cell_keys], dtype=bool)

    # --- group by cell; failed runs count as worse than the worst observed
    by_cell: dict[Any, list[int]] = {}
    for i, key in enumerate(cell_keys):
        by_cell.setdefault(key, []).append(i)
    n = len(trials)
    loss = np.zeros(n)
    rank = np.ones(n)
    z = np.full(n, 3.0)
    failed = np.array([t.value is None for t in trials], dtype=bool)
    cells: list[CellSummary] = []
    groups: list[tuple[list[int], bool]] = []
    for key, idx in by_cell.items():
        ok = [i for i in idx if not failed[i]]
        if ok:
            lv = np.array([sign * float(trials[i].value) for i in ok])  # type: ignore[arg-type]
            r, zz = _cell_stats(lv)
            for j, i in enumerate(ok):
                loss[i], rank[i], z[i] = lv[j], r[j], zz[j]
            u_ok = np.stack([units[i] for i in ok])
            b = int(np.argmin(lv))
            fid = dict(target) if key == tkey else dict(trials[ok[0]].fidelity)
            cells.append(
                CellSummary(
                    fidelity=fid,
                    deltas=_deltas(fid, target, axes),
                    n=len(ok),
                    best_unit=u_ok[b],
                    soft_opt=_soft_opt(u_ok, r),
                    best_value=float(sign * lv[b]),
                    is_target=key == tkey,
                )
            )
        order = sorted(idx, key=lambda i: (failed[i], loss[i]))
        groups.append((order, key == tkey))

    cheap_cells = [c for c in cells if not c.is_target]
    near_cell = min(cheap_cells, key=lambda c: float(np.linalg.norm(c.deltas))) if cheap_cells else None
    tgt_cell = next((c for c in cells if c.is_target), None)
    extrap = _extrapolate(cells, width)
    near = near_cell.soft_opt if near_cell is not None else extrap
    best_t = tgt_cell.best_unit if tgt_cell is not None else near

    # --- reference for the value scale: nearest cheap cell, else target trials, else neutral
    ref_cell_idx = None
    if near_cell is not None:
        near_key = fidelity_key(near_cell.fidelity)
        ref_cell_idx = [i for i in by_cell.get(near_key, []) if not failed[i]]
    elif tgt_cell is not None:
        ref_cell_idx = [i for i in range(n) if not failed[i] and is_tgt[i]]
    if ref_cell_idx:
        lv = loss[ref_cell_idx]
        ref = float(lv.min())
        scale = float(np.median(lv) - lv.min())
        if scale <= 0:
            scale = max(abs(ref) * 0.02, 1e-6)
    else:
        ref, scale = 0.0, 1.0

    # --- context selection (summarise long histories)
    keep = _select_context(groups, max_context) if n > max_context else list(range(n))
    best_target_loss = float(loss[is_tgt & ~failed].min()) if np.any(is_tgt & ~failed) else None
    n_target = int(np.sum(is_tgt))
    tried_units = np.stack([units[i] for i in range(n) if is_tgt[i]]) if n_target else np.zeros((0, width))

    ctx_dims = np.zeros((len(keep), width, N_CH))
    ctx_scal = np.zeros((len(keep), N_SCAL))
    cell_deltas: dict[Any, np.ndarray] = {}
    for row, i in enumerate(keep):
        t = trials[i]
        ck = cell_keys[i]
        if ck not in cell_deltas:
            cell_deltas[ck] = np.zeros(F_AX) if is_tgt[i] else _deltas(t.fidelity, target, axes)
        dl = cell_deltas[ck]
        ctx_dims[row] = _dims(units[i], extrap, near, best_t)
        y_t = 0.0
        if is_tgt[i] and best_target_loss is not None and not failed[i]:
            y_t = float(np.arcsinh((loss[i] - best_target_loss) / scale))
        ctx_scal[row, _S["at_target"]] = float(is_tgt[i])
        ctx_scal[row, _S["failed"]] = float(failed[i])
        ctx_scal[row, _S["log_cost_ratio"]] = dl.sum() / 5.0
        ctx_scal[row, _S["delta_0"]:_S["delta_0"] + F_AX] = dl / 5.0
        ctx_scal[row, _S["fidelity_distance"]] = float(np.linalg.norm(dl)) / 5.0
        ctx_scal[row, _S["cell_rank"]] = rank[i]
        ctx_scal[row, _S["cell_z"]] = min(z[i], 6.0) / 3.0
        ctx_scal[row, _S["target_gap"]] = y_t
        ctx_scal[row, _S["is_context"]] = 1.0
        ctx_scal[row, _S["in_nearest_cell"]] = float(near_cell is not None and ck == fidelity_key(near_cell.fidelity))
        ctx_scal[row, _S["log_cell_runs"]] = math.log1p(len(by_cell.get(ck, []))) / 5.0
    base = Encoded(
        ctx_dims=ctx_dims.astype(np.float32),
        ctx_scal=ctx_scal.astype(np.float32),
        q_dims=np.zeros((0, width, N_CH), np.float32),
        q_scal=np.zeros((0, N_SCAL), np.float32),
        roles=roles,
        slots=slots,
        ref=ref,
        scale=scale,
        sign=sign,
        extrap=extrap,
        near=near,
        cells=cells,
        n_context_trials=n,
        best_t=best_t,
        tried_units=tried_units,
        n_cheap=len(cheap_cells),
    )
    return with_queries(base, queries)


def _dims(u: np.ndarray, extrap: np.ndarray, near: np.ndarray, best_t: np.ndarray) -> np.ndarray:
    """Per-dimension channels of points ``u`` (``[..., W]``) -> ``[..., W, N_CH]``."""
    d_e, d_n, d_b = u - extrap, u - near, u - best_t
    return np.stack([u, d_e, 4 * d_e**2, d_n, 4 * d_n**2, d_b, 4 * d_b**2, np.ones_like(u)], axis=-1)


def mean_sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean squared coordinate distance between every row of ``a`` and of ``b`` (``[len(a), len(b)]``), by
    ``|a|^2 + |b|^2 - 2 a.b`` (one matrix product, not an ``A x B x W`` array), never below 0."""
    w = max(a.shape[1], 1)
    d = a @ b.T  # the one [len(a), len(b)] array; the rest is done in place (large temporaries cost page faults)
    d *= -2.0
    d += np.einsum("ij,ij->i", a, a)[:, None]
    d += np.einsum("ij,ij->i", b, b)[None, :]
    np.maximum(d, 0.0, out=d)
    d /= w
    return d


def with_queries(base: Encoded, queries: np.ndarray) -> Encoded:
    """A copy of an encoded state with new query points (``[Q, W]`` in the unit cube)."""
    qu = np.asarray(queries, dtype=float).reshape(-1, base.width)
    Q = qu.shape[0]
    q_scal = np.zeros((Q, N_SCAL))
    q_dims = _dims(qu, base.extrap, base.near, base.best_t) if Q else np.zeros((0, base.width, N_CH))
    if Q:
        n_target = base.tried_units.shape[0]
        de = np.mean((qu - base.extrap) ** 2, axis=1)
        dn = np.mean((qu - base.near) ** 2, axis=1)
        db = np.mean((qu - base.best_t) ** 2, axis=1)
        if n_target:
            tu = base.tried_units
            dt = mean_sqdist(qu, tu).min(axis=1)
            close = np.flatnonzero(dt < 1e-9)  # a query on a tried point is exactly 0 (the product rounds)
            if len(close):
                dt[close[(tu[None, :, :] == qu[close][:, None, :]).all(axis=2).any(axis=1)]] = 0.0
        else:
            dt = np.ones(Q)
        q_scal[:, _S["is_query"]] = 1.0
        q_scal[:, _S["at_target"]] = 1.0
        q_scal[:, _S["dist_extrap"]] = np.sqrt(de) * 3
        q_scal[:, _S["dist_near"]] = np.sqrt(dn) * 3
        q_scal[:, _S["dist_best_target"]] = np.sqrt(db) * 3
        q_scal[:, _S["dist_tried"]] = np.sqrt(dt) * 3
        q_scal[:, _S["has_target_runs"]] = float(n_target > 0)
        q_scal[:, _S["log_target_runs"]] = math.log1p(n_target) / 3.0
        q_scal[:, _S["cheap_cells"]] = base.n_cheap / 10.0
        q_scal[:, _S["on_tried_point"]] = (dt < 1e-12).astype(float)
    return replace(base, q_dims=q_dims.astype(np.float32), q_scal=q_scal.astype(np.float32))


def feature_spec() -> dict[str, Any]:
    """What the network reads, by name: sizes, channel and scalar slots, the role table and every constant
    of the serialisation (JSON-ready; recorded in a checkpoint's config.json and compared at load)."""
    return {
        "name": FEATURE_SPEC_NAME,
        "version": FEATURE_SPEC_VERSION,
        "sizes": {"max_width": D_MAX, "fidelity_axes": F_AX, "max_context": C_MAX, "channels": N_CH,
                  "scalars": N_SCAL},
        "channels": {n: i for i, n in enumerate(CHANNELS)},
        "scalars": dict(_S),
        "roles": dict(_ROLE_INDEX),
        "constants": {
            "soft_opt_temperature": SOFT_OPT_TEMPERATURE,
            "ridge_penalty": RIDGE_PENALTY,
            "trend_weights": list(TREND_WEIGHTS),
            "default_trend_weight": DEFAULT_TREND_WEIGHT,
            "held_out_cells": N_HELD_OUT,
            "value_transform": "asinh((loss - best of nearest cheap cell) / (its median - best))",
        },
    }


assert len(CHANNELS) == N_CH and len(SCALARS) == N_SCAL
