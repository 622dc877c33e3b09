"""The plain-words rationale of the embedded agent's proposals, built from what the history shows.

Every number in a rationale can be traced back: run counts and best outcomes are read from the history;
a parameter's "best run" value is the parameter of the cell's best completed run (the same run the
``explain`` summaries name); the "weighted optimum" of a cell is the rank-weighted mean of its top runs
(what the serializer fits, :func:`autollm_sampler.agent._features.encode`); the extrapolation is that fit
at the target, snapped onto the space; predictions are the model's (and, once target runs exist, the
adaptation's, :mod:`autollm_sampler.agent._adapt`). Parameters are described by role, learning rate first,
then batch size, then the others in declared order. A proposal away from the extrapolated optimum says
why: the model's prediction there against at the extrapolation, and which step chose it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from autollm_sampler.agent._features import CellSummary, Encoded, trend_weight
from autollm_sampler.history import History, Trial, fidelity_key
from autollm_sampler.space import SearchSpace, SimplexParam

__all__ = ["explain_choice", "model_rationale", "ordered_names", "MAX_DESCRIBED"]

#: at most this many parameters are described one by one (the rest are counted)
MAX_DESCRIBED = 3
_ROLE_RANK = {"lr": 0, "batch_size": 1, "other": 3}  # every other known role (weight decay, warmup, ...): 2


def ordered_names(space: SearchSpace) -> list[str]:
    """Parameter names by importance of their role: learning rate, batch size, the other known roles (weight
    decay, warmup, mixture, ...), then parameters without a known role; declared order within a rank."""
    names = list(space.names)
    return sorted(names, key=lambda n: (_ROLE_RANK.get(space.role_of(n), 2), names.index(n)))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{float(v):.3g}"


def _fid(f: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={float(v):.3g}" for k, v in f.items()) or "the target"


def _scale(fid: Mapping[str, float]) -> float:
    return float(sum(math.log(v) if v > 0 else 0.0 for v in fid.values()))


def _best_trial(trials: Sequence[Trial], sign: float) -> Trial | None:
    done = [t for t in trials if t.is_complete and t.value is not None]
    return min(done, key=lambda t: sign * float(t.value)) if done else None  # type: ignore[arg-type]


class _Cell:
    """One cheaper cell as the rationale cites it: its best completed run and the serializer's summary."""

    def __init__(self, fid: dict[str, float], n: int, best: Trial, summary: CellSummary | None) -> None:
        self.fid, self.n, self.best, self.summary = fid, n, best, summary


class _Summary:
    """What the rationale reads of a history, in one pass: each cheaper cell's completed runs (count and best,
    in order of first appearance, as :meth:`History.cells` groups them) and the runs at the target, both as
    the target-trial tests of :func:`explain_choice` and :func:`_step_text` count them."""

    __slots__ = ("cells", "target_done", "target_failed", "target_best")

    def __init__(self, history: History, target: Mapping[str, float], sign: float) -> None:
        tkey = fidelity_key(target)
        cells: dict[Any, list[Any]] = {}  # key -> [completed runs, best run, its signed value]
        n_done = n_failed = 0
        best: Trial | None = None
        best_v = 0.0
        for t in history.trials:
            fid = t.fidelity
            key = fidelity_key(fid)
            complete = t.state == "complete" and t.value is not None
            if not fid or key == tkey:
                if complete:
                    n_done += 1
                    v = sign * float(t.value)  # type: ignore[arg-type]
                    if best is None or v < best_v:  # the first best, as min() keeps it
                        best, best_v = t, v
                elif t.state == "failed":
                    n_failed += 1
                if not key or key == tkey:
                    continue
            if not complete:
                cells.setdefault(key, [0, None, 0.0])
                continue
            entry = cells.get(key)
            v = sign * float(t.value)  # type: ignore[arg-type]
            if entry is None:
                cells[key] = [1, t, v]
            else:
                entry[0] += 1
                if entry[1] is None or v < entry[2]:
                    entry[1], entry[2] = t, v
        self.cells = cells
        self.target_done, self.target_failed, self.target_best = n_done, n_failed, best


def _cheap_cells(history: History, space: SearchSpace, target: Mapping[str, float], enc: Encoded,
                 summary: _Summary | None = None) -> list[_Cell]:
    if summary is None:
        summary = _Summary(history, target, space.sign)
    by_key = {fidelity_key(c.fidelity): c for c in enc.cells if not c.is_target}
    out = []
    for key, (n, best, _) in summary.cells.items():
        if best is None:
            continue
        out.append(_Cell(dict(key), n, best, by_key.get(key)))
    return sorted(out, key=lambda c: _scale(c.fid))


def _shown(cells: Sequence[_Cell]) -> list[_Cell]:
    """The cells a parameter's sentence names: the smallest and the largest."""
    return list(cells) if len(cells) <= 2 else [cells[0], cells[-1]]


def _where(cells: Sequence[_Cell], shown: Sequence[_Cell]) -> list[str]:
    if len(cells) <= 2:
        return [f"({_fid(c.fid)})" for c in shown]
    return [f"(smallest cell, {_fid(shown[0].fid)})", f"(largest of {len(cells)} cells, {_fid(shown[1].fid)})"]


def _param_sentence(name: str, space: SearchSpace, cells: Sequence[_Cell], n_fit: int, ex_cfg: Mapping[str, Any]) -> str:
    shown = _shown(cells)
    where = _where(cells, shown)
    bests = [c.best.params.get(name) for c in shown]
    soft = [space.from_unit(c.summary.soft_opt)[name] if c.summary is not None else None for c in shown]
    p = space.params[name]
    if isinstance(p, SimplexParam):
        return _simplex_sentence(name, p, shown, where, bests, soft, n_fit, ex_cfg)
    runs = ", ".join(f"{_fmt(b)} {w}" for b, w in zip(bests, where, strict=True) if b is not None)
    parts = [f"{name}: best run {runs}" if runs else f"{name}: no best run sets it"]
    if any(s is not None for s in soft) and [_fmt(s) for s in soft] != [_fmt(b) for b in bests]:
        parts.append("weighted optimum of the top runs " + ", ".join(_fmt(s) for s in soft if s is not None))
    parts.append(_extrap_phrase(n_fit, _fmt(ex_cfg[name])))
    return "; ".join(parts) + "."


def _trend_sentence(enc: Encoded, width: int, n_fit: int) -> str:
    """How far the extrapolation follows the cheap cells' trend beyond the nearest cell, and why."""
    w = trend_weight(enc.cells, width)
    if n_fit < 3:
        return (f"The extrapolation goes {w:.0%} of the way from the nearest cell's optimum to the trend of the "
                "cheap cells (with two cells there is none to hold out).")
    return (f"The extrapolation goes {w:.0%} of the way from the nearest cell's optimum to the trend of the cheap "
            "cells: the share that best predicts the cheap cells nearest the target from the cells beyond them.")


def _extrap_phrase(n_fit: int, ex: str) -> str:
    if n_fit >= 2:
        return f"extrapolated to {ex} at the target"
    if n_fit == 1:
        return f"carried to the target as {ex}"
    return f"no cell has two completed runs to fit, so the reference is the centre of the space, {ex}"


def _simplex_sentence(name: str, p: SimplexParam, shown: Sequence[_Cell], where: Sequence[str], bests: Sequence[Any],
                      soft: Sequence[Any], n_fit: int, ex_cfg: Mapping[str, Any]) -> str:
    mixes = [b for b in bests if isinstance(b, Mapping)]
    if not mixes:
        return f"{name}: no best run sets its weights."
    comps = list(p.components)
    if len(mixes) >= 2:  # the component whose weight moves most between the smallest and the largest cell
        comp = max(comps, key=lambda c: abs(float(mixes[-1].get(c, 0.0)) - float(mixes[0].get(c, 0.0))))
    else:
        comp = max(comps, key=lambda c: float(mixes[0].get(c, 0.0)))
    runs = ", ".join(f"{_fmt(float(b.get(comp, 0.0)))} {w}" for b, w in zip(bests, where, strict=True)
                        if isinstance(b, Mapping))
    parts = [f"{name}: the best run puts weight {runs} on {comp}"]
    soft_w = [float(s.get(comp, 0.0)) for s in soft if isinstance(s, Mapping)]
    best_w = [float(b.get(comp, 0.0)) for b in mixes]
    if soft_w and [_fmt(s) for s in soft_w] != [_fmt(b) for b in best_w]:
        parts.append("weighted optimum of the top runs " + ", ".join(_fmt(s) for s in soft_w))
    parts.append(_extrap_phrase(n_fit, _fmt(float(ex_cfg[name].get(comp, 0.0)))))
    return "; ".join(parts) + "."


def _values(space: SearchSpace, names: Sequence[str], cfg: Mapping[str, Any]) -> str:
    """``"lr 0.003, batch_size 128"``; a mixture by its largest weights."""
    out = []
    for nm in names:
        v = cfg.get(nm)
        out.append(f"{nm} {_top(v)}" if isinstance(v, Mapping) else f"{nm} {_fmt(v)}")
    more = len(space.names) - len(names)
    return ", ".join(out) + (f", ... ({_plural(more, 'more parameter')})" if more > 0 else "")


def _top(mix: Mapping[str, float], k: int = 3) -> str:
    items = sorted(mix.items(), key=lambda kv: -float(kv[1]))[:k]
    return "{" + ", ".join(f"{c} {float(w):.3g}" for c, w in items) + (", ..." if len(mix) > k else "") + "}"


def explain_choice(
    enc: Encoded,
    space: SearchSpace,
    target: Mapping[str, float],
    u: np.ndarray,
    value: float,
    std: float,
    history: History | None = None,
    *,
    model_here: float | None = None,
    model_at_extrap: float | None = None,
    step: str = "",
    _summary: _Summary | None = None,
) -> str:
    """A plain-words rationale for the proposal at unit point ``u``, citing the evidence in ``history``.

    ``model_here`` / ``model_at_extrap`` are the model's own predictions at the proposal and at the
    extrapolated optimum (they explain a proposal away from it); ``step`` says which step chose it.
    """
    history = history if history is not None else History()
    summary = _summary if _summary is not None else _Summary(history, target, space.sign)
    tkey = fidelity_key(target)
    parts: list[str] = []
    cells = _cheap_cells(history, space, target, enc, summary)
    n_fit = sum(1 for c in enc.cells if not c.is_target and c.n >= 2)
    ex_unit = space.snap_unit_many(np.asarray(enc.extrap, float)[None])[0]
    ex_cfg = space.from_unit(ex_unit)
    prop = space.from_unit(u)
    if cells:
        n_runs = sum(c.n for c in cells)
        parts.append(f"Read {_plural(n_runs, 'completed low-fidelity run')} in {_plural(len(cells), 'cell')}.")
        names = ordered_names(space)
        described = names[:MAX_DESCRIBED]
        parts += [_param_sentence(nm, space, cells, n_fit, ex_cfg) for nm in described]
        if len(names) > len(described):
            parts.append(f"{_plural(len(names) - len(described), 'more parameter')} not described here.")
        if n_fit >= 2:
            parts.append(_trend_sentence(enc, space.width, n_fit))
    else:
        parts.append("No low-fidelity evidence; the model falls back on its prior over LLM-like landscapes.")
    n_done, n_failed = (summary.target_done, summary.target_failed) if tkey else (0, 0)
    if n_done:
        best = summary.target_best
        assert best is not None
        text = f"{_plural(n_done, 'target run')} completed so far, best {float(best.value):.4g}"  # type: ignore[arg-type]
        parts.append(text + (f"; {_plural(n_failed, 'failed target run')}." if n_failed else "."))
    elif n_failed:
        parts.append(f"No completed target run yet; {_plural(n_failed, 'failed target run')}.")
    dist = float(np.sqrt(np.mean((np.asarray(u, float) - ex_unit) ** 2))) if len(ex_unit) else 0.0
    names = ordered_names(space)[:MAX_DESCRIBED]
    mine = _values(space, names, prop)
    if dist < 1e-9:
        parts.append(f"This proposal ({mine}) is the extrapolated optimum.")
    else:
        where = "near" if dist < 0.1 else "away from"
        parts.append(f"This proposal ({mine}) lies {where} the extrapolated optimum ({_values(space, names, ex_cfg)}; "
                     f"distance {dist:.2g} in the unit cube).")
        if model_here is not None and model_at_extrap is not None and math.isfinite(model_here) and math.isfinite(model_at_extrap):
            better = space.sign * model_here < space.sign * model_at_extrap
            parts.append(f"The model alone predicts {model_here:.4g} here and {model_at_extrap:.4g} at the extrapolated "
                         f"optimum{' (better here)' if better else ''}.")
    if step:
        parts.append(step)
    if math.isfinite(value):
        parts.append(f"Predicted outcome {value:.4g} +/- {std:.2g}.")
    return " ".join(parts)


def _step_text(agent: Any, history: History, target: Mapping[str, float], batch_index: int,
               summary: _Summary | None = None) -> str:
    """Which step chose the proposal (mirrors ``TransformerAgent._propose`` and ``agent/_adapt.py``)."""
    if summary is None:
        summary = _Summary(history, target, 1.0)
    n_done, n_failed = summary.target_done, summary.target_failed
    batch = f" As proposal {batch_index + 1} of this batch it is kept apart from the earlier ones." if batch_index else ""
    if getattr(agent, "adapt", False) and getattr(agent, "temperature", 0.0) == 0:
        if n_done or n_failed:
            how = [f"the model's prediction corrected by the {_plural(n_done, 'completed target run')}"] if n_done else []
            how += [f"the {_plural(n_failed, 'failed target run')} counted against "
                    f"{'its' if n_failed == 1 else 'their'} region: one failure may have been a crash, so it only "
                    "discounts the region; a second failure there, or a diverged run, rules it out"] if n_failed else []
            return (f"Chosen by expected improvement over the best target outcome, times the chance of not failing "
                    f"({'; '.join(how)})." + batch)
        if batch_index:
            return f"Proposal {batch_index + 1} of this batch: the policy's next choice, kept apart from the earlier ones."
        return "Chosen by the policy (no target run yet)."
    if getattr(agent, "temperature", 0.0) > 0:
        return f"Sampled from the policy at temperature {agent.temperature:g}."
    return f"The policy ranked it {'first' if not batch_index else f'number {batch_index + 1}'}."


def model_rationale(agent: Any, enc: Encoded, space: SearchSpace, target: Mapping[str, float], u: np.ndarray,
                    value: float, std: float, history: History, *, model_here: float, model_at_extrap: float,
                    batch_index: int) -> str:
    """The rationale of a :class:`TransformerAgent` proposal: :func:`explain_choice` with the model's own
    predictions (``model_here`` at the proposal, ``model_at_extrap`` at the extrapolated optimum, both from
    the pass that scored the candidates) and the step that chose it (``batch_index``: its place in the batch).
    """
    summary = _Summary(history, target, space.sign)  # one pass over the history for both
    return explain_choice(enc, space, target, u, value, std, history, model_here=model_here,
                          model_at_extrap=model_at_extrap, step=_step_text(agent, history, target, batch_index, summary),
                          _summary=summary)
