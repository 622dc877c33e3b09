"""Optuna trials <-> :class:`~autollm_sampler.history.History`, both ways.

:func:`collect` reads a study as the agent's multi-fidelity history plus the pending configurations;
:func:`add_history` imports earlier runs (a spreadsheet of them, or a :class:`History`) into a study as
finished trials; :func:`target_trials` and :func:`target_best_trial` are the study without its cheap runs.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from autollm_sampler.history import FidelityPoint, History, Trial, read_history
from autollm_sampler.integrations._common import finite_or_none, same_fidelity, short_repr
from autollm_sampler.integrations._explain import fmt_fidelity
from autollm_sampler.integrations._optuna_claims import _PROPOSAL
from autollm_sampler.integrations._optuna_fidelity import (
    _FINISHED,
    _PENDING,
    ATTR_PREFIX,
    IS_TARGET_ATTR,
    FidelityBook,
)
from autollm_sampler.integrations._optuna_ledger import StudyBook, StudyLedger, fid_token
from autollm_sampler.integrations._optuna_space import _optuna_distributions, _Slot, agent_params
from autollm_sampler.space import SearchSpace

if TYPE_CHECKING:
    from autollm_sampler.integrations.optuna import AutoLLMSampler

logger = logging.getLogger("autollm_sampler.integrations.optuna")  # the Optuna frontend's one logger

#: The sampler's memory of its studies between calls (kept under this name for older imports).
TrialCache = StudyLedger


# ---------------------------------------------------------------------- the study as the agent's history
def _state_value(t: FrozenTrial) -> tuple[str, float | None]:
    if t.state == TrialState.COMPLETE:
        v = finite_or_none(t.value)
        return ("complete", v) if v is not None else ("failed", None)
    if t.state == TrialState.PRUNED:
        inter = [finite_or_none(v) for _, v in sorted(t.intermediate_values.items())]
        finite = [v for v in inter if v is not None]
        return "pruned", (finite[-1] if finite else None)
    return "failed", None


def _convert_finished(
    study: Study, t: FrozenTrial, space: SearchSpace, slots: Mapping[str, _Slot], fidelity: FidelityBook
) -> Trial | None:
    """A finished Optuna trial as a history :class:`Trial` (``None`` if it says nothing about the space)."""
    fid = fidelity.cached(study, t)
    if fid is None:
        return None
    params = agent_params(t.params, space, slots)
    if not params:
        return None
    state, value = _state_value(t)
    cost = finite_or_none(t.user_attrs.get(fidelity.cost_attr))
    return Trial.model_construct(
        id=t.number,
        params=params,
        fidelity=FidelityPoint(fid),  # a dict that remembers its fidelity_key: the agent asks for it often
        value=value,
        state=state,
        cost=cost if cost is not None and cost >= 0 else None,
        attrs={},
    )


def _converted(
    study: Study, t: FrozenTrial, space: SearchSpace, slots: Mapping[str, _Slot], fidelity: FidelityBook, book: StudyBook
) -> Trial | None:
    """:func:`_convert_finished`, memoised in ``book`` per trial for the (cached) space object."""
    hit = book.memo(t, space)
    if hit is None:
        hit = book.remember(t, space, _convert_finished(study, t, space, slots, fidelity))
    return hit[2]  # type: ignore[no-any-return]


class _Collected:
    """What :func:`collect` made of a study's finished prefix for one space and one fidelity."""

    __slots__ = ("space", "covered", "trials", "known")

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.covered = 0  # trials of the prefix read so far
        self.trials: list[Trial] = []
        self.known: dict[int, dict[str, Any]] = {}


def collect(
    study: Study,
    trial: FrozenTrial | None,
    space: SearchSpace,
    slots: Mapping[str, _Slot],
    fid_now: Mapping[str, float],
    fidelity: FidelityBook,
    cache: StudyLedger,
    known: dict[int, dict[str, Any]] | None = None,
) -> tuple[History, list[dict[str, Any]]]:
    """The study (without ``trial``) as a :class:`History`, plus the pending configurations at ``fid_now``.

    A pending trial's configuration is its claim, the values ``enqueue_trial`` fixed and its params so far.
    ``cache`` remembers the study's finished prefix and the trials converted from it per space (see
    :mod:`~autollm_sampler.integrations._optuna_ledger`), so a call converts only what is new. ``known``
    (if given) receives, by trial number, the configuration accounted for (Optuna names).
    """
    book = cache.book(study)
    all_trials, k = book.read(study)
    names = set(space.params)
    n_names = len(names)
    skip = trial.number if trial is not None else None
    trials: list[Trial] = []
    pending: list[dict[str, Any]] = []

    def usable(converted: Trial | None) -> bool:
        # a trial at this fidelity that lacks some of the space's parameters says nothing about the space
        return converted is not None and not (
            len(converted.params) != n_names and same_fidelity(converted.fidelity, fid_now)
        )

    start = 0
    if k and not (skip is not None and all_trials[0].number <= skip <= all_trials[k - 1].number):
        key = ("collect", id(space), fid_token(fid_now))
        agg = book.derive(key)
        if agg is None or agg.space is not space:
            agg = _Collected(space)
            book.keep(key, agg)
        for t in islice(all_trials, agg.covered, k):
            converted = _converted(study, t, space, slots, fidelity, book)
            if usable(converted):
                agg.trials.append(converted)  # type: ignore[arg-type]
                agg.known[t.number] = t.params
        agg.covered = k
        trials = list(agg.trials)
        if known is not None:
            known.update(agg.known)
        start = k
    for t in islice(all_trials, start, None):
        if t.number == skip:
            continue
        if t.state in _PENDING:
            fid = fidelity.of(t)
            if fid is None:
                continue
            merged: dict[str, Any] = {}
            proposal = t.system_attrs.get(_PROPOSAL)
            if isinstance(proposal, Mapping):
                merged.update(proposal)
            fixed = t.system_attrs.get("fixed_params")
            if isinstance(fixed, Mapping):
                merged.update(fixed)
            merged.update(t.params)
            cfg = agent_params(merged, space, slots)
            if set(cfg) == names and same_fidelity(fid, fid_now):
                pending.append(cfg)
                if known is not None:
                    known[t.number] = merged
            continue
        if t.state not in _FINISHED:
            continue
        converted = _converted(study, t, space, slots, fidelity, book)
        if not usable(converted):
            continue
        if known is not None:
            known[t.number] = t.params
        trials.append(converted)  # type: ignore[arg-type]
    fidelity.report_mistakes()
    return History.model_construct(trials=trials, fidelity_axes=fidelity.core.axes), pending


# ---------------------------------------------------------------------- importing runs, target-only views
def _sampler_class() -> type[AutoLLMSampler]:
    # the frontend module imports this one, so its class is looked up when first needed
    from autollm_sampler.integrations.optuna import AutoLLMSampler

    return AutoLLMSampler


def _sampler_of(study: Study, sampler: AutoLLMSampler | None, what: str) -> AutoLLMSampler:
    s = sampler if sampler is not None else study.sampler
    if not isinstance(s, _sampler_class()):
        raise TypeError(
            f"{what} needs the AutoLLMSampler whose fidelity axes and target apply: create the study with "
            f"sampler=AutoLLMSampler(...), or pass sampler=...; the study's sampler is {type(s).__name__}"
        )
    return s


def _load_runs(history: History | str | os.PathLike[str]) -> tuple[History, list[str], str]:
    """The runs, where each came from (``"runs.csv, line 3"``) and the source's name."""
    if isinstance(history, History):
        return history, [f"history trial {short_repr(t.id, 40)}" for t in history.trials], "the history"
    if not isinstance(history, (str, os.PathLike)):
        raise TypeError(f"history must be a History or the path of a .csv, .jsonl or .json file, got {type(history).__name__}")
    runs, where = read_history(history)
    return runs, where, str(history)


def _expand_params(params: Mapping[str, Any], dists: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    """A run's params in Optuna names: a mixture ``{"mix": {"web": w, ...}}`` becomes ``mix.web`` ... ."""
    out: dict[str, Any] = {}
    for name, v in params.items():
        if isinstance(v, Mapping) and name not in dists:
            for c, w in v.items():
                out[f"{name}.{c}"] = w
        else:
            out[name] = v
    return out


def add_history(
    study: Study,
    history: History | str | os.PathLike[str],
    *,
    distributions: Mapping[str, BaseDistribution] | SearchSpace | None = None,
    sampler: AutoLLMSampler | None = None,
) -> int:
    """Add earlier runs (a spreadsheet of them, or a :class:`History`) to ``study`` as finished trials.

    Each run becomes an Optuna trial with its params, value and state (``complete``, ``pruned`` with its
    value as the last intermediate value, ``failed``), and user attributes as the sampler reads them: its
    fidelity under the sampler's ``fidelity_attr`` (axes a run leaves out take the target's value, so a run
    without fidelity is a target run), its ``cost`` (the sampler's ``cost_attr``), ``autollm:history_id``
    (the run's id) and :data:`IS_TARGET_ATTR`. ``running`` runs are skipped.

    Args:
        study: the study; its sampler is the :class:`AutoLLMSampler` whose fidelity axes and target apply
            (or pass ``sampler=``).
        history: a :class:`History`, or the path of a ``.csv`` (columns ``param:NAME`` or bare names,
            ``fidelity:AXIS``, ``value``, ``state``, ``cost``, ``id``), ``.jsonl`` or ``.json`` file.
        distributions: the Optuna distribution of each parameter, as the objective suggests it, or a
            :class:`SearchSpace` (a simplex ``mix`` becomes ``mix.<component>`` floats in [0, 1], as
            :func:`suggest_mixture` suggests them). Default: the distributions of the study's trials.
        sampler: overrides the study's sampler as the source of the fidelity axes, target and attributes.

    Returns:
        The number of trials added. Runs whose value lies outside its distribution (or is not one of its
        choices) are skipped with one warning; widen the distribution to keep them.

    Raises:
        InvalidHistoryError / InvalidTrialError: the file cannot be read or parsed (naming the file, line and field).
        TypeError: no :class:`AutoLLMSampler` is known for the study.
        ValueError: a parameter has no distribution, or a run's fidelity axes are not the sampler's.

    Example:
        >>> import optuna
        >>> from optuna.distributions import FloatDistribution
        >>> from autollm_sampler.history import Trial
        >>> from autollm_sampler.integrations.optuna import AutoLLMSampler
        >>> s = AutoLLMSampler(fidelity=("n_params",), target={"n_params": 1e9}, agent="classical", seed=0)
        >>> study = optuna.create_study(sampler=s)
        >>> runs = History(trials=[Trial(id="a", params={"lr": 3e-3}, fidelity={"n_params": 1e8}, value=2.9)])
        >>> add_history(study, runs, distributions={"lr": FloatDistribution(1e-4, 1e-1, log=True)})
        1
        >>> study.trials[0].user_attrs["fidelity"], study.trials[0].user_attrs["autollm:is_target"]
        ({'n_params': 100000000.0}, False)
    """
    s = _sampler_of(study, sampler, "add_history()")
    runs, wheres, source = _load_runs(history)
    if isinstance(distributions, SearchSpace):
        dists: dict[str, BaseDistribution] = _optuna_distributions(distributions)
    elif distributions is not None:
        if not isinstance(distributions, Mapping):
            raise TypeError(f"distributions must be a mapping of name to Optuna distribution, or a SearchSpace; got {type(distributions).__name__}")
        dists = dict(distributions)
    else:
        dists = {}
        for t in study.get_trials(deepcopy=False):
            dists.update(t.distributions)
    axes = s.fidelity_axes
    target = s.target
    fidelity_attr, cost_attr = s._fidelity.attr, s._fidelity.cost_attr
    frozen: list[FrozenTrial] = []
    skipped: list[str] = []
    running = no_fid = 0
    for i, run in enumerate(runs.trials):
        where = wheres[i] if i < len(wheres) else f"{source}, trial {short_repr(run.id, 40)}"
        extra = [a for a in run.fidelity if a not in axes]
        if extra:
            raise ValueError(
                f"{where}: fidelity axis {extra[0]!r} is not one of the sampler's axes {list(axes)!r}; "
                "name every axis in AutoLLMSampler(fidelity=...)"
            )
        if run.state == "running":
            running += 1
            continue
        params = _expand_params(run.params, dists)
        unknown = [n for n in params if n not in dists]
        if unknown:
            raise ValueError(
                f"{where}: no distribution is known for parameter(s) {', '.join(repr(n) for n in unknown[:5])}; pass "
                "distributions={name: optuna.distributions...} as the objective suggests them (or a SearchSpace), "
                "or drop the column"
            )
        used: dict[str, BaseDistribution] = {}
        ok = True
        for n, v in params.items():
            d = dists[n]
            try:
                if isinstance(v, bool) and not isinstance(d, CategoricalDistribution):
                    raise ValueError(v)
                if isinstance(d, IntDistribution) and isinstance(v, float) and v.is_integer():
                    params[n] = v = int(v)
                ok = d._contains(d.to_internal_repr(v))
            except (ValueError, TypeError):
                ok = False
            if not ok:
                skipped.append(f"{where}: {n}={short_repr(v, 40)} is outside {d}")
                break
            used[n] = d
        if not ok:
            continue
        if not run.fidelity and axes:
            no_fid += 1
        fid = {**target, **run.fidelity}
        user_attrs: dict[str, Any] = {}
        for k, v in run.attrs.items():
            try:
                json.dumps(v)
            except (TypeError, ValueError):
                continue
            user_attrs[str(k)] = v
        if axes:
            user_attrs[fidelity_attr] = fid
        if run.cost is not None:
            user_attrs[cost_attr] = run.cost
        user_attrs[ATTR_PREFIX + "history_id"] = run.id
        if run.state == "complete":
            state, value, inter = TrialState.COMPLETE, run.value, None
        elif run.state == "pruned":
            state, value, inter = TrialState.PRUNED, None, ({0: run.value} if run.value is not None else None)
        else:
            state, value, inter = TrialState.FAIL, None, None
        try:
            ft = optuna.trial.create_trial(
                state=state, value=value, params=params, distributions=used, user_attrs=user_attrs, intermediate_values=inter
            )
        except ValueError as exc:
            raise ValueError(f"{where}: {short_repr(str(exc), 300)}") from None
        ft.user_attrs[IS_TARGET_ATTR] = s.is_target_trial(ft)
        frozen.append(ft)
    if skipped:
        logger.warning(
            "add_history: %d run(s) skipped because a value lies outside its distribution (first: %s); widen the "
            "distribution to import them", len(skipped), skipped[0],
        )
    if running:
        logger.warning("add_history: %d running run(s) in %s skipped; add them once they finished", running, source)
    if no_fid:
        logger.warning(
            "add_history: %d run(s) in %s have no fidelity, so they are target runs at %s; if they ran cheaper, give "
            "them fidelity (CSV columns fidelity:AXIS, or a 'fidelity' field in JSONL)", no_fid, source, fmt_fidelity(target),
        )
    study.add_trials(frozen)
    return len(frozen)


def target_trials(
    study: Study,
    *,
    sampler: AutoLLMSampler | None = None,
    states: Sequence[TrialState] | None = (TrialState.COMPLETE,),
) -> list[FrozenTrial]:
    """The trials of ``study`` that ran at the target fidelity (completed ones by default).

    The fidelity is read as the sampler reads it (``sampler=``, else the study's :class:`AutoLLMSampler`;
    near-target runs included). For a study loaded without one (``optuna.load_study``), the
    :data:`IS_TARGET_ATTR` user attribute the sampler left on each trial decides.
    """
    s = sampler if sampler is not None else study.sampler
    trials = study.get_trials(deepcopy=False, states=None if states is None else tuple(states))
    if isinstance(s, _sampler_class()):
        return [t for t in trials if s.is_target_trial(t)]
    return [t for t in trials if t.user_attrs.get(IS_TARGET_ATTR) is True]


def target_best_trial(study: Study, *, sampler: AutoLLMSampler | None = None) -> FrozenTrial:
    """The best completed target trial: ``study.best_trial`` without the cheap runs.

    Raises:
        ValueError: when no target trial has completed with a finite value yet.
    """
    if len(study.directions) > 1:
        raise ValueError("target_best_trial() needs a single-objective study")
    done = [t for t in target_trials(study, sampler=sampler) if finite_or_none(t.value) is not None]
    if not done:
        raise ValueError(
            "no target trial has completed yet (study.best_trial may be a cheap run); run trials at the target, "
            "or check the fidelity the trials carry"
        )
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1.0
    return min(done, key=lambda t: (sign * float(t.value), t.number))  # type: ignore[arg-type]
