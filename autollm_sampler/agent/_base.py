"""The agent interface shared by every backend: :class:`Agent` and :class:`Proposal`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autollm_sampler.history import History
from autollm_sampler.space import SearchSpace

__all__ = ["Proposal", "Agent"]

logger = logging.getLogger(__name__)


@dataclass
class Proposal:
    """One proposed configuration with the agent's prediction and its reasons.

    Attributes:
        params: the configuration, valid in the space it was proposed for.
        predicted_value: the predicted outcome at the target fidelity (in the objective's own units).
        predicted_std: the uncertainty of that prediction (one standard deviation).
        rationale: a short plain-words reason that cites the evidence.
        source: ``"model"`` when the trained policy produced it, ``"fallback"`` for a classical strategy.
    """

    params: dict[str, Any]
    predicted_value: float
    predicted_std: float
    rationale: str
    source: str = "model"
    extras: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "predicted_value": float(self.predicted_value),
            "predicted_std": float(self.predicted_std),
            "rationale": self.rationale,
            "source": self.source,
        }


class Agent:
    """Base class of every agent backend.

    Subclasses implement :meth:`_propose`. :meth:`propose` wraps it with input checks that never raise on
    valid input: on any internal failure it logs why and falls back to the classical strategy.
    """

    name = "agent"

    def propose(
        self,
        history: History,
        space: SearchSpace,
        target: Mapping[str, float],
        n: int = 1,
        seed: int | None = None,
        *,
        candidates: Sequence[Mapping[str, Any]] | None = None,
        pending: Sequence[Mapping[str, Any]] = (),
    ) -> list[Proposal]:
        """Propose ``n`` configurations for the ``target`` fidelity.

        Args:
            history: every trial so far, at any fidelity (target trials have ``fidelity == target``).
            space: the target's search space.
            target: the target fidelity point, e.g. ``{"n_params": 1.07e9, "n_tokens": 2e10}``.
            n: how many proposals to return (distinct where the space allows).
            seed: makes the proposals reproducible.
            candidates: optional finite list of allowed configurations (e.g. a benchmark grid).
            pending: configurations already running; they count as tried.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n!r}")
        rng = np.random.default_rng(seed)
        try:
            return self._propose(history, space, dict(target), n, rng, candidates, list(pending))
        except Exception as exc:  # the agent must never fail a study on valid input
            logger.warning("agent %s failed (%s: %s); falling back to the classical strategy", self.name, type(exc).__name__, exc)
            from autollm_sampler.agent._classical import ClassicalAgent

            return ClassicalAgent()._propose(history, space, dict(target), n, rng, candidates, list(pending))

    def _propose(
        self,
        history: History,
        space: SearchSpace,
        target: dict[str, float],
        n: int,
        rng: np.random.Generator,
        candidates: Sequence[Mapping[str, Any]] | None,
        pending: list[Mapping[str, Any]],
    ) -> list[Proposal]:
        raise NotImplementedError
