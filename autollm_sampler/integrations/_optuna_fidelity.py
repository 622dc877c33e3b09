"""The fidelity of an Optuna trial as :class:`~autollm_sampler.integrations.optuna.AutoLLMSampler` reads it,
and the cost-aware budget's books.

A trial's fidelity is in its user attributes: one ``{axis: value}`` dict under ``fidelity_attr``, or one
attribute per axis; axes a trial leaves out take the target's value. Numeric strings are read as numbers,
and a fidelity within ``NEAR_TARGET_RTOL`` of the target on every axis is the target (unless it is one of
the cost-aware levels). Each kind of problem is logged once per sampler. In the cost-aware mode the same
reading tells what every trial spent, and :meth:`FidelityBook.assign` writes the level of a new trial.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState

from autollm_sampler.budget import BudgetChoice
from autollm_sampler.integrations._common import (
    NEAR_TARGET_RTOL,
    LevelRun,
    SamplerCore,
    finite_or_none,
    near_fidelity,
    same_fidelity,
    short_repr,
)
from autollm_sampler.integrations._explain import fmt_fidelity

# every module of the Optuna frontend logs under the one documented name
logger = logging.getLogger("autollm_sampler.integrations.optuna")

#: Prefix of every attribute the sampler writes on a trial.
ATTR_PREFIX = "autollm:"
#: User attribute set on every finished trial the sampler saw (and on imported ones): whether it is a target
#: run. Filter on it in optuna-dashboard; :func:`target_trials` and :func:`target_best_trial` read it too.
IS_TARGET_ATTR = ATTR_PREFIX + "is_target"
_RUN_HERE = ATTR_PREFIX + "sampled"  # system attr: the trial started under an AutoLLMSampler
_BUDGET_OUT = ATTR_PREFIX + "budget_exhausted"
_SCHEDULE = ATTR_PREFIX + "schedule"  # user attr: why the cost-aware mode chose the trial's level
_CACHE_LIMIT = 200_000  # cached finished trials before the caches are cleared

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
_PENDING = (TrialState.RUNNING, TrialState.WAITING)


def warn_once(warned: set[str], key: str, msg: str, *args: Any) -> None:
    """Log ``msg`` as a warning unless ``key`` was warned about already (``warned`` remembers it)."""
    if key not in warned:
        warned.add(key)
        logger.warning(msg, *args)


def _fidelity_number(x: Any) -> float | None:
    """A fidelity value as a finite float: numbers, and numeric strings such as ``"2.6e10"``."""
    if isinstance(x, str):
        try:
            v = float(x.strip().replace("_", ""))
        except ValueError:
            return None
        return v if math.isfinite(v) else None
    return finite_or_none(x)


class FidelityBook:
    """Reads the fidelity (and cost) of Optuna trials for one sampler, and keeps its cost-aware books.

    ``core`` gives the axes, the target and the schedule; ``warned`` is the sampler's set of warnings given.
    The fidelity of finished trials is cached per storage object (weakly, so a new storage at a reused
    address starts empty) by trial id, checked against the trial's number and user attributes (not pickled).
    """

    def __init__(self, core: SamplerCore, fidelity_attr: str, cost_attr: str, warned: set[str],
                 group_of: Mapping[str, str] | None = None) -> None:
        self.core = core
        #: parameter name -> the mixture it is a component of (the cost-aware rule counts a mixture once)
        self.group_of: dict[str, str] = dict(group_of or {})
        self.attr = fidelity_attr
        self.cost_attr = cost_attr
        self.warned = warned
        self.reset()

    def reset(self) -> None:
        """Forget the cached fidelities and the fidelity mistakes noted so far."""
        self.clear_cache()
        # finished trials (by number) that look like fidelity mistakes, found as their fidelity is first read
        self._mistakes: dict[str, set[int]] = {}

    def clear_cache(self) -> None:
        """Forget the cached fidelities (the mistakes noted stay)."""
        self._cache: weakref.WeakKeyDictionary[Any, dict[int, tuple[FrozenTrial, dict[str, float] | None]]] = (
            weakref.WeakKeyDictionary()
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_cache", None)
        state.pop("_mistakes", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.reset()

    # ------------------------------------------------------------------ reading
    def has(self, t: FrozenTrial) -> bool:
        """Whether the trial carries a fidelity attribute at all (the dict, or one axis)."""
        ua = t.user_attrs
        return self.attr in ua or any(a in ua for a in self.core.axes)

    def of(self, t: FrozenTrial) -> dict[str, float] | None:
        """A trial's fidelity (target values for axes it leaves out); ``None`` when its attribute is invalid.

        Numeric strings (as ``csv.DictReader`` gives them) are read as numbers. A fidelity within
        ``NEAR_TARGET_RTOL`` of the target on every axis is the target, unless it is one of the cost-aware
        levels. Each kind of problem is logged once per sampler, not once per trial.
        """
        axes, target, schedule = self.core.axes, self.core.target, self.core.schedule
        if not axes:
            return {}
        ua = t.user_attrs
        raw = ua.get(self.attr)
        if raw is None:
            src: Mapping[str, Any] = {a: ua[a] for a in axes if a in ua}
        elif isinstance(raw, Mapping):
            src = raw
        elif len(axes) == 1 and _fidelity_number(raw) is not None:
            src = {axes[0]: raw}
        else:
            warn_once(
                self.warned,
                "fid:attr",
                "trial %d: user attribute %r is %s, not a {axis: number} dict; such trials are left out of the "
                "history (warned once)",
                t.number, self.attr, short_repr(raw),
            )
            return None
        fid = dict(target)
        for a, v in src.items():
            if a not in fid:
                warn_once(self.warned, f"axis:{a}", "fidelity axis %r (trial %d) is not one of %r; it is ignored", a, t.number, list(axes))
                continue
            fv = _fidelity_number(v)
            if fv is None:
                warn_once(
                    self.warned,
                    f"fid:bad:{a}",
                    "trial %d: fidelity %r is %s, not a finite number; such trials are left out of the history "
                    "(warned once per axis)",
                    t.number, a, short_repr(v),
                )
                return None
            if isinstance(v, str) and "fid:str" not in self.warned:
                self.warned.add("fid:str")
                logger.info("trial %d: fidelity %r is the string %r; fidelity strings are read as numbers", t.number, a, short_repr(v))
            fid[a] = fv
        if not same_fidelity(fid, target) and near_fidelity(fid, target):
            if schedule is None or schedule.level_of(fid) is None:
                warn_once(
                    self.warned,
                    "fid:near",
                    "trial %d: fidelity %s is within %.3g%% of the target %s on every axis, so it counts as a "
                    "target run, as does every trial this close (warned once); give the target's exact values to "
                    "silence this",
                    t.number, _exact(fid), 100 * NEAR_TARGET_RTOL, _exact(target),
                )
                return dict(target)
        return fid

    def is_target(self, t: FrozenTrial) -> bool:
        """Whether ``t`` ran at the target fidelity (near-target runs included)."""
        fid = self.of(t)
        return fid is not None and self.core.is_target(fid)

    def cached(self, study: Study, t: FrozenTrial) -> dict[str, float] | None:
        """:meth:`of`, cached for finished trials (whose fidelity mistakes are noted as they are first read)."""
        if t.state not in _FINISHED:
            return self.of(t)
        storage = study._storage
        try:
            per = self._cache.get(storage)
            if per is None:
                per = self._cache[storage] = {}
        except TypeError:  # a storage that cannot be weakly referenced: read every time
            self._note_mistakes(t)
            return self.of(t)
        hit = per.get(t._trial_id)
        if hit is not None and (hit[0] is t or (hit[0].number == t.number and hit[0].user_attrs == t.user_attrs)):
            return hit[1]
        if len(per) > _CACHE_LIMIT:
            per.clear()
        fid = self.of(t)
        per[t._trial_id] = (t, fid)
        self._note_mistakes(t)
        return fid

    # ------------------------------------------------------------------ fidelity mistakes
    def _note_mistakes(self, t: FrozenTrial) -> None:
        """Remember a finished trial that has no fidelity without being run here, or an axis among its params."""
        axes = self.core.axes
        if not axes or not t.params:
            return
        in_params = [a for a in axes if a in t.params]
        for a in in_params:
            self._mistakes.setdefault(f"fid:param:{a}", set()).add(t.number)
        if not in_params and not self.has(t) and _RUN_HERE not in t.system_attrs:
            self._mistakes.setdefault("fid:none", set()).add(t.number)

    def report_mistakes(self) -> None:
        """Warn (once each) about the trials :meth:`_note_mistakes` found, with their count."""
        for key, numbers in self._mistakes.items():
            if key in self.warned or not numbers:
                continue
            self.warned.add(key)
            first = min(numbers)
            if key == "fid:none":
                logger.warning(
                    "%d finished trial(s) (first: #%d) have no %r user attribute and were not run by this sampler "
                    "(added with add_trial, or run under another sampler), so they count as target runs at %s. If "
                    "they ran cheaper, attach their fidelity: create_trial(..., user_attrs={%r: {axis: value}}), or "
                    "import them with autollm_sampler.integrations.optuna.add_history(); give real target runs "
                    "the target as their fidelity to silence this (warned once)",
                    len(numbers), first, self.attr, fmt_fidelity(self.core.target), self.attr,
                )
            else:
                axis = key.split(":", 2)[2]
                logger.warning(
                    "fidelity axis %r is a parameter of %d trial(s) (first: #%d), but the sampler reads fidelity "
                    "from user attributes only: give it as user_attrs={%r: {%r: value, ...}} instead of in params, "
                    "or trials without it count as target runs (warned once)",
                    axis, len(numbers), first, self.attr, axis,
                )

    # ------------------------------------------------------------------ cost-aware mode
    def spent_by_level(self, study: Study, exclude: int | None = None) -> dict[int | None, float]:
        """Cost spent (finished trials) or committed (running ones) per level; a trial's measured cost
        (``cost_attr``, when finite and >= 0) counts, else its level's cost."""

        def runs() -> Iterator[tuple[dict[str, float] | None, float | None]]:
            for t in study.get_trials(deepcopy=False, states=(*_FINISHED, TrialState.RUNNING)):
                if t.number == exclude:
                    continue
                cost = finite_or_none(t.user_attrs.get(self.cost_attr))
                yield self.of(t), (cost if cost is not None and cost >= 0 else None)

        return self.core.spent_by_level(runs())

    def choose(self, study: Study, exclude: int | None = None) -> tuple[BudgetChoice, dict[int | None, float]]:
        """The schedule's choice for the next trial (and the spending per level), from every trial but ``exclude``.

        Finished trials give their level's values in trial order (a pruned or failed trial: no value), running
        ones commit their cost; the study's direction tells what improves.
        """

        names: set[str] = set()  # the parameters seen so far (a mixture counts once): how wide the space is

        def runs() -> Iterator[LevelRun]:
            for t in study.get_trials(deepcopy=False, states=(*_FINISHED, TrialState.RUNNING)):
                names.update(self.group_of.get(n, n) for n in t.params)
                if t.number == exclude:
                    continue
                cost = finite_or_none(t.user_attrs.get(self.cost_attr))
                value = t.value if t.state == TrialState.COMPLETE else None
                yield self.of(t), (cost if cost is not None and cost >= 0 else None), t.state in _FINISHED, value

        direction = "maximize" if study.directions[0] == StudyDirection.MAXIMIZE else "minimize"
        items = list(runs())
        return self.core.choose_level(items, direction, dims=len(names) or None)

    def assign(self, study: Study, trial: FrozenTrial) -> None:
        """Write the level the schedule chooses for ``trial`` into its user attributes (unless it has one)."""
        schedule = self.core.schedule
        assert schedule is not None
        if self.has(trial):
            return  # the user chose (enqueue_trial or a flat attribute); respect it
        choice, spent = self.choose(study, exclude=trial.number)
        level = choice.level
        attrs: dict[str, Any] = {}
        if level is None:
            level = min(range(len(schedule.levels)), key=lambda i: schedule.levels[i].cost)
            attrs[_BUDGET_OUT] = True
            logger.warning(
                "the cost-aware budget %.4g is spent (%s); trial %d runs at the cheapest level. Stop the study "
                "with callbacks=[sampler.stop_when_budget_spent]",
                schedule.budget,
                choice.reason,
                trial.number,
            )
        lv = schedule.levels[level]
        attrs.update({self.attr: dict(lv.fidelity), "fidelity_level": lv.name, "fidelity_cost": lv.cost})
        attrs[_SCHEDULE] = schedule.describe(level, spent, choice.reason)
        for k, v in attrs.items():
            study._storage.set_trial_user_attr(trial._trial_id, k, v)
            trial.user_attrs[k] = v


def _exact(fid: Mapping[str, float]) -> str:
    """``n_tokens=25999966208``: enough digits to tell a near-target fidelity from the target (4 do not)."""
    return ", ".join(f"{k}={v:.12g}" for k, v in fid.items())
