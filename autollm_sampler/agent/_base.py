"""The agent interface shared by every backend: :class:`Agent` and :class:`Proposal`."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autollm_sampler._strict import STRICT_ENV, strict_default
from autollm_sampler._threads import one_blas_thread
from autollm_sampler.history import History
from autollm_sampler.space import SearchSpace

__all__ = ["Proposal", "Agent", "STRICT_ENV", "strict_default"]

logger = logging.getLogger(__name__)


@dataclass
class Proposal:
    """One proposed configuration with the agent's prediction and its reasons.

    Attributes:
        params: the configuration, valid in the space it was proposed for.
        predicted_value: the predicted outcome at the target fidelity (in the objective's own units).
        predicted_std: the uncertainty of that prediction (one standard deviation).
        rationale: a short plain-words reason that cites the evidence.
        source: ``"model"`` when the trained policy produced it, ``"classical"`` when the classical agent was
            asked for, ``"fallback"`` when a model agent handed over to the classical strategy (the reason is
            in ``extras["fallback"]``).
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

    Subclasses implement :meth:`_propose`. :meth:`propose` wraps it: on an internal failure it logs why and
    falls back to the classical strategy, unless the agent is :attr:`strict`, in which case the error is
    raised. Every fallback (internal error, input outside the training distribution, unreadable model
    output) is logged at WARNING, labelled ``source="fallback"`` with its reason in ``extras["fallback"]``,
    and counted in :attr:`fallback_counts`.
    """

    name = "agent"
    _strict: bool | None = None
    _fallback_counts: Counter[str] | None = None

    @property
    def strict(self) -> bool:
        """Raise internal errors instead of falling back (default: the ``AUTOLLM_STRICT`` variable)."""
        return strict_default() if self._strict is None else self._strict

    @strict.setter
    def strict(self, value: bool) -> None:
        self._strict = bool(value)

    @property
    def fallback_counts(self) -> Counter[str]:
        """How many proposals fell back to the classical strategy, by kind (``error``, ``ood``, ...)."""
        if self._fallback_counts is None:
            self._fallback_counts = Counter()
        return self._fallback_counts

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

        Raises:
            Exception: in strict mode, whatever the backend raised.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n!r}")
        if not isinstance(target, Mapping):
            hint = (f"; pass its .fidelity ({dict(target.fidelity)!r})"
                    if isinstance(getattr(target, "fidelity", None), Mapping) else "")
            raise TypeError(f"target must be a mapping of fidelity axis -> value, e.g. {{'n_params': 1e9}}; "
                            f"got {type(target).__name__}{hint}")
        rng = np.random.default_rng(seed)
        try:
            with one_blas_thread():
                return self._propose(history, space, dict(target), n, rng, candidates, list(pending))
        except Exception as exc:  # the agent must never fail a study on valid input, unless strict
            if self.strict:
                raise
            reason = f"{type(exc).__name__}: {str(exc)[:300]}"
            return self.fall_back("error", reason, history, space, dict(target), n, rng, candidates, list(pending))

    def fall_back(
        self,
        kind: str,
        reason: str,
        history: History,
        space: SearchSpace,
        target: dict[str, float],
        n: int,
        rng: np.random.Generator,
        candidates: Sequence[Mapping[str, Any]] | None,
        pending: list[Mapping[str, Any]],
    ) -> list[Proposal]:
        """Hand ``n`` proposals over to the classical strategy: logged, counted and labelled."""
        from autollm_sampler.agent._classical import ClassicalAgent

        self.fallback_counts[kind] += n
        logger.warning("agent %s falls back to the classical strategy for %d proposal(s) (%s): %s", self.name, n, kind, reason)
        out = ClassicalAgent()._propose(history, space, target, n, rng, candidates, pending)
        for p in out:
            p.source = "fallback"
            p.extras["fallback"] = f"{kind}: {reason}"
        return out

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
