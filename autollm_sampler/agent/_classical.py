"""The classical fallback agent: transfer from the nearest cheaper cell, then random.

It needs no model and no torch. It is the stand-in used when the trained agent cannot handle an input
(unknown structure, too many parameters, empty space), and a baseline in its own right.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autollm_sampler.agent._base import Agent, Proposal
from autollm_sampler.history import History, fidelity_key
from autollm_sampler.space import SearchSpace
from autollm_sampler.strategies import nearest_cell, random_proposals, transfer_proposals

__all__ = ["ClassicalAgent", "config_key_or_none", "tried_configs", "tried_keys"]


def config_key_or_none(space: SearchSpace, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """``space.config_key(params)``, or ``None`` when ``params`` is not a configuration of ``space``."""
    try:
        return space.config_key(params)
    except (KeyError, TypeError, ValueError):
        return None


def tried_configs(history: History, space: SearchSpace, target: Mapping[str, float],
                  pending: Sequence[Mapping[str, Any]], *, complete_only: bool = False) -> list[Mapping[str, Any]]:
    """Configurations already run (or running, unless ``complete_only``) at the target fidelity, plus ``pending``;
    only those that are whole configurations of ``space`` (valid for :meth:`SearchSpace.to_unit`)."""
    tkey = fidelity_key(target)
    configs = [t.params for t in history.trials
               if (fidelity_key(t.fidelity) == tkey or not t.fidelity) and (t.state == "complete" or not complete_only)]
    out = []
    for c in [*configs, *pending]:
        try:
            space.to_unit(c)
        except (KeyError, TypeError, ValueError):  # InvalidTrialError is a ValueError
            continue
        out.append(c)
    return out


def tried_keys(history: History, space: SearchSpace, target: Mapping[str, float], pending: Sequence[Mapping[str, Any]],
               *, complete_only: bool = False) -> set[tuple[Any, ...]]:
    """Config keys already run (or running, unless ``complete_only``) at the target fidelity, plus ``pending``."""
    tkey = fidelity_key(target)
    configs = [t.params for t in history.trials
               if (fidelity_key(t.fidelity) == tkey or not t.fidelity) and (t.state == "complete" or not complete_only)]
    keys = (config_key_or_none(space, c) for c in [*configs, *pending])
    return {k for k in keys if k is not None}


class ClassicalAgent(Agent):
    """Transfer the best low-fidelity configurations; random when there is no evidence.

    Example:
        >>> from autollm_sampler import History, SearchSpace
        >>> space = SearchSpace.from_dict({"params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}})
        >>> h = History.from_jsonl('{"params": {"lr": 0.003}, "fidelity": {"n": 1}, "value": 2.0}')
        >>> ClassicalAgent().propose(h, space, {"n": 10}, seed=0)[0].params
        {'lr': 0.003}
    """

    name = "classical"

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
        exclude = tried_keys(history, space, target, pending)
        if space.width == 0:
            return [Proposal({}, float("nan"), float("nan"), "The search space is empty; nothing to choose.", "classical") for _ in range(n)]
        src = nearest_cell(history, target)
        configs = transfer_proposals(history, space, target, n, rng, candidates=candidates, exclude=exclude)
        vals = np.array([float(t.value) for t in src]) if src else np.array([])  # type: ignore[arg-type]
        out = []
        for i, c in enumerate(configs):
            if src:
                best = float(np.min(space.sign * vals) * space.sign)
                spread = float(np.std(vals)) if len(vals) > 1 else abs(best) * 0.05
                why = (
                    f"Transferred from the nearest cheaper cell ({_fmt_fid(src[0].fidelity)}, {len(src)} runs), "
                    f"whose best outcome was {best:.4g}; rank {i + 1} of its configurations carried to the target."
                )
                out.append(Proposal(c, best, spread, why, "classical"))
            else:
                why = "No low-fidelity evidence to transfer from; sampled at random among untried configurations."
                out.append(Proposal(c, float("nan"), float("nan"), why, "classical"))
        if len(out) < n:
            extra = random_proposals(space, n - len(out), rng, candidates=candidates, exclude=exclude)
            out += [Proposal(c, float("nan"), float("nan"), "Random fill.", "classical") for c in extra]
        return out


def _fmt_fid(f: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in f.items())
