"""The classical fallback agent: transfer from the nearest cheaper cell, then random.

Its proposals are labelled ``source="classical"`` when it was asked for, ``"fallback"`` when a model agent
handed over to it (:meth:`Agent.fall_back`). Its predictions are for the target or NaN, never a cheaper
cell's outcome passed off as one (see :meth:`ClassicalAgent._transferred`). It needs no model and no torch. It is the stand-in used when the trained agent cannot handle an input
(unknown structure, too many parameters, empty space), and a baseline in its own right.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autollm_sampler.agent._base import Agent, Proposal
from autollm_sampler.history import History, Trial, fidelity_key
from autollm_sampler.space import SearchSpace, project_unit
from autollm_sampler.strategies import nearest_cell, random_proposals, transfer_proposals

__all__ = ["ClassicalAgent", "config_key_or_none", "tried_keys", "tried_units", "valid_units"]


def config_key_or_none(space: SearchSpace, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """``space.config_key(params)``, or ``None`` when ``params`` is not a configuration of ``space``."""
    try:
        return space.config_key(params)
    except (KeyError, TypeError, ValueError):
        return None


def valid_units(space: SearchSpace, configs: Sequence[Mapping[str, Any]]) -> tuple[list[int], np.ndarray]:
    """Indices and unit points of the configurations that are whole configurations of ``space`` (valid for
    :meth:`SearchSpace.to_unit`); the others are skipped. All are mapped at once; row by row only when one
    of them is not a configuration."""
    if not configs:
        return [], np.zeros((0, space.width))
    try:
        return list(range(len(configs))), space.to_unit_many(configs)
    except (KeyError, TypeError, ValueError):  # InvalidTrialError is a ValueError
        pass
    ok, rows = [], []
    for i, c in enumerate(configs):
        try:
            rows.append(space.to_unit(c))
        except (KeyError, TypeError, ValueError):
            continue
        ok.append(i)
    return ok, (np.stack(rows) if rows else np.zeros((0, space.width)))


def tried_units(history: History, space: SearchSpace, target: Mapping[str, float],
                pending: Sequence[Mapping[str, Any]], *, complete_only: bool = False) -> np.ndarray:
    """Unit points of the configurations already run (or running, unless ``complete_only``) at the target
    fidelity, plus ``pending``; only those that are whole configurations of ``space``."""
    tkey = fidelity_key(target)
    configs = [t.params for t in history.trials
               if (fidelity_key(t.fidelity) == tkey or not t.fidelity) and (t.state == "complete" or not complete_only)]
    return valid_units(space, [*configs, *pending])[1]


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
        if not src:
            why = "No low-fidelity evidence to transfer from; sampled at random among untried configurations."
            out = [Proposal(c, float("nan"), float("nan"), why, "classical") for c in configs]
        else:
            out = self._transferred(history, space, target, src, configs)
        if len(out) < n:
            extra = random_proposals(space, n - len(out), rng, candidates=candidates, exclude=exclude)
            why = "Random fill: the nearest cheaper cell had no further untried configuration to carry over."
            out += [Proposal(c, float("nan"), float("nan"), why, "classical") for c in extra]
        return out

    def _transferred(self, history: History, space: SearchSpace, target: dict[str, float], src: list[Trial],
                     configs: list[dict[str, Any]]) -> list[Proposal]:
        """Proposals carried over from the nearest cheaper cell ``src``, each with a prediction for the target.

        The prediction is made only where it can be argued: for the nearest cell's best run carried over
        unchanged, the best outcomes of the cheaper cells are extrapolated to the target along a straight
        line in the log of the fidelity product (this needs two cells or more); its spread is the size of
        that extrapolated step. Every other proposal has no prediction (NaN): the classical strategy does
        not model how one configuration's outcome changes with scale.
        """
        sign = space.sign
        ranked = sorted(src, key=lambda t: sign * float(t.value))  # type: ignore[arg-type]
        best = ranked[0]
        best_v = float(best.value)  # type: ignore[arg-type]
        try:
            best_key = config_key_or_none(space, space.from_unit(project_unit(best.params, None, space)))
        except (KeyError, TypeError, ValueError):
            best_key = None
        trend = _best_trend(history, target, sign)
        cell = _fmt_fid(src[0].fidelity)
        out = []
        for c in configs:
            why = (f"Transferred from the nearest cheaper cell ({cell}, {_runs(len(src))}, best outcome {best_v:.4g}), "
                   "whose configurations are carried to the target best first.")
            value = std = float("nan")
            if best_key is not None and config_key_or_none(space, c) == best_key:
                if trend is not None:
                    value, line = trend
                    std = abs(value - best_v)
                    why += (f" This is that cell's best run; the cheaper cells' best outcomes ({line}) extrapolate "
                            f"along log fidelity to {value:.4g} at the target (+/- {std:.2g}, the size of that step).")
                else:
                    why += (" This is that cell's best run; with a single cheaper cell there is no trend to "
                            "extrapolate, so no prediction for the target.")
            else:
                why += " No prediction for the target: the classical strategy does not model how outcomes scale."
            out.append(Proposal(c, value, std, why, "classical"))
        return out


def _fmt_fid(f: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in f.items())


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _log_size(fid: Mapping[str, float]) -> float | None:
    """The log of a fidelity point's product (``None`` when an axis is not positive)."""
    if not fid or any(float(v) <= 0 for v in fid.values()):
        return None
    return float(sum(math.log(float(v)) for v in fid.values()))


def _best_trend(history: History, target: Mapping[str, float], sign: float) -> tuple[float, str] | None:
    """The cheaper cells' best outcomes extrapolated to the target along log fidelity (least squares line).

    Returns the value and the cited evidence, or ``None`` with fewer than two cells of distinct size.
    """
    tkey = fidelity_key(target)
    xt = _log_size(target)
    pts: list[tuple[float, float, str]] = []
    for key, trials in history.cells().items():
        done = [float(t.value) for t in trials if t.is_complete and t.value is not None]
        x = _log_size(dict(key))
        if key == tkey or not key or not done or x is None:
            continue
        b = min(done, key=lambda v: sign * v)
        pts.append((x, b, f"{b:.4g} at {_fmt_fid(dict(key))}"))
    if xt is None or len(pts) < 2 or len({round(x, 9) for x, _, _ in pts}) < 2:
        return None
    pts.sort()
    xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    slope, icpt = np.polyfit(xs, ys, 1)
    shown = pts if len(pts) <= 3 else [pts[0], pts[-1]]
    line = ", ".join(p[2] for p in shown) + (f", over {len(pts)} cells" if len(pts) > 3 else "")
    return float(icpt + slope * xt), line
