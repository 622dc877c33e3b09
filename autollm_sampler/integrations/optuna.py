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
import logging
import math
import sys
import threading
import time
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
from autollm_sampler.history import History, Trial
from autollm_sampler.integrations._common import (
    AgentSpec,
    CostSchedule,
    check_agent_spec,
    check_target,
    derive_seed,
    finite_or_none,
    fresh_seed,
    parse_levels,
    resolve_agent,
    same_fidelity,
)
from autollm_sampler.integrations._explain import describe_history, fmt_fidelity, fmt_params, fmt_value
from autollm_sampler.space import CategoricalParam, FloatParam, IntParam, SearchSpace, SimplexParam

__all__ = ["AutoLLMSampler", "suggest_mixture", "measure_overhead", "ATTR_PREFIX"]

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
_CLAIM_ATTEMPTS = 3
_CACHE_LIMIT = 200_000  # cached finished trials before the caches are cleared  # proposals per trial when another process claimed the same configuration first

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
        self._agent: Agent | None = agent if isinstance(agent, Agent) else None
        self._fallback = fallback_sampler if fallback_sampler is not None else RandomSampler(seed=self._seed)
        self._mixtures = _check_mixtures(mixtures)
        self._component_of: dict[str, str] = {
            f"{g}.{c}": g for g, comps in self._mixtures.items() for c in comps
        }
        self._roles = {str(k): str(v) for k, v in (roles or {}).items()}
        self._fidelity_attr = fidelity_attr
        self._cost_attr = cost_attr
        self._lock = threading.RLock()
        self._warned: set[str] = set()
        self._reset_caches()

    def _reset_caches(self) -> None:
        # finished trials never change, so their fidelity and converted form are cached by trial id
        self._fid_cache: dict[tuple[int, int], dict[str, float] | None] = {}
        self._trial_cache: dict[tuple[int, int], tuple[Any, Trial | None]] = {}
        self._space_cache: dict[Any, tuple[SearchSpace, dict[str, _Slot]]] = {}

    # ------------------------------------------------------------------ public properties
    @property
    def agent(self) -> Agent:
        """The agent in use (loaded on first use; ``"default"`` may have fallen back to classical)."""
        with self._lock:
            if self._agent is None:
                self._agent = resolve_agent(self._agent_spec)
            return self._agent

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
            state["_agent"] = None  # reloaded from its name or path on first use
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._reset_caches()

    # ------------------------------------------------------------------ BaseSampler API
    def reseed_rng(self) -> None:
        with self._lock:
            self._seed_base = fresh_seed()
        self._fallback.reseed_rng()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._check_single_objective(study)
        self._fallback.before_trial(study, trial)
        if self._schedule is not None:
            with self._lock:
                self._assign_fidelity(study, trial)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._fallback.after_trial(study, trial, state, values)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        self._check_single_objective(study)
        try:
            fid = self._fidelity_of(trial)
            with self._lock:
                return self._infer_space(study, fid if fid is not None else self._target, exclude=trial.number)
        except Exception as exc:  # never fail a study: fall back to independent sampling
            logger.warning("AutoLLMSampler could not infer the search space (%s: %s); sampling independently", type(exc).__name__, exc)
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
        except Exception as exc:  # never fail a study on valid input
            logger.warning(
                "AutoLLMSampler failed to propose for trial %d (%s: %s); sampling independently",
                trial.number,
                type(exc).__name__,
                exc,
            )
            return {}

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
        return self._fallback.sample_independent(study, trial, param_name, param_distribution)

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

    # ------------------------------------------------------------------ internals: fidelity
    def _has_fidelity(self, t: FrozenTrial) -> bool:
        ua = t.user_attrs
        return self._fidelity_attr in ua or any(a in ua for a in self._axes)

    def _fidelity_of(self, t: FrozenTrial) -> dict[str, float] | None:
        """A trial's fidelity (target values for axes it leaves out); ``None`` when its attribute is invalid."""
        if not self._axes:
            return {}
        ua = t.user_attrs
        raw = ua.get(self._fidelity_attr)
        if raw is None:
            src: Mapping[str, Any] = {a: ua[a] for a in self._axes if a in ua}
        elif isinstance(raw, Mapping):
            src = raw
        elif len(self._axes) == 1 and finite_or_none(raw) is not None:
            src = {self._axes[0]: raw}
        else:
            self._warn_once(f"fid:{t.number}", "trial %d: user attribute %r is %r, not a {axis: number} dict; the trial is left out of the history", t.number, self._fidelity_attr, raw)
            return None
        fid = dict(self._target)
        for a, v in src.items():
            if a not in fid:
                self._warn_once(f"axis:{a}", "fidelity axis %r (trial %d) is not one of %r; it is ignored", a, t.number, list(self._axes))
                continue
            fv = finite_or_none(v)
            if fv is None:
                self._warn_once(f"fid:{t.number}", "trial %d: fidelity %r is %r, not a finite number; the trial is left out of the history", t.number, a, v)
                return None
            fid[a] = fv
        return fid

    def _cached_fidelity(self, study: Study, t: FrozenTrial) -> dict[str, float] | None:
        if t.state not in _FINISHED:
            return self._fidelity_of(t)
        key = (id(study._storage), t._trial_id)
        if key not in self._fid_cache:
            if len(self._fid_cache) > _CACHE_LIMIT:
                self._fid_cache.clear()
            self._fid_cache[key] = self._fidelity_of(t)
        return self._fid_cache[key]

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
        for attempt in range(_CLAIM_ATTEMPTS):
            seed = derive_seed(self._seed_base, trial.number, attempt)
            proposal = self.agent.propose(history, space, fid_now, n=1, seed=seed, pending=pending)[0]
            params = self._to_optuna(proposal.params, search_space, space, slots)
            # claim: the proposal first, then the time its write completed
            storage.set_trial_system_attr(trial._trial_id, _PROPOSAL, params)
            proposed_at = time.time()
            for k, v in ((_PROPOSED_AT, proposed_at), (_READ_AT, read_at), (_ATTEMPTS, attempt + 1)):
                storage.set_trial_system_attr(trial._trial_id, k, v)
            if not shared:
                break  # one process: the lock already serialises proposals
            # verify: did another process claim the same configuration first, unseen at read time?
            read_at = time.time()
            clash = self._claimed_elsewhere(study, trial, params, proposed_at, fid_now, known)
            if clash is None or attempt == _CLAIM_ATTEMPTS - 1:
                break
            logger.debug("trial %d: %s was claimed by trial %d first; proposing again", trial.number, params, clash[0])
            known[clash[0]] = clash[1]
            cfg = self._agent_params(clash[1], space, slots)
            if set(cfg) == set(space.params):
                pending.append(cfg)
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
            return IntParam(low=dist.low, high=dist.high, log=dist.log, step=dist.step, role=role)
        if isinstance(dist, CategoricalDistribution):
            choices = dist.choices
            for c in choices:
                if c is None or not isinstance(c, (bool, int, float, str)):
                    return None
                if isinstance(c, float) and not math.isfinite(c):
                    return None
            return CategoricalParam(choices=tuple(choices), role=role)  # type: ignore[arg-type]
    except (ValidationError, ValueError):
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
            v = int(round(f))
        elif isinstance(dist, FloatDistribution):
            f = finite_or_none(value)
            if f is None:
                return _MISSING
            v = float(min(max(f, dist.low), dist.high))
        else:
            return _MISSING
        return v if dist._contains(dist.to_internal_repr(v)) else _MISSING
    except (AutoLLMSamplerError, ValueError, TypeError, IndexError):
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
