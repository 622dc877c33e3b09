"""The OptunaHub face of autollm-sampler: the trained research agent as an Optuna sampler.

The class is the library's :class:`autollm_sampler.integrations.optuna.AutoLLMSampler` with one convenience
for hub users: the fidelity axes default to the keys of ``target``, so ``AutoLLMSampler(target={"n_params":
7e9})`` is enough. Everything else (cost-aware mode, mixtures, ``explain``, ``recommend``) is the library's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from autollm_sampler.integrations.optuna import AutoLLMSampler as _LibrarySampler


class AutoLLMSampler(_LibrarySampler):
    """Proposes each trial's configuration with the autollm research agent, from the study's multi-fidelity
    history (cheap runs whose fidelity is in their user attributes) for the expensive ``target``.

    Args:
        target: the expensive fidelity point the study optimises, e.g. ``{"n_params": 7e9, "n_tokens":
            1.4e11}``. Omitted: every trial is a target trial (plain single-fidelity use).
        fidelity: the names of the fidelity axes; default: the keys of ``target``.
        agent: ``"default"`` (the trained agent shipped with the package; a numpy forward pass),
            ``"classical"`` (transfer from the nearest cheaper cell, no model) or a checkpoint folder.
        seed: makes the proposals reproducible.
        **kwargs: any other argument of the library's ``AutoLLMSampler`` (``fidelity_levels=``, ``budget=``,
            ``mixtures=``, ``roles=``, ``fallback_sampler=``, ...).
    """

    def __init__(
        self,
        target: Mapping[str, float] | None = None,
        *,
        fidelity: Sequence[str] | None = None,
        agent: Any = "default",
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        if fidelity is None:
            fidelity = tuple(target) if target else ()
        super().__init__(fidelity=fidelity, target=target, agent=agent, seed=seed, **kwargs)
