"""The agents' ``strict`` switch and the accounting of every classical fallback."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from autollm_sampler.agent import ClassicalAgent
from autollm_sampler.agent._base import STRICT_ENV, Agent, Proposal, strict_default
from autollm_sampler.agent._model import AgentModelConfig, TransformerAgent
from autollm_sampler.history import History, Trial
from autollm_sampler.space import SearchSpace

SPACE = SearchSpace.from_dict({"params": {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "batch_size": {"type": "categorical", "choices": [64, 128, 256]},
}})
TARGET = {"n": 1000.0}


def _history() -> History:
    rng = np.random.default_rng(0)
    trials = [Trial(id=i, params={"lr": float(10 ** rng.uniform(-4, -1)), "batch_size": int(rng.choice([64, 128, 256]))},
                    fidelity={"n": float(n)}, value=float(rng.normal(3.0, 0.1)))
              for i, n in enumerate([10] * 6 + [100] * 6)]
    return History(trials=trials)


class Broken(Agent):
    """A backend with a bug: every proposal raises."""

    name = "broken"

    def _propose(self, history: History, space: SearchSpace, target: dict[str, float], n: int,
                 rng: np.random.Generator, candidates: Sequence[Mapping[str, Any]] | None,
                 pending: list[Mapping[str, Any]]) -> list[Proposal]:
        raise RuntimeError("bug in the backend")


def test_the_suite_runs_strict() -> None:
    assert strict_default() and Broken().strict


@pytest.mark.parametrize("value, expected", [("1", True), ("true", True), ("YES", True), ("0", False),
                                             ("", False), ("no", False)])
def test_strict_default_reads_the_environment(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv(STRICT_ENV, value)
    assert strict_default() is expected
    assert Broken().strict is expected
    a = Broken()
    a.strict = not expected  # an explicit setting wins over the environment
    assert a.strict is (not expected)


def test_strict_agent_raises_the_backend_error() -> None:
    with pytest.raises(RuntimeError, match="bug in the backend"):
        Broken().propose(_history(), SPACE, TARGET, n=2, seed=0)


def test_lenient_agent_falls_back_loudly_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    a = Broken()
    a.strict = False
    with caplog.at_level(logging.WARNING, logger="autollm_sampler.agent"):
        props = a.propose(_history(), SPACE, TARGET, n=3, seed=0)
    assert len(props) == 3
    assert all(p.source == "fallback" for p in props)
    assert all(p.extras["fallback"].startswith("error: RuntimeError: bug in the backend") for p in props)
    assert a.fallback_counts == {"error": 3}
    assert "falls back" in caplog.text and "bug in the backend" in caplog.text
    for p in props:
        assert SPACE.validate_params(p.params) == p.params


def test_out_of_distribution_input_is_counted_even_when_strict() -> None:
    narrow = TransformerAgent.from_config(AgentModelConfig(hidden_size=32, num_layers=1, num_heads=2,
                                                           intermediate_size=64, max_params=1))
    props = narrow.propose(_history(), SPACE, TARGET, n=2, seed=0)
    assert [p.source for p in props] == ["fallback", "fallback"]
    assert narrow.fallback_counts == {"ood": 2}
    assert "unit-cube coordinates" in props[0].extras["fallback"]


def test_model_proposals_are_not_counted() -> None:
    a = TransformerAgent.from_config(AgentModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64))
    props = a.propose(_history(), SPACE, TARGET, n=2, seed=0)
    assert all(p.source == "model" for p in props)
    assert sum(a.fallback_counts.values()) == 0


def test_classical_agent_asked_for_is_labelled_classical() -> None:
    props = ClassicalAgent().propose(_history(), SPACE, TARGET, n=2, seed=0)
    assert all(p.source == "classical" and "fallback" not in p.extras for p in props)
