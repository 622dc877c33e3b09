"""The agent's space-agnostic serialization (``autollm_sampler.agent._features``): numpy only, no model."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autollm_sampler.agent._features import C_MAX, N_CH, N_SCAL, encode, with_queries
from autollm_sampler.history import History, Trial
from autollm_sampler.space import SearchSpace

# Columns of a context token's scalar features (see ``encode``).
IS_TARGET, FAILED, DELTAS, RANK = 1, 2, slice(4, 8), 9

LR_BS = SearchSpace.from_dict(
    {
        "params": {
            "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
            "batch_size": {"type": "categorical", "choices": [64, 128, 256, 512]},
            "opt": {"type": "categorical", "choices": ["adam", "lion"]},
        }
    }
)
TARGET = {"n_params": 1e9, "n_tokens": 2e10}


def _history(
    space: SearchSpace,
    cells: list[dict[str, float]],
    per_cell: int,
    *,
    n_target: int = 0,
    seed: int = 0,
) -> History:
    rng = np.random.default_rng(seed)
    h = History()
    for fid in [*cells, *([TARGET] if n_target else [])]:
        for _ in range(n_target if fid is TARGET else per_cell):
            h.add(Trial(id=h.next_id(), params=space.sample(rng), fidelity=dict(fid), value=float(rng.normal(3, 0.3))))
    return h


def _cheap_cells(k: int) -> list[dict[str, float]]:
    return [{"n_params": 1e7 * 2**i, "n_tokens": 2e8 * 2**i} for i in range(k)]


def test_encode_shapes_and_dtypes() -> None:
    h = _history(LR_BS, _cheap_cells(3), 10, n_target=2)
    q = np.random.default_rng(1).random((7, LR_BS.width))
    enc = encode(h, LR_BS, TARGET, q)
    W = LR_BS.width
    assert enc.width == W == 3
    assert enc.ctx_dims.shape == (32, W, N_CH) and enc.ctx_scal.shape == (32, N_SCAL)
    assert enc.q_dims.shape == (7, W, N_CH) and enc.q_scal.shape == (7, N_SCAL)
    assert enc.roles.shape == enc.slots.shape == (W,)
    assert enc.extrap.shape == enc.near.shape == enc.best_t.shape == (W,)
    assert enc.tried_units.shape == (2, W)
    for arr in (enc.ctx_dims, enc.ctx_scal, enc.q_dims, enc.q_scal):
        assert arr.dtype == np.float32 and np.all(np.isfinite(arr))
    assert enc.n_context_trials == 32 and enc.n_cheap == 3
    assert len(enc.cells) == 4 and sum(c.is_target for c in enc.cells) == 1
    # channel 0 of a query token is the query point itself
    np.testing.assert_allclose(enc.q_dims[:, :, 0], q, atol=1e-6)
    # the role ids follow the space: lr, batch_size, other
    from autollm_sampler.space import ROLES

    assert [ROLES[i] for i in enc.roles] == ["lr", "batch_size", "other"]


def test_with_queries_replaces_only_the_queries() -> None:
    h = _history(LR_BS, _cheap_cells(2), 8)
    base = encode(h, LR_BS, TARGET, np.zeros((0, LR_BS.width)))
    assert base.q_dims.shape == (0, LR_BS.width, N_CH)
    q = np.full((4, LR_BS.width), 0.25)
    enc = with_queries(base, q)
    full = encode(h, LR_BS, TARGET, q)
    np.testing.assert_array_equal(enc.ctx_dims, base.ctx_dims)
    np.testing.assert_allclose(enc.q_dims, full.q_dims)
    np.testing.assert_allclose(enc.q_scal, full.q_scal)


def test_failed_and_running_trials() -> None:
    h = _history(LR_BS, _cheap_cells(1), 5)
    rng = np.random.default_rng(3)
    h.add(Trial(id=100, params=LR_BS.sample(rng), fidelity=_cheap_cells(1)[0], state="failed"))
    h.add(Trial(id=101, params=LR_BS.sample(rng), fidelity=TARGET, state="running"))
    enc = encode(h, LR_BS, TARGET, np.zeros((0, LR_BS.width)))
    # the running trial is not evidence; the failed one is, flagged and ranked worst
    assert enc.ctx_dims.shape[0] == 6
    failed = enc.ctx_scal[:, FAILED] == 1
    assert failed.sum() == 1 and enc.ctx_scal[failed, RANK][0] == 1.0


def _rows_of(enc_units: np.ndarray, u: np.ndarray) -> bool:
    return bool(np.any(np.all(np.abs(enc_units - u[None]) < 1e-6, axis=1)))


@pytest.mark.parametrize(
    ("n_cells", "per_cell", "n_target", "max_context"),
    [(5, 30, 2, 50), (3, 40, 6, 20), (12, 25, 10, C_MAX), (4, 10, 3, 30)],
)
def test_context_summary_caps_tokens_and_keeps_target_and_cell_bests(
    n_cells: int, per_cell: int, n_target: int, max_context: int
) -> None:
    space = SearchSpace.from_dict({"params": {"lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
                                              "x": {"type": "float", "low": 0.0, "high": 1.0}}})
    cells = _cheap_cells(n_cells)
    h = _history(space, cells, per_cell, n_target=n_target, seed=n_cells)
    enc = encode(h, space, TARGET, np.zeros((0, space.width)), max_context=max_context)
    n_total = n_cells * per_cell + n_target
    assert enc.n_context_trials == n_total
    C = enc.ctx_dims.shape[0]
    assert C <= max_context, f"{C} context tokens for max_context={max_context}"
    assert C >= max_context - n_cells  # the quota rounding may leave a few slots free, not more
    units = enc.ctx_dims[:, :, 0].astype(float)
    # every target trial is kept
    assert int(enc.ctx_scal[:, IS_TARGET].sum()) == n_target
    for t in h.at(TARGET):
        assert _rows_of(units, space.to_unit(t.params))
    # each cheaper cell keeps its best run (rank 0 in its cell) and is represented by >= 2 tokens
    for fid in cells:
        best = h.best("minimize", fid)
        assert best is not None
        assert _rows_of(units, space.to_unit(best.params)), f"best run of cell {fid} was dropped"
        deltas = np.array([math.log(fid[a] / TARGET[a]) for a in sorted(TARGET)]) / 5.0
        in_cell = np.all(np.abs(enc.ctx_scal[:, DELTAS][:, :2] - deltas) < 1e-5, axis=1)
        assert in_cell.sum() >= 2
        assert np.any(enc.ctx_scal[in_cell, RANK] == 0.0)


def test_short_history_is_not_summarised() -> None:
    h = _history(LR_BS, _cheap_cells(2), 10, n_target=1)
    enc = encode(h, LR_BS, TARGET, np.zeros((0, LR_BS.width)))
    assert enc.ctx_dims.shape[0] == 21


def test_no_history_extrapolates_to_the_centre() -> None:
    enc = encode(History(), LR_BS, TARGET, np.random.default_rng(0).random((3, LR_BS.width)))
    assert enc.ctx_dims.shape[0] == 0
    np.testing.assert_allclose(enc.extrap, 0.5)
    np.testing.assert_allclose(enc.near, 0.5)
    assert enc.cells == [] and enc.n_cheap == 0
    assert (enc.ref, enc.scale) == (0.0, 1.0)
    assert np.all(np.isfinite(enc.q_scal))


def test_extrapolation_follows_the_trend_across_cells() -> None:
    """The optimum of lr moves up by 0.1 (unit cube) per cell; the extrapolation continues the trend."""
    space = SearchSpace.from_dict({"params": {"lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True}}})
    grid = np.linspace(0.0, 1.0, 21)
    h = History()
    cells = _cheap_cells(3)
    for k, fid in enumerate(cells):
        opt = 0.2 + 0.1 * k
        for u in grid:
            h.add(Trial(id=h.next_id(), params=space.from_unit([u]), fidelity=fid, value=2.0 + (u - opt) ** 2))
    enc = encode(h, space, TARGET, np.zeros((0, 1)))
    nearest = enc.cells[-1]
    assert not nearest.is_target and nearest.soft_opt[0] == pytest.approx(0.4, abs=0.02)
    np.testing.assert_allclose(enc.near, nearest.soft_opt)
    assert enc.extrap[0] > nearest.soft_opt[0] + 0.05


def test_projection_across_spaces_with_different_value_sets() -> None:
    """HW-GPT-Bench style: the cheap cell's choices differ from the target's, and it has fewer layers."""
    small = SearchSpace.from_dict({"params": {
        "embed_dim": {"type": "categorical", "choices": [192, 384, 768]},
        "heads_0": {"type": "categorical", "choices": [4, 8, 12]},
        "heads_1": {"type": "categorical", "choices": [4, 8, 12]},
        "act": {"type": "categorical", "choices": ["gelu", "relu", "swish"]},
    }})
    large = SearchSpace.from_dict({"params": {
        "embed_dim": {"type": "categorical", "choices": [320, 640, 1280]},
        "heads_0": {"type": "categorical", "choices": [8, 16, 20]},
        "heads_1": {"type": "categorical", "choices": [8, 16, 20]},
        "heads_2": {"type": "categorical", "choices": [8, 16, 20]},
        "act": {"type": "categorical", "choices": ["gelu", "swish"]},
    }})
    h = History()
    rows = [
        {"embed_dim": 384, "heads_0": 12, "heads_1": 8, "act": "swish"},
        {"embed_dim": 768, "heads_0": 4, "heads_1": 12, "act": "relu"},
    ]
    for i, p in enumerate(rows):
        h.add(Trial(id=i, params=small.validate_params(p), fidelity={"size": 1e8}, value=20.0 + i))
    enc = encode(h, large, {"size": 1e9}, np.zeros((0, large.width)))
    u = enc.ctx_dims[:, :, 0].astype(float)
    assert u.shape == (2, large.width)
    # the width keeps its value on the target's log axis: 384 lies between 320 (0.0) and 640 (0.5)
    assert u[0, 0] == pytest.approx(0.5 * math.log(384 / 320) / math.log(2), abs=1e-6)
    assert u[1, 0] == pytest.approx(0.5 * math.log(768 / 640) / math.log(2) + 0.5, abs=1e-6)
    # heads 12 sits between 8 and 16 (linear axis: 8 -> 0, 16 -> 2/3, 20 -> 1); 4 is clipped to the lowest
    assert u[0, 1] == pytest.approx(((12 - 8) / 12), abs=1e-6)
    assert u[1, 1] == pytest.approx(0.0, abs=1e-6)
    # heads_2 does not exist in the small space: it takes the mean of the other heads coordinates
    assert u[0, 3] == pytest.approx((u[0, 1] + u[0, 2]) / 2, abs=1e-6)
    # a string choice present in both keeps its identity; a missing one falls back to the centre
    assert u[0, 4] == pytest.approx(1.0) and u[1, 4] == pytest.approx(0.5)
    assert np.all((u >= 0) & (u <= 1))


@pytest.mark.parametrize("direction", ["minimize", "maximize"])
def test_to_y_and_from_y_are_inverse(direction: str) -> None:
    space = SearchSpace.from_dict({"direction": direction, "params": {"x": {"type": "float", "low": 0, "high": 1}}})
    rng = np.random.default_rng(5)
    h = History()
    for i in range(12):
        h.add(Trial(id=i, params={"x": float(rng.random())}, fidelity={"n": 1e6}, value=float(rng.normal(50, 5))))
    enc = encode(h, space, {"n": 1e8}, np.zeros((0, 1)))
    values = np.array([30.0, 45.5, 50.0, 61.2, 120.0])
    y = enc.to_y(values)
    back, std = enc.from_y(y, np.full(len(y), 0.1))
    np.testing.assert_allclose(back, values, rtol=1e-10)
    assert np.all(std > 0)
    # better outcomes map to lower y in both directions
    order = np.argsort(y)
    expected = np.argsort(values) if direction == "minimize" else np.argsort(-values)
    np.testing.assert_array_equal(order, expected)
    # and a y round trip
    np.testing.assert_allclose(enc.to_y(enc.from_y(np.array([-1.0, 0.0, 2.0]), np.ones(3))[0]), [-1.0, 0.0, 2.0])


def _cells(optima: list[float], sizes: list[float]) -> list:  # type: ignore[type-arg]
    from autollm_sampler.agent._features import CellSummary

    target = 1e10
    return [CellSummary(fidelity={"n": s}, deltas=np.array([math.log(s / target), 0.0]), n=10,
                        best_unit=np.array([o]), soft_opt=np.array([o]), best_value=1.0, is_target=False)
            for o, s in zip(optima, sizes, strict=True)]


def test_extrapolation_follows_a_straight_trend_and_not_a_saturated_one() -> None:
    from autollm_sampler.agent._features import DEFAULT_TREND_WEIGHT, _extrapolate, _ridge_extrapolate

    sizes = [1e6, 1e7, 1e8, 1e9]
    # optimum falls by 0.1 per decade: held-out cells are predicted best by the full trend -> 0.3 at 1e10
    straight = _cells([0.7, 0.6, 0.5, 0.4], sizes)
    assert _extrapolate(straight, 1)[0] == pytest.approx(_ridge_extrapolate(straight, 1)[0])
    assert _extrapolate(straight, 1)[0] == pytest.approx(0.3, abs=0.02)
    # optimum moved fast at small sizes and has stopped: the trend would overshoot, the nearest cell stays
    saturated = _cells([0.9, 0.6, 0.5, 0.5], sizes)
    ridge, got = _ridge_extrapolate(saturated, 1)[0], _extrapolate(saturated, 1)[0]
    assert ridge < 0.4
    assert ridge < got <= 0.5 and 0.5 - got < (0.5 - ridge) / 2
    # two cells: nothing to hold out, the trend counts DEFAULT_TREND_WEIGHT
    two = _cells([0.6, 0.5], sizes[2:])
    want = 0.5 + DEFAULT_TREND_WEIGHT * (_ridge_extrapolate(two, 1)[0] - 0.5)
    assert _extrapolate(two, 1)[0] == pytest.approx(want)


def test_trend_weight_is_the_one_the_extrapolation_uses() -> None:
    from autollm_sampler.agent._features import _extrapolate, _ridge_extrapolate, trend_weight

    sizes = [1e6, 1e7, 1e8, 1e9]
    for optima in ([0.7, 0.6, 0.5, 0.4], [0.9, 0.6, 0.5, 0.5], [0.2, 0.6, 0.3, 0.5]):
        cells = _cells(optima, sizes)
        w = trend_weight(cells, 1)
        assert w in (0.0, 0.25, 0.5, 0.75, 1.0)
        ridge = _ridge_extrapolate(cells, 1)[0]
        near = optima[-1]  # the 1e9 cell is the nearest to the 1e10 target
        assert _extrapolate(cells, 1)[0] == pytest.approx(np.clip(near + w * (ridge - near), 0, 1))
    assert trend_weight(_cells([0.7, 0.6, 0.5, 0.4], sizes), 1) == 1.0
