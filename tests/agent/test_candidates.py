"""The agent's vectorised candidate path: snapping many unit points matches the one-by-one round trip."""

from __future__ import annotations

import numpy as np
import pytest

from autollm_sampler import History, SearchSpace
from autollm_sampler.agent import load_agent
from autollm_sampler.agent._model import unit_keys


def _spaces() -> list[SearchSpace]:
    return [
        SearchSpace.from_dict({"params": {
            "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
            "warmup": {"type": "int", "low": 0, "high": 2000, "step": 100},
            "bs": {"type": "categorical", "choices": [32, 64, 128, 256, 512]},
        }}),
        SearchSpace.from_dict({"params": {
            "layers": {"type": "int", "low": 2, "high": 48, "log": True},
            "drop": {"type": "float", "low": 0.0, "high": 0.3, "step": 0.05},
            "act": {"type": "categorical", "choices": ["gelu", "relu", "swiglu"]},
            "const": {"type": "int", "low": 3, "high": 3},
            "mix": {"type": "simplex", "components": ["web", "code", "books"]},
        }}),
        SearchSpace.from_dict({"params": {
            "x": {"type": "float", "low": -3.0, "high": 7.0},
            "flag": {"type": "categorical", "choices": [True, False]},
            "w": {"type": "float", "low": 2.0, "high": 2.0},
        }}),
    ]


@pytest.mark.parametrize("idx", range(3))
def test_snap_unit_many_matches_the_round_trip(idx: int) -> None:
    space = _spaces()[idx]
    rng = np.random.default_rng(idx)
    raw = np.concatenate([rng.random((300, space.width)), rng.normal(0.5, 0.8, (100, space.width))])
    fast = space.snap_unit_many(raw)
    slow = np.stack([space.to_unit(space.from_unit(np.clip(u, 0, 1))) for u in raw])
    np.testing.assert_allclose(fast, slow, atol=1e-9)
    # snapping is idempotent and from_unit of a snapped point gives the same configuration
    np.testing.assert_allclose(space.snap_unit_many(fast), fast, atol=1e-12)
    for u, v in zip(fast[:50], raw[:50], strict=True):
        assert space.config_key(space.from_unit(u)) == space.config_key(space.from_unit(np.clip(v, 0, 1)))


def test_snap_unit_many_rejects_a_wrong_shape() -> None:
    space = _spaces()[0]
    with pytest.raises(ValueError, match="expected"):
        space.snap_unit_many(np.zeros((4, space.width + 1)))


def test_unit_keys_match_exactly_equal_snapped_points() -> None:
    space = _spaces()[0]
    u = space.snap_unit_many(np.random.default_rng(0).random((200, space.width)))
    keys = unit_keys(u)
    configs = {space.config_key(space.from_unit(r)) for r in u}
    # a grid-valued space: distinct keys are distinct configurations, except continuous lr differences
    assert len(set(keys.tolist())) == len(np.unique(np.round(u, 9), axis=0))
    assert len(configs) == len(set(keys.tolist()))


def test_generated_candidates_never_repeat_a_tried_target_configuration() -> None:
    """A tiny finite space: every proposal is untried until the grid is exhausted."""
    space = SearchSpace.from_dict({"params": {
        "bs": {"type": "categorical", "choices": [64, 128, 256]},
        "warmup": {"type": "int", "low": 0, "high": 300, "step": 100},
    }})
    agent = load_agent("default")
    rows = [{"params": {"bs": b, "warmup": w}, "fidelity": {"n": 1e8}, "value": 3.0 + 0.001 * b + 1e-4 * w}
            for b in (64, 128, 256) for w in (0, 100, 200, 300)]
    history = History()
    for i, r in enumerate(rows):
        history.add({"id": i, **r})
    seen: set[tuple[object, ...]] = set()
    for step in range(12):
        p = agent.propose(history, space, {"n": 1e9}, seed=0)[0]
        key = space.config_key(p.params)
        assert key not in seen
        seen.add(key)
        history.add({"id": 100 + step, "params": p.params, "fidelity": {"n": 1e9}, "value": 3.0})
    assert len(seen) == 12
