"""``AutoLLMSampler``: the research agent as a drop-in Optuna sampler.

The sampler reads the whole study as a multi-fidelity history (cheap runs at small scale plus any target
runs so far) and asks the agent for the next target configuration. It samples *relatively*: every
parameter the agent understands (float and int, with log or step; categorical; mixture weights declared
with ``mixtures=``) is proposed jointly; anything else (conditional parameters, new parameters, unknown
types) goes to an independent fallback sampler, with a warning once per parameter.

Fidelity of a trial
    The constructor names the fidelity axes and the target point. A trial's fidelity is read from its
    user attributes, either one ``"fidelity"`` dict (``{"n_params": 1.2e8, "n_tokens": 2e9}``) or one user
    attribute per axis (``n_params=1.2e8``). Axes a trial leaves out take the target's value, so **a trial
    without fidelity is a target trial**. There are three ways to set it::

        # 1. earlier runs, added as finished trials
        study.add_trial(optuna.trial.create_trial(
            params={"lr": 3e-3}, distributions={"lr": FloatDistribution(1e-4, 1e-1, log=True)},
            value=2.71, user_attrs={"fidelity": {"n_params": 1.2e8, "n_tokens": 2e9}}))
        # 2. a queued trial that should run cheap
        study.enqueue_trial({}, user_attrs={"fidelity": {"n_params": 1.2e8, "n_tokens": 2e9}})
        # 3. inside the objective, before the first suggest call
        trial.set_user_attr("fidelity", {"n_params": 1.2e8, "n_tokens": 2e9})

    :func:`add_history` imports a spreadsheet of earlier runs (CSV, JSONL) with their fidelity. Numeric
    strings are read as numbers; a fidelity within 1% of the target on every axis (``NEAR_TARGET_RTOL``,
    as the CLI) is the target. Trials added without fidelity, or with a fidelity axis among their params,
    are logged once with their count. Every finished trial gets :data:`IS_TARGET_ATTR`;
    :func:`target_trials` and :func:`target_best_trial` leave the cheap runs out.

Cost-aware mode (Setting B)
    With ``fidelity_levels=[{axis: value, ..., "cost": c}, ...]`` the sampler also picks the fidelity of
    every new trial within ``budget`` (default: five target runs), following :class:`CostSchedule`, and
    writes it to the trial's user attributes before the objective runs: ``trial.user_attrs["fidelity"]``
    (the dict), ``"fidelity_level"`` (its name) and ``"fidelity_cost"``. Stop with
    ``callbacks=[sampler.stop_when_budget_spent]`` and ask :meth:`AutoLLMSampler.recommend` for the answer.

Trial states
    COMPLETE trials are evidence; PRUNED trials count with their last intermediate value; FAILED trials
    (including NaN objectives) mark configurations as tried. RUNNING and WAITING trials are *pending*: their
    configurations, including a proposal not yet written as params, are never proposed again.

Concurrency
    Threads (``n_jobs > 1``) share one lock. Processes sharing RDB or journal storage see each other's
    proposals as soon as they are written; to close the race between reading the study and writing a
    proposal, the sampler claims its proposal, re-reads the study, and proposes again (up to
    ``_CLAIM_ATTEMPTS`` times) when another trial claimed the same configuration earlier.

Each proposal's predicted value, its uncertainty, its rationale and its source are stored as user
attributes ``autollm:predicted_value``, ``autollm:predicted_std``, ``autollm:rationale`` and
``autollm:source`` (so optuna-dashboard shows them); :meth:`AutoLLMSampler.explain` prints them.

Example:
    >>> import optuna
    >>> from autollm_sampler.integrations.optuna import AutoLLMSampler
    >>> sampler = AutoLLMSampler(fidelity=("n_params",), target={"n_params": 1e9}, agent="classical", seed=0)
    >>> study = optuna.create_study(sampler=sampler)
    >>> study.add_trial(optuna.trial.create_trial(
    ...     params={"lr": 3e-3}, distributions={"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)},
    ...     value=2.7, user_attrs={"fidelity": {"n_params": 1e8}}))
    >>> study.optimize(lambda t: (t.suggest_float("lr", 1e-4, 1e-1, log=True) - 2e-3) ** 2, n_trials=1)
    >>> study.trials[-1].params["lr"]
    0.003
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState
from pydantic import ValidationError

from autollm_sampler.agent import Agent, Proposal
from autollm_sampler.exceptions import AutoLLMSamplerError
from autollm_sampler.history import History, Trial, read_history
from autollm_sampler.integrations._common import (
    NEAR_TARGET_RTOL,
    AgentSpec,
    CostSchedule,
    check_agent_spec,
    check_target,
    derive_seed,
    finite_or_none,
    fresh_seed,
    near_fidelity,
    parse_levels,
    resolve_agent,
    same_fidelity,
)
from autollm_sampler.integrations._explain import describe_history, fmt_fidelity, fmt_params, fmt_value
from autollm_sampler.space import (
    ROLES,
    CategoricalParam,
    FloatParam,
    IntParam,
    SearchSpace,
    SimplexParam,
    check_role,
)

__all__ = [
    "AutoLLMSampler",
    "suggest_mixture",
    "measure_overhead",
    "add_history",
    "target_trials",
    "target_best_trial",
    "ATTR_PREFIX",
    "IS_TARGET_ATTR",
]

logger = logging.getLogger(__name__)

#: Prefix of every attribute the sampler writes on a trial.
ATTR_PREFIX = "autollm:"
_PRED = ATTR_PREFIX + "predicted_value"
_STD = ATTR_PREFIX + "predicted_std"
_WHY = ATTR_PREFIX + "rationale"
_SRC = ATTR_PREFIX + "source"
_PROPOSAL = ATTR_PREFIX + "proposal"  # system attr: the proposal, visible to other workers at once
_READ_AT = ATTR_PREFIX + "read_at"  # system attr: when the history for this proposal was read
_PROPOSED_AT = ATTR_PREFIX + "proposed_at"  # system attr: when the proposal was written
_BUDGET_OUT = ATTR_PREFIX + "budget_exhausted"
_ATTEMPTS = ATTR_PREFIX + "claim_attempts"  # system attr: proposals made before one was kept
_FIXED_ASK = 16  # proposals asked for when enqueue_trial fixed some values (one is kept)
_CLAIM_ATTEMPTS = 8  # proposals per trial at most while other workers claim the same configuration first
_RUN_HERE = ATTR_PREFIX + "sampled"  # system attr: the trial started under an AutoLLMSampler
#: User attribute set on every finished trial the sampler saw (and on imported ones): whether it is a target
#: run. Filter on it in optuna-dashboard; :func:`target_trials` and :func:`target_best_trial` read it too.
IS_TARGET_ATTR = ATTR_PREFIX + "is_target"
_CACHE_LIMIT = 200_000  # cached finished trials before the caches are cleared

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
_PENDING = (TrialState.RUNNING, TrialState.WAITING)


def suggest_mixture(trial: optuna.trial.BaseTrial, name: str, components: Sequence[str]) -> dict[str, float]:
    """Suggest mixture weights as one ``<name>.<component>`` float in ``[0, 1]`` per component, normalised.

    Declare the same group on the sampler (``AutoLLMSampler(mixtures={name: components})``) so the agent
    proposes the weights jointly on the simplex; any other sampler still yields valid weights thanks to the
    normalisation here.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> w = suggest_mixture(study.ask(), "mix", ["web", "code"])
        >>> round(sum(w.values()), 9)
        1.0
    """
    if len(components) < 2:
        raise ValueError(f"suggest_mixture({name!r}): a mixture needs at least two components, got {list(components)!r}")
    raw = {c: float(trial.suggest_float(f"{name}.{c}", 0.0, 1.0)) for c in components}
    total = sum(raw.values())
    if total <= 0:
        return {c: 1.0 / len(components) for c in components}
    return {c: w / total for c, w in raw.items()}


@dataclass(frozen=True)
class _Slot:
    """How one parameter of the agent's space maps onto Optuna parameters."""

    optuna_names: tuple[str, ...]  # one name, or one per mixture component
    mixture: bool


class AutoLLMSampler(BaseSampler):
    """An Optuna sampler that asks the autollm research agent for every relative sample.

    Args:
        fidelity: names of the fidelity axes, e.g. ``("n_params", "n_tokens")``. Empty: every trial is a
            target trial.
        target: the expensive fidelity point the study optimises, one finite value per axis.
        agent: an :class:`~autollm_sampler.agent.Agent`, ``"default"`` (the shipped model; falls back to
            ``"classical"`` with a warning when it cannot be loaded), ``"classical"`` or a checkpoint path.
        seed: makes the proposals (and the fallback sampler) reproducible.
        fallback_sampler: samples the parameters the agent does not handle; default ``RandomSampler``.
        mixtures: mixture-weight groups, ``{name: [component, ...]}``. The objective suggests
            ``<name>.<component>`` floats in ``[0, 1]`` (see :func:`suggest_mixture`); the agent proposes
            them jointly as weights summing to one.
        roles: parameter roles by name (``{"peak_lr": "lr"}``), overriding the guess from the name.
        fidelity_attr: the user attribute holding a trial's fidelity dict.
        cost_attr: a user attribute with a trial's measured cost; used by the cost-aware budget if present.
        fidelity_levels: enables the cost-aware mode: ``[{axis: value, ..., "cost": c, "name": opt}, ...]``,
            which must include the target.
        budget: the cost-aware budget, in level-cost units; default five target runs.
        low_fidelity_share: share of the budget reserved for levels below the target (cost-aware mode).

    Raises:
        ValueError: on inconsistent arguments (the message names both and the fix).

    Example:
        >>> sampler = AutoLLMSampler(fidelity=("n_params", "n_tokens"),
        ...                          target={"n_params": 1.07e9, "n_tokens": 2e10}, agent="classical", seed=0)
        >>> import pickle; type(pickle.loads(pickle.dumps(sampler))).__name__
        'AutoLLMSampler'
    """

    def __init__(
        self,
        *,
        fidelity: Sequence[str] = (),
        target: Mapping[str, float] | None = None,
        agent: AgentSpec = "default",
        seed: int | None = None,
        fallback_sampler: BaseSampler | None = None,
        mixtures: Mapping[str, Sequence[str]] | None = None,
        roles: Mapping[str, str] | None = None,
        fidelity_attr: str = "fidelity",
        cost_attr: str = "cost",
        fidelity_levels: Sequence[Mapping[str, Any]] | None = None,
        budget: float | None = None,
        low_fidelity_share: float = 0.4,
    ) -> None:
        if isinstance(fidelity, str):
            fidelity = (fidelity,)
        self._axes: tuple[str, ...] = tuple(fidelity)
        if fidelity_levels is not None and not self._axes:
            raise ValueError("fidelity_levels= needs fidelity=(axis, ...) and target= as well; name the fidelity axes")
        if budget is not None and fidelity_levels is None:
            raise ValueError("budget= only applies to the cost-aware mode; pass fidelity_levels= too, or drop budget=")
        self._target = check_target(self._axes, target)
        self._schedule: CostSchedule | None = None
        if fidelity_levels is not None:
            self._schedule = CostSchedule(
                parse_levels(fidelity_levels, self._axes),
                target=self._target,
                budget=budget,
                low_fidelity_share=low_fidelity_share,
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self._seed = None if seed is None else int(seed)
        self._seed_base = self._seed if self._seed is not None else fresh_seed()
        self._agent_spec: AgentSpec = check_agent_spec(agent)
        # resolved now, once: an explicit checkpoint that cannot load raises here (CheckpointError), and
        # "default" falls back (loudly, once) here rather than being retried trial after trial
        self._agent: Agent = resolve_agent(self._agent_spec)
        self._fallback = fallback_sampler if fallback_sampler is not None else RandomSampler(seed=self._seed)
        self._mixtures = _check_mixtures(mixtures)
        self._component_of: dict[str, str] = {
            f"{g}.{c}": g for g, comps in self._mixtures.items() for c in comps
        }
        self._roles = _check_roles(roles)
        self._fidelity_attr = fidelity_attr
        self._cost_attr = cost_attr
        self._lock = threading.RLock()
        self._warned: set[str] = set()
        self._fallbacks: Counter[str] = Counter()
        self._reset_caches()

    def _reset_caches(self) -> None:
        # finished trials never change, so their fidelity and converted form are cached by trial id
        self._fid_cache: dict[tuple[int, int], dict[str, float] | None] = {}
        self._trial_cache: dict[tuple[int, int], tuple[Any, Trial | None]] = {}
        self._space_cache: dict[Any, tuple[SearchSpace, dict[str, _Slot]]] = {}
        # finished trials (by number) that look like fidelity mistakes, found as their fidelity is first read
        self._mistakes: dict[str, set[int]] = {}

    # ------------------------------------------------------------------ public properties
    @property
    def agent(self) -> Agent:
        """The agent in use (resolved at construction; ``"default"`` may have fallen back to classical)."""
        return self._agent

    @property
    def fallback_counts(self) -> Counter[str]:
        """How many trials (or parameters) the sampler handed to independent sampling, by kind.

        ``error``: proposing raised (outside strict mode) and the whole trial was sampled independently;
        ``unmapped``: a proposed value could not be written as a valid Optuna value, so that one parameter was
        sampled independently while the rest of the proposal was kept; ``claim``: with shared storage, every
        re-proposal was claimed by another worker first and the last one was kept anyway.
        """
        return self._fallbacks

    @property
    def fidelity_axes(self) -> tuple[str, ...]:
        return self._axes

    @property
    def target(self) -> dict[str, float]:
        return dict(self._target)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        for cache in ("_fid_cache", "_trial_cache", "_space_cache"):
            state.pop(cache, None)
        if not isinstance(self._agent_spec, Agent):
            state["_agent"] = None  # resolved again from its name or path when unpickled
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        if self.__dict__.get("_agent") is None:
            self._agent = resolve_agent(self._agent_spec)
        self.__dict__.setdefault("_fallbacks", Counter())
        self._reset_caches()

    # ------------------------------------------------------------------ BaseSampler API
    def reseed_rng(self) -> None:
        with self._lock:
            self._seed_base = fresh_seed()
        self._fallback.reseed_rng()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._check_single_objective(study)
        self._fallback.before_trial(study, trial)
        if self._axes:  # marks trials run under this sampler: others without fidelity are worth a warning
            study._storage.set_trial_system_attr(trial._trial_id, _RUN_HERE, True)
        if self._schedule is not None:
            with self._lock:
                self._assign_fidelity(study, trial)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._fallback.after_trial(study, trial, state, values)
        fid = self._fidelity_of(trial)
        if fid is not None:
            study._storage.set_trial_user_attr(trial._trial_id, IS_TARGET_ATTR, same_fidelity(fid, self._target))

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        self._check_single_objective(study)
        try:
            fid = self._fidelity_of(trial)
            with self._lock:
                return self._infer_space(study, fid if fid is not None else self._target, exclude=trial.number)
        except Exception as exc:  # strict: raise; else never fail a study: fall back to independent sampling
            if self._agent.strict:
                raise
            self._note_failure("could not infer the search space", trial, exc)
            return {}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._check_single_objective(study)
        if not search_space:
            return {}
        try:
            with self._lock:
                return self._sample_relative(study, trial, search_space)
        except Exception as exc:  # strict: raise; else never fail a study on valid input
            if self._agent.strict:
                raise
            self._note_failure("failed to propose", trial, exc)
            return {}

    def _note_failure(self, what: str, trial: FrozenTrial, exc: Exception) -> None:
        """Count a trial handed to independent sampling; log the first failure of each kind with its reason."""
        with self._lock:
            self._fallbacks["error"] += 1
            self._warn_once(
                f"fail:{what}:{type(exc).__name__}",
                "AutoLLMSampler %s for trial %d (%s: %s); the trial is sampled independently by %s. Later failures "
                "of this kind are not logged again but counted in sampler.fallback_counts['error']; set "
                "AUTOLLM_STRICT=1 (or agent.strict = True) to raise instead",
                what,
                trial.number,
                type(exc).__name__,
                str(exc)[:300],
                type(self._fallback).__name__,
            )

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        self._check_single_objective(study)
        if param_name not in self._warned:
            has_history = any(t.params for t in study.get_trials(deepcopy=False, states=_FINISHED) if t.number != trial.number)
            with self._lock:
                if has_history and param_name not in self._warned:
                    self._warned.add(param_name)
                    logger.warning(
                        "parameter %r is sampled by the fallback sampler %s, not by the agent: it is conditional "
                        "or new, of a kind the agent does not read, or its range changed (warned once per parameter)",
                        param_name,
                        type(self._fallback).__name__,
                    )
        d = param_distribution
        if isinstance(d, FloatDistribution) and not d.log and not math.isfinite(d.high - d.low):
            # wider than the largest float (e.g. [-1e308, 1e308]): Optuna's samplers overflow on high - low
            p = _to_param(d, None)
            if isinstance(p, FloatParam):
                rng = np.random.default_rng(derive_seed(self._seed_base, trial.number, zlib.crc32(param_name.encode())))
                value = _cast(d, p, param_name, p.sample(rng))
                if value is not _MISSING:
                    return value
        value = self._fallback.sample_independent(study, trial, param_name, param_distribution)
        if isinstance(d, FloatDistribution) and d.step is not None:
            # Optuna's samplers compute low + k * step, which float rounding puts off the grid far from low
            cast = _cast(d, _to_param(d, None), param_name, value)
            if cast is not _MISSING:
                return cast
        return value

    # ------------------------------------------------------------------ cost-aware mode
    def _trial_cost(self, t: FrozenTrial) -> tuple[int | None, float]:
        """The (level index, cost) a trial spends from the budget."""
        assert self._schedule is not None
        fid = self._fidelity_of(t)
        level = self._schedule.level_of(fid) if fid is not None else None
        cost = finite_or_none(t.user_attrs.get(self._cost_attr))
        if cost is None or cost < 0:
            cost = self._schedule.levels[level].cost if level is not None else 0.0
        return level, cost

    def _spent_by_level(self, study: Study, exclude: int | None = None) -> dict[int | None, float]:
        spent: dict[int | None, float] = {}
        for t in study.get_trials(deepcopy=False, states=(*_FINISHED, TrialState.RUNNING)):
            if t.number == exclude:
                continue
            level, cost = self._trial_cost(t)
            spent[level] = spent.get(level, 0.0) + cost
        return spent

    def _assign_fidelity(self, study: Study, trial: FrozenTrial) -> None:
        assert self._schedule is not None
        if self._has_fidelity(trial):
            return  # the user chose (enqueue_trial or a flat attribute); respect it
        spent = self._spent_by_level(study, exclude=trial.number)
        level = self._schedule.choose(spent)
        attrs: dict[str, Any] = {}
        if level is None:
            level = min(range(len(self._schedule.levels)), key=lambda i: self._schedule.levels[i].cost)  # type: ignore[union-attr]
            attrs[_BUDGET_OUT] = True
            logger.warning(
                "the cost-aware budget %.4g is spent; trial %d runs at the cheapest level. Stop the study with "
                "callbacks=[sampler.stop_when_budget_spent]",
                self._schedule.budget,
                trial.number,
            )
        lv = self._schedule.levels[level]
        attrs.update({self._fidelity_attr: dict(lv.fidelity), "fidelity_level": lv.name, "fidelity_cost": lv.cost})
        attrs[ATTR_PREFIX + "schedule"] = self._schedule.describe(level, spent)
        for k, v in attrs.items():
            study._storage.set_trial_user_attr(trial._trial_id, k, v)
            trial.user_attrs[k] = v

    def budget_spent(self, study: Study) -> float:
        """Cost spent or committed (running trials) so far; cost-aware mode only."""
        self._require_schedule("budget_spent")
        return float(sum(self._spent_by_level(study).values()))

    def budget_left(self, study: Study) -> float:
        """The budget minus :meth:`budget_spent`."""
        return self._require_schedule("budget_left").budget - self.budget_spent(study)

    def budget_exhausted(self, study: Study) -> bool:
        """Whether no fidelity level is affordable any more."""
        schedule = self._require_schedule("budget_exhausted")
        return schedule.choose(self._spent_by_level(study)) is None

    def stop_when_budget_spent(self, study: Study, trial: FrozenTrial) -> None:
        """An ``optimize`` callback that stops the study once the cost-aware budget is spent."""
        if self._schedule is not None and self.budget_exhausted(study):
            study.stop()

    def _require_schedule(self, what: str) -> CostSchedule:
        if self._schedule is None:
            raise ValueError(f"{what}() needs the cost-aware mode; construct the sampler with fidelity_levels=[...]")
        return self._schedule

    def recommend(self, study: Study) -> Proposal:
        """The configuration to run at the target: the best target trial, else the agent's top proposal.

        Returns a :class:`~autollm_sampler.agent.Proposal` whose ``params`` use the study's parameter names
        and whose ``source`` is ``"observed"`` for a measured trial.
        """
        self._check_single_objective(study)
        target_trials = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if (f := self._fidelity_of(t)) is not None and same_fidelity(f, self._target) and _finite(t.value)
        ]
        if target_trials:
            sign = 1.0 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1.0
            best = min(target_trials, key=lambda t: sign * float(t.value))  # type: ignore[arg-type]
            return Proposal(dict(best.params), float(best.value), 0.0, f"Best completed target trial #{best.number}.", "observed")  # type: ignore[arg-type]
        with self._lock:
            search_space = self._infer_space(study, self._target, exclude=None)
            if not search_space:
                raise AutoLLMSamplerError("no trial has parameters yet, so there is nothing to recommend; run some trials first")
            space, slots = self._build_space(search_space, study)
            history, pending = self._collect(study, None, space, slots, self._target)
            prop = self.agent.propose(history, space, self._target, n=1, seed=derive_seed(self._seed_base, 2**31 - 1), pending=pending)[0]
        params = self._to_optuna(prop.params, search_space, space, slots)
        return Proposal(params, prop.predicted_value, prop.predicted_std, prop.rationale, prop.source)

    # ------------------------------------------------------------------ explain
    def explain(self, study: Study, *, file: TextIO | None = sys.stdout) -> str:
        """Describe the evidence and every proposal the sampler made in ``study``, readably.

        Writes the text to ``file`` (standard output by default; ``None`` to only return it).
        """
        self._check_single_objective(study)
        out = io.StringIO()
        with self._lock:
            search_space = self._infer_space(study, self._target, exclude=None)
            space, slots = self._build_space(search_space, study)
            history, _ = self._collect(study, None, space, slots, self._target)
        agent_name = self._agent.name if self._agent is not None else str(self._agent_spec)
        print(f"AutoLLMSampler (agent: {agent_name}) for target {fmt_fidelity(self._target)}", file=out)
        for line in describe_history(history, space, self._target):
            print(line, file=out)
        if self._schedule is not None:
            spent = float(sum(self._spent_by_level(study).values()))
            print(f"Cost-aware budget: {spent:.4g} of {self._schedule.budget:.4g} spent.", file=out)
        proposed = [t for t in study.get_trials(deepcopy=False) if _WHY in t.user_attrs]
        if not proposed:
            print("The sampler has not proposed any trial in this study yet.", file=out)
        for t in proposed:
            fid = self._fidelity_of(t)
            where = fmt_fidelity(fid) if fid else "target"
            value = fmt_value(t.value) if t.state == TrialState.COMPLETE else t.state.name.lower()
            print(f"Trial {t.number} [{where}]: {fmt_params(t.params)} -> {value}", file=out)
            print(
                f"  predicted {fmt_value(t.user_attrs.get(_PRED))} +/- {fmt_value(t.user_attrs.get(_STD))}"
                f" ({t.user_attrs.get(_SRC, '?')})",
                file=out,
            )
            print(f"  why: {t.user_attrs.get(_WHY)}", file=out)
            if ATTR_PREFIX + "schedule" in t.user_attrs:
                print(f"  {t.user_attrs[ATTR_PREFIX + 'schedule']}", file=out)
        text = out.getvalue()
        if file is not None:
            file.write(text)
        return text

    # ------------------------------------------------------------------ the space as the agent reads it
    def parameter_roles(self, study: Study) -> dict[str, str]:
        """The role the agent gives each parameter it proposes (a mixture group under its own name)."""
        self._check_single_objective(study)
        with self._lock:
            search_space = self._infer_space(study, self._target, exclude=None)
            space, _ = self._build_space(search_space, study)
        return {name: space.role_of(name) for name in space.params}

    def describe_space(self, study: Study) -> str:
        """The search space the agent reads from ``study``, one line per parameter with its role.

        A role comes from ``roles=``, from ``mixtures=``, or is guessed from the name (see
        :func:`~autollm_sampler.space.infer_role`); pass ``roles={name: role}`` to override a guess. Parameters
        the agent does not read (sampled by the fallback sampler) are listed too. Returns the text; prints
        nothing.
        """
        self._check_single_objective(study)
        with self._lock:
            search_space = self._infer_space(study, self._target, exclude=None)
            space, slots = self._build_space(search_space, study)
        lines = [f"Search space of the agent (target {fmt_fidelity(self._target) if self._target else 'all trials'}):"]
        if not space.params:
            lines.append("  (no parameter yet: the space is read from the study's finished trials)")
        width = max((len(n) for n in space.params), default=0)
        for name, p in space.params.items():
            if isinstance(p, SimplexParam):
                source = "given in roles=" if name in self._roles else "mixtures="
            else:
                source = "given in roles=" if name in self._roles else "guessed from the name"
            lines.append(f"  {name:<{width}}  {_describe_param(p)}; role {space.role_of(name)} ({source})")
        used = {n for slot in slots.values() for n in slot.optuna_names}
        seen: list[str] = []
        for t in study.get_trials(deepcopy=False, states=_FINISHED):
            seen.extend(n for n in t.distributions if n not in used and n not in seen)
        if seen:
            shown = ", ".join(seen[:20]) + (f" and {len(seen) - 20} more" if len(seen) > 20 else "")
            lines.append(f"Sampled by the fallback sampler ({type(self._fallback).__name__}): {shown}")
        lines.append(f"Valid roles for roles={{name: role}}: {', '.join(ROLES)}.")
        return "\n".join(lines)

    # ------------------------------------------------------------------ internals: fidelity
    def _has_fidelity(self, t: FrozenTrial) -> bool:
        ua = t.user_attrs
        return self._fidelity_attr in ua or any(a in ua for a in self._axes)

    def _fidelity_of(self, t: FrozenTrial) -> dict[str, float] | None:
        """A trial's fidelity (target values for axes it leaves out); ``None`` when its attribute is invalid.

        Numeric strings (as ``csv.DictReader`` gives them) are read as numbers. A fidelity within
        ``NEAR_TARGET_RTOL`` of the target on every axis is the target, unless it is one of the cost-aware
        levels. Each kind of problem is logged once per sampler, not once per trial.
        """
        if not self._axes:
            return {}
        ua = t.user_attrs
        raw = ua.get(self._fidelity_attr)
        if raw is None:
            src: Mapping[str, Any] = {a: ua[a] for a in self._axes if a in ua}
        elif isinstance(raw, Mapping):
            src = raw
        elif len(self._axes) == 1 and _fidelity_number(raw) is not None:
            src = {self._axes[0]: raw}
        else:
            self._warn_once(
                "fid:attr",
                "trial %d: user attribute %r is %s, not a {axis: number} dict; such trials are left out of the "
                "history (warned once)",
                t.number, self._fidelity_attr, _short(raw),
            )
            return None
        fid = dict(self._target)
        for a, v in src.items():
            if a not in fid:
                self._warn_once(f"axis:{a}", "fidelity axis %r (trial %d) is not one of %r; it is ignored", a, t.number, list(self._axes))
                continue
            fv = _fidelity_number(v)
            if fv is None:
                self._warn_once(
                    f"fid:bad:{a}",
                    "trial %d: fidelity %r is %s, not a finite number; such trials are left out of the history "
                    "(warned once per axis)",
                    t.number, a, _short(v),
                )
                return None
            if isinstance(v, str) and "fid:str" not in self._warned:
                self._warned.add("fid:str")
                logger.info("trial %d: fidelity %r is the string %r; fidelity strings are read as numbers", t.number, a, _short(v))
            fid[a] = fv
        if not same_fidelity(fid, self._target) and near_fidelity(fid, self._target):
            if self._schedule is None or self._schedule.level_of(fid) is None:
                self._warn_once(
                    "fid:near",
                    "trial %d: fidelity %s is within %.3g%% of the target %s on every axis, so it counts as a "
                    "target run, as does every trial this close (warned once); give the target's exact values to "
                    "silence this",
                    t.number, fmt_fidelity(fid), 100 * NEAR_TARGET_RTOL, fmt_fidelity(self._target),
                )
                return dict(self._target)
        return fid

    def is_target_trial(self, trial: FrozenTrial) -> bool:
        """Whether ``trial`` ran at the target fidelity, as the sampler reads it (near-target runs included)."""
        fid = self._fidelity_of(trial)
        return fid is not None and same_fidelity(fid, self._target)

    def _cached_fidelity(self, study: Study, t: FrozenTrial) -> dict[str, float] | None:
        if t.state not in _FINISHED:
            return self._fidelity_of(t)
        key = (id(study._storage), t._trial_id)
        if key not in self._fid_cache:
            if len(self._fid_cache) > _CACHE_LIMIT:
                self._fid_cache.clear()
            self._fid_cache[key] = self._fidelity_of(t)
            self._note_mistakes(t)
        return self._fid_cache[key]

    def _note_mistakes(self, t: FrozenTrial) -> None:
        """Remember a finished trial that has no fidelity without being run here, or an axis among its params."""
        if not self._axes or not t.params:
            return
        in_params = [a for a in self._axes if a in t.params]
        for a in in_params:
            self._mistakes.setdefault(f"fid:param:{a}", set()).add(t.number)
        if not in_params and not self._has_fidelity(t) and _RUN_HERE not in t.system_attrs:
            self._mistakes.setdefault("fid:none", set()).add(t.number)

    def _report_mistakes(self) -> None:
        """Warn (once each) about the trials :meth:`_note_mistakes` found, with their count."""
        for key, numbers in self._mistakes.items():
            if key in self._warned or not numbers:
                continue
            self._warned.add(key)
            first = min(numbers)
            if key == "fid:none":
                logger.warning(
                    "%d finished trial(s) (first: #%d) have no %r user attribute and were not run by this sampler "
                    "(added with add_trial, or run under another sampler), so they count as target runs at %s. If "
                    "they ran cheaper, attach their fidelity: create_trial(..., user_attrs={%r: {axis: value}}), or "
                    "import them with autollm_sampler.integrations.optuna.add_history(); give real target runs "
                    "the target as their fidelity to silence this (warned once)",
                    len(numbers), first, self._fidelity_attr, fmt_fidelity(self._target), self._fidelity_attr,
                )
            else:
                axis = key.split(":", 2)[2]
                logger.warning(
                    "fidelity axis %r is a parameter of %d trial(s) (first: #%d), but the sampler reads fidelity "
                    "from user attributes only: give it as user_attrs={%r: {%r: value, ...}} instead of in params, "
                    "or trials without it count as target runs (warned once)",
                    axis, len(numbers), first, self._fidelity_attr, axis,
                )

    def _warn_once(self, key: str, msg: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            logger.warning(msg, *args)

    # ------------------------------------------------------------------ internals: search space
    def _check_single_objective(self, study: Study) -> None:
        if len(study.directions) > 1:
            raise ValueError(
                f"AutoLLMSampler supports single-objective studies only, but this study has {len(study.directions)} "
                "objectives. Optimise one objective (for example a weighted sum), or use a multi-objective sampler "
                "such as optuna.samplers.NSGAIISampler."
            )

    def _infer_space(self, study: Study, fid: Mapping[str, float], exclude: int | None) -> dict[str, BaseDistribution]:
        finished = [t for t in study.get_trials(deepcopy=False, states=_FINISHED) if t.params and t.number != exclude]
        if not finished:
            return {}
        complete = [t for t in finished if t.state == TrialState.COMPLETE]
        here = [t for t in complete if (f := self._cached_fidelity(study, t)) is not None and same_fidelity(f, fid)]
        ref = here or complete or finished
        names = set(ref[0].distributions)
        for t in ref[1:]:
            names &= set(t.distributions)
        latest = max(ref, key=lambda t: t.number)
        space: dict[str, BaseDistribution] = {}
        for name in sorted(names, key=lambda n: list(latest.distributions).index(n)):
            dist = latest.distributions[name]
            if dist.single():
                continue
            group = self._component_of.get(name)
            if group is not None:
                if _is_unit_float(dist):
                    space[name] = dist
                continue
            if _to_param(dist, None) is not None:
                space[name] = dist
        # a mixture is used only when every component is present and is a plain [0, 1] float
        for group, comps in self._mixtures.items():
            names_g = [f"{group}.{c}" for c in comps]
            if not all(n in space for n in names_g):
                for n in names_g:
                    space.pop(n, None)
        return space

    def _build_space(self, search_space: Mapping[str, BaseDistribution], study: Study) -> tuple[SearchSpace, dict[str, _Slot]]:
        key = (tuple((n, repr(d)) for n, d in search_space.items()), study.direction)
        hit = self._space_cache.get(key)
        if hit is None:
            if len(self._space_cache) > 1000:
                self._space_cache.clear()
            hit = self._space_cache[key] = self._make_space(search_space, study)
        return hit

    def _make_space(self, search_space: Mapping[str, BaseDistribution], study: Study) -> tuple[SearchSpace, dict[str, _Slot]]:
        params: dict[str, Any] = {}
        slots: dict[str, _Slot] = {}
        seen_groups: set[str] = set()
        for name, dist in search_space.items():
            group = self._component_of.get(name)
            if group is not None:
                comps = self._mixtures[group]
                names_g = tuple(f"{group}.{c}" for c in comps)
                if group in seen_groups or not all(n in search_space and _is_unit_float(search_space[n]) for n in names_g):
                    continue
                seen_groups.add(group)
                params[group] = SimplexParam(components=comps, role=self._roles.get(group, "mixture"))
                slots[group] = _Slot(names_g, True)
                continue
            p = _to_param(dist, self._roles.get(name))
            if p is not None:
                params[name] = p
                slots[name] = _Slot((name,), False)
        if study.direction == optuna.study.StudyDirection.MAXIMIZE:
            return SearchSpace(params=params, direction="maximize"), slots
        return SearchSpace(params=params, direction="minimize"), slots

    # ------------------------------------------------------------------ internals: history
    def _agent_params(self, values: Mapping[str, Any], space: SearchSpace, slots: Mapping[str, _Slot]) -> dict[str, Any]:
        """Optuna parameter values -> the agent's configuration (only what the space reads)."""
        out: dict[str, Any] = {}
        for name, slot in slots.items():
            p = space.params[name]
            if slot.mixture:
                ws = [finite_or_none(values.get(n)) for n in slot.optuna_names]
                if any(w is None or w < 0 for w in ws):
                    continue
                total = float(sum(ws))  # type: ignore[arg-type]
                if total <= 0:
                    continue
                out[name] = {c: float(w) / total for c, w in zip(p.components, ws, strict=True)}  # type: ignore[union-attr, arg-type]
                continue
            if slot.optuna_names[0] not in values:
                continue
            v = values[slot.optuna_names[0]]
            if isinstance(p, CategoricalParam):
                try:
                    out[name] = p.validate_value(name, v)
                except (AutoLLMSamplerError, ValueError):
                    continue
            elif finite_or_none(v) is not None:
                out[name] = int(v) if isinstance(p, IntParam) and float(v).is_integer() else float(v)
        return out

    def _collect(
        self,
        study: Study,
        trial: FrozenTrial | None,
        space: SearchSpace,
        slots: Mapping[str, _Slot],
        fid_now: Mapping[str, float],
        known: dict[int, dict[str, Any]] | None = None,
    ) -> tuple[History, list[dict[str, Any]]]:
        """The study as a :class:`History`, plus the pending configurations at ``fid_now``.

        ``known`` (if given) receives, by trial number, the configuration accounted for (Optuna names).
        """
        trials: list[Trial] = []
        pending: list[dict[str, Any]] = []
        names = set(space.params)
        store = id(study._storage)
        for t in study.get_trials(deepcopy=False):
            if trial is not None and t.number == trial.number:
                continue
            if t.state in _PENDING:
                fid = self._fidelity_of(t)
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
                cfg = self._agent_params(merged, space, slots)
                if set(cfg) == names and same_fidelity(fid, fid_now):
                    pending.append(cfg)
                    if known is not None:
                        known[t.number] = merged
                continue
            if t.state not in _FINISHED:
                continue
            key = (store, t._trial_id)
            entry = self._trial_cache.get(key)
            if entry is None or entry[0] is not space:  # the (cached) space object identifies the conversion
                if len(self._trial_cache) > _CACHE_LIMIT:
                    self._trial_cache.clear()
                entry = self._trial_cache[key] = (space, self._convert_finished(study, t, space, slots))
            converted = entry[1]
            if converted is None:
                continue
            if same_fidelity(converted.fidelity, fid_now) and len(converted.params) != len(names):
                continue
            if known is not None:
                known[t.number] = t.params
            trials.append(converted)
        if self._mistakes:
            self._report_mistakes()
        return History.model_construct(trials=trials, fidelity_axes=self._axes), pending

    def _convert_finished(self, study: Study, t: FrozenTrial, space: SearchSpace, slots: Mapping[str, _Slot]) -> Trial | None:
        """A finished Optuna trial as a history :class:`Trial` (``None`` if it says nothing about the space)."""
        fid = self._cached_fidelity(study, t)
        if fid is None:
            return None
        params = self._agent_params(t.params, space, slots)
        if not params:
            return None
        state, value = _state_value(t)
        cost = finite_or_none(t.user_attrs.get(self._cost_attr))
        return Trial.model_construct(
            id=t.number,
            params=params,
            fidelity=fid,
            value=value,
            state=state,
            cost=cost if cost is not None and cost >= 0 else None,
            attrs={},
        )

    # ------------------------------------------------------------------ internals: proposing
    def _sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        space, slots = self._build_space(search_space, study)
        if not space.params:
            return {}
        fid = self._fidelity_of(trial)
        fid_now = fid if fid is not None else dict(self._target)
        read_at = time.time()
        known: dict[int, dict[str, Any]] = {}
        history, pending = self._collect(study, trial, space, slots, fid_now, known)
        storage = study._storage
        shared = not isinstance(getattr(storage, "_backend", storage), optuna.storages.InMemoryStorage)
        # values fixed by a partial enqueue_trial replace the proposal's: ask for a few proposals and keep the
        # first that, with the fixed values put in, is not a configuration already run or running here
        raw_fixed = trial.system_attrs.get("fixed_params")
        fixed = {k: v for k, v in raw_fixed.items() if k in search_space} if isinstance(raw_fixed, Mapping) else {}
        for attempt in range(_CLAIM_ATTEMPTS):
            seed = derive_seed(self._seed_base, trial.number, attempt)
            props = self.agent.propose(history, space, fid_now, n=_FIXED_ASK if fixed else 1, seed=seed, pending=pending)
            proposal, params = self._pick(props, fixed, search_space, space, slots, study, trial, fid_now)
            self._note_unmapped(proposal.params, params, slots)
            # claim: the proposal first, then the time its write completed
            storage.set_trial_system_attr(trial._trial_id, _PROPOSAL, params)
            proposed_at = time.time()
            for k, v in ((_PROPOSED_AT, proposed_at), (_READ_AT, read_at), (_ATTEMPTS, attempt + 1)):
                storage.set_trial_system_attr(trial._trial_id, k, v)
            if not shared or not params:
                break  # one process: the lock already serialises proposals
            # verify: did another process claim the same configuration first, unseen at read time?
            clash = self._claimed_elsewhere(study, trial, params, proposed_at, fid_now, known)
            if clash is None:
                break
            if attempt == _CLAIM_ATTEMPTS - 1:
                self._fallbacks["claim"] += 1
                self._warn_once(
                    "claim",
                    "trial %d: %d proposals in a row were claimed first by other workers; the last one (also "
                    "claimed by trial %d) is kept (warned once, counted in sampler.fallback_counts['claim'])",
                    trial.number, _CLAIM_ATTEMPTS, clash[0],
                )
                break
            logger.debug("trial %d: %s was claimed by trial %d first; proposing again", trial.number, params, clash[0])
            # read the study again: every claim and result visible now is pending or history for the next try,
            # not only the one that clashed
            read_at = time.time()
            known = {}
            history, pending = self._collect(study, trial, space, slots, fid_now, known)
        user: dict[str, Any] = {
            _PRED: finite_or_none(proposal.predicted_value),
            _STD: finite_or_none(proposal.predicted_std),
            _WHY: str(proposal.rationale),
            _SRC: str(proposal.source),
        }
        for k, v in user.items():
            storage.set_trial_user_attr(trial._trial_id, k, v)
            trial.user_attrs[k] = v
        logger.debug("trial %d: proposed %s (%s)", trial.number, params, proposal.source)
        return params

    def _pick(
        self,
        props: Sequence[Proposal],
        fixed: Mapping[str, Any],
        search_space: Mapping[str, BaseDistribution],
        space: SearchSpace,
        slots: Mapping[str, _Slot],
        study: Study,
        trial: FrozenTrial,
        fid_now: Mapping[str, float],
    ) -> tuple[Proposal, dict[str, Any]]:
        """The first proposal whose Optuna values, with ``fixed`` put in, were not run or claimed at this
        fidelity (the first proposal when every one was, or when nothing is fixed)."""
        first = (props[0], self._to_optuna(props[0].params, search_space, space, slots))
        if not fixed or len(props) == 1:
            return first
        names = sorted(search_space)

        def key(values: Mapping[str, Any]) -> tuple[str, ...]:
            return tuple(repr(values.get(k)) for k in names)

        taken = set()
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, *_PENDING)):
            if t.number == trial.number:
                continue
            f = self._fidelity_of(t)
            if f is None or not same_fidelity(f, fid_now):
                continue
            claim = t.system_attrs.get(_PROPOSAL)
            taken.add(key({**(claim if isinstance(claim, Mapping) else {}), **t.params}))
        for p in props:
            params = first[1] if p is props[0] else self._to_optuna(p.params, search_space, space, slots)
            if key({**params, **fixed}) not in taken:
                return p, params
        return first

    def _claimed_elsewhere(
        self,
        study: Study,
        trial: FrozenTrial,
        params: Mapping[str, Any],
        proposed_at: float,
        fid_now: Mapping[str, float],
        known: Mapping[int, Mapping[str, Any]],
    ) -> tuple[int, dict[str, Any]] | None:
        """A trial, unknown when we read the study, that claimed ``params`` at this fidelity before us.

        A claim whose time is not written yet counts as earlier. Whatever the interleaving of two
        processes' writes and reads, at least one of them sees the other's claim as earlier and yields.
        """
        for t in study.get_trials(deepcopy=False):
            if t.number == trial.number:
                continue
            other = t.system_attrs.get(_PROPOSAL)
            merged = {**(other if isinstance(other, Mapping) else {}), **t.params}
            if not all(k in merged and merged[k] == v for k, v in params.items()):
                continue
            seen = known.get(t.number)
            if seen is not None and all(k in seen and seen[k] == v for k, v in params.items()):
                continue  # this claim was already in the history or pending when we proposed
            other_at = finite_or_none(t.system_attrs.get(_PROPOSED_AT))
            if other_at is not None and (other_at, t.number) > (proposed_at, trial.number):
                continue
            f = self._fidelity_of(t)
            if f is not None and same_fidelity(f, fid_now):
                return t.number, merged
        return None

    def _note_unmapped(self, config: Mapping[str, Any], params: Mapping[str, Any], slots: Mapping[str, _Slot]) -> None:
        """Count (and log once per parameter) proposed values that :meth:`_to_optuna` could not write."""
        for name, slot in slots.items():
            for oname in slot.optuna_names:
                if oname in params:
                    continue
                self._fallbacks["unmapped"] += 1
                self._warn_once(
                    f"unmapped:{oname}",
                    "the agent's value for %r (%s) is not a valid value of its distribution; that parameter is "
                    "sampled independently, the rest of the proposal is kept (warned once per parameter, counted "
                    "in sampler.fallback_counts['unmapped'])",
                    oname, repr(config.get(name))[:80],
                )

    def _to_optuna(
        self,
        config: Mapping[str, Any],
        search_space: Mapping[str, BaseDistribution],
        space: SearchSpace,
        slots: Mapping[str, _Slot],
    ) -> dict[str, Any]:
        """The agent's configuration -> Optuna values; anything invalid is left to the fallback sampler."""
        out: dict[str, Any] = {}
        for name, slot in slots.items():
            if name not in config:
                continue
            p = space.params[name]
            if slot.mixture:
                value = config[name]
                if not isinstance(value, Mapping):
                    continue
                for comp, oname in zip(p.components, slot.optuna_names, strict=True):  # type: ignore[union-attr]
                    w = finite_or_none(value.get(comp))
                    if w is not None:
                        cast = _cast(search_space[oname], p, oname, float(np.clip(w, 0.0, 1.0)))
                        if cast is not _MISSING:
                            out[oname] = cast
                continue
            oname = slot.optuna_names[0]
            cast = _cast(search_space[oname], p, name, config[name])
            if cast is not _MISSING:
                out[oname] = cast
        return out


_MISSING = object()


def _finite(x: Any) -> bool:
    return finite_or_none(x) is not None


def _is_unit_float(dist: BaseDistribution) -> bool:
    return isinstance(dist, FloatDistribution) and not dist.log and dist.step is None and dist.low == 0.0 and dist.high == 1.0


def _to_param(dist: BaseDistribution, role: str | None) -> FloatParam | IntParam | CategoricalParam | None:
    """An Optuna distribution as an agent parameter, or ``None`` when the agent cannot read it."""
    try:
        if isinstance(dist, FloatDistribution):
            return FloatParam(low=dist.low, high=dist.high, log=dist.log, step=dist.step, role=role)
        if isinstance(dist, IntDistribution):
            float(dist.low), float(dist.high)  # OverflowError (not read) beyond the float range
            return IntParam(low=dist.low, high=dist.high, log=dist.log, step=dist.step, role=role)
        if isinstance(dist, CategoricalDistribution):
            choices = dist.choices
            for c in choices:
                if c is None or not isinstance(c, (bool, int, float, str)):
                    return None
                if isinstance(c, float) and not math.isfinite(c):
                    return None
            return CategoricalParam(choices=tuple(choices), role=role)  # type: ignore[arg-type]
    except (ValidationError, ValueError, OverflowError):
        return None
    return None


def _cast(dist: BaseDistribution, p: Any, name: str, value: Any) -> Any:
    """``value`` as a valid member of ``dist`` (Python types), or ``_MISSING``."""
    try:
        if isinstance(dist, CategoricalDistribution):
            if not isinstance(p, CategoricalParam):
                return _MISSING
            v: Any = dist.choices[p.index_of(name, value)]
        elif isinstance(dist, IntDistribution):
            f = finite_or_none(value)
            if f is None:
                return _MISSING
            iv = value if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else round(f)
            q, r = divmod(int(iv) - dist.low, dist.step)  # onto the step grid, exactly (ints)
            v = dist.low + min(max(q + (2 * r >= dist.step), 0), (dist.high - dist.low) // dist.step) * dist.step
        elif isinstance(dist, FloatDistribution):
            f = finite_or_none(value)
            if f is None:
                return _MISSING
            v = float(min(max(f, dist.low), dist.high))
            if dist.step is not None and isinstance(p, FloatParam) and not dist._contains(v):
                n_max = p.n_steps()  # far from low, float rounding puts most products off Optuna's grid test
                if n_max is not None:
                    v = p._grid_value(v, n_max)
        else:
            return _MISSING
        return v if dist._contains(dist.to_internal_repr(v)) else _MISSING
    except (AutoLLMSamplerError, ValueError, TypeError, IndexError, ArithmeticError):
        return _MISSING


def _state_value(t: FrozenTrial) -> tuple[str, float | None]:
    if t.state == TrialState.COMPLETE:
        v = finite_or_none(t.value)
        return ("complete", v) if v is not None else ("failed", None)
    if t.state == TrialState.PRUNED:
        inter = [finite_or_none(v) for _, v in sorted(t.intermediate_values.items())]
        finite = [v for v in inter if v is not None]
        return "pruned", (finite[-1] if finite else None)
    return "failed", None


def _check_mixtures(mixtures: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for name, comps in (mixtures or {}).items():
        if isinstance(comps, str) or not isinstance(comps, Sequence):
            raise ValueError(f"mixtures[{name!r}] must be a list of component names, got {comps!r}")
        cs = tuple(str(c) for c in comps)
        if len(cs) < 2 or len(set(cs)) != len(cs):
            raise ValueError(f"mixtures[{name!r}] = {list(cs)!r}: give at least two distinct component names")
        out[str(name)] = cs
    return out


# ---------------------------------------------------------------------- fidelity helpers
def _short(x: Any, limit: int = 80) -> str:
    """``repr(x)``, cut to ``limit`` characters (messages stay short whatever the user stored)."""
    r = repr(x)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _fidelity_number(x: Any) -> float | None:
    """A fidelity value as a finite float: numbers, and numeric strings such as ``"2.6e10"``."""
    if isinstance(x, str):
        try:
            v = float(x.strip().replace("_", ""))
        except ValueError:
            return None
        return v if math.isfinite(v) else None
    return finite_or_none(x)


def _check_roles(roles: Mapping[str, str] | None) -> dict[str, str]:
    """``roles=`` with every role checked (an unknown one is a ``ValueError`` naming the parameter)."""
    if roles is None:
        return {}
    if not isinstance(roles, Mapping):
        raise ValueError(f"roles must be a mapping of parameter name to role, e.g. {{'peak_lr': 'lr'}}; got {_short(roles)}")
    out: dict[str, str] = {}
    for name, role in roles.items():
        try:
            out[str(name)] = check_role(role)
        except ValueError as exc:
            raise ValueError(f"roles[{_short(name)}]: {exc}") from None
    return out


def _describe_param(p: Any) -> str:
    if isinstance(p, FloatParam):
        extra = ", log" if p.log else (f", step {p.step:.4g}" if p.step is not None else "")
        return f"float in [{p.low:.4g}, {p.high:.4g}]{extra}"
    if isinstance(p, IntParam):
        extra = ", log" if p.log else (f", step {p.step}" if p.step != 1 else "")
        return f"int in [{p.low}, {p.high}]{extra}"
    if isinstance(p, CategoricalParam):
        shown = ", ".join(repr(c) for c in p.choices[:8]) + (", ..." if len(p.choices) > 8 else "")
        return f"categorical [{shown}]"
    if isinstance(p, SimplexParam):
        return f"mixture of {', '.join(p.components)}"
    return type(p).__name__


# ---------------------------------------------------------------------- importing runs, target-only views
def _sampler_of(study: Study, sampler: AutoLLMSampler | None, what: str) -> AutoLLMSampler:
    s = sampler if sampler is not None else study.sampler
    if not isinstance(s, AutoLLMSampler):
        raise TypeError(
            f"{what} needs the AutoLLMSampler whose fidelity axes and target apply: create the study with "
            f"sampler=AutoLLMSampler(...), or pass sampler=...; the study's sampler is {type(s).__name__}"
        )
    return s


def _optuna_distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    """A :class:`SearchSpace` as Optuna distributions (a simplex as ``<name>.<component>`` floats in [0, 1])."""
    out: dict[str, BaseDistribution] = {}
    for name, p in space.params.items():
        if isinstance(p, FloatParam):
            out[name] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
        elif isinstance(p, IntParam):
            out[name] = IntDistribution(p.low, p.high, log=p.log, step=p.step)
        elif isinstance(p, CategoricalParam):
            out[name] = CategoricalDistribution(list(p.choices))
        elif isinstance(p, SimplexParam):
            for c in p.components:
                out[f"{name}.{c}"] = FloatDistribution(0.0, 1.0)
    return out


def _load_runs(history: History | str | os.PathLike[str]) -> tuple[History, list[str], str]:
    """The runs, where each came from (``"runs.csv, line 3"``) and the source's name."""
    if isinstance(history, History):
        return history, [f"history trial {_short(t.id, 40)}" for t in history.trials], "the history"
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
    frozen: list[FrozenTrial] = []
    skipped: list[str] = []
    running = no_fid = 0
    for i, run in enumerate(runs.trials):
        where = wheres[i] if i < len(wheres) else f"{source}, trial {_short(run.id, 40)}"
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
                skipped.append(f"{where}: {n}={_short(v, 40)} is outside {d}")
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
            user_attrs[s._fidelity_attr] = fid
        if run.cost is not None:
            user_attrs[s._cost_attr] = run.cost
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
            raise ValueError(f"{where}: {_short(str(exc), 300)}") from None
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
    if isinstance(s, AutoLLMSampler):
        return [t for t in trials if s.is_target_trial(t)]
    return [t for t in trials if t.user_attrs.get(IS_TARGET_ATTR) is True]


def target_best_trial(study: Study, *, sampler: AutoLLMSampler | None = None) -> FrozenTrial:
    """The best completed target trial: ``study.best_trial`` without the cheap runs.

    Raises:
        ValueError: when no target trial has completed with a finite value yet.
    """
    if len(study.directions) > 1:
        raise ValueError("target_best_trial() needs a single-objective study")
    done = [t for t in target_trials(study, sampler=sampler) if _finite(t.value)]
    if not done:
        raise ValueError(
            "no target trial has completed yet (study.best_trial may be a cheap run); run trials at the target, "
            "or check the fidelity the trials carry"
        )
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1.0
    return min(done, key=lambda t: (sign * float(t.value), t.number))  # type: ignore[arg-type]


# ---------------------------------------------------------------------- overhead benchmark
def _round_trip(study: Study) -> None:
    trial = study.ask()
    trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    trial.suggest_int("layers", 2, 48)
    trial.suggest_categorical("batch_size", [32, 64, 128, 256, 512])
    study.tell(trial, 1.0)


def measure_overhead(
    n_completed: Sequence[int] = (10, 100, 1000),
    *,
    n_measured: int = 20,
    seed: int = 0,
    agent: AgentSpec = "classical",
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Per-trial sampler overhead of :class:`AutoLLMSampler` and ``TPESampler`` side by side.

    For each history size, both samplers get the same study content: ``n`` completed trials on a
    three-parameter space (log float, int, categorical), half of them at a cheaper fidelity. Then
    ``n_measured`` ask/tell rounds are timed with a constant objective, after one untimed warm-up round,
    so the time is the sampler's (plus the in-memory storage, the same for both).

    Returns:
        one row per size: ``n_completed``, ``autollm_ms``, ``tpe_ms`` (mean per trial), ``ratio`` and
        ``agent`` (the name of the agent actually used, after any fallback).
    """
    dists: dict[str, BaseDistribution] = {
        "lr": FloatDistribution(1e-5, 1e-1, log=True),
        "layers": IntDistribution(2, 48),
        "batch_size": CategoricalDistribution([32, 64, 128, 256, 512]),
    }
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for n in n_completed:
        history = []
        for i in range(n):
            params = {
                "lr": float(10 ** rng.uniform(-5, -1)),
                "layers": int(rng.integers(2, 49)),
                "batch_size": int(rng.choice([32, 64, 128, 256, 512])),
            }
            value = (math.log10(params["lr"]) + 3) ** 2 + rng.normal(0, 0.1)
            fid = {"n_params": 1e8 if i % 2 else 1e9}
            history.append(optuna.trial.create_trial(params=params, distributions=dists, value=float(value), user_attrs={"fidelity": fid}))
        times: dict[str, float] = {}
        samplers: dict[str, BaseSampler] = {
            "autollm": AutoLLMSampler(fidelity=("n_params",), target={"n_params": 1e9}, agent=agent, seed=seed),
            "tpe": optuna.samplers.TPESampler(seed=seed),
        }
        for label, sampler in samplers.items():
            study = optuna.create_study(sampler=sampler)
            study.add_trials(history)

            _round_trip(study)  # warm-up (lazy imports, model load), not timed
            t0 = time.perf_counter()
            for _ in range(n_measured):
                _round_trip(study)
            times[label] = (time.perf_counter() - t0) / n_measured * 1e3
        used = samplers["autollm"].agent.name  # type: ignore[attr-defined]
        rows.append(
            {"n_completed": n, "autollm_ms": times["autollm"], "tpe_ms": times["tpe"], "ratio": times["autollm"] / times["tpe"], "agent": used}
        )
        if progress is not None:
            progress(f"n={n}: AutoLLMSampler {times['autollm']:.2f} ms/trial, TPESampler {times['tpe']:.2f} ms/trial")
    return rows
