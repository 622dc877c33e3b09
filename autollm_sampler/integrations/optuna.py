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

import logging
import math
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from autollm_sampler.agent import Agent, Proposal
from autollm_sampler.exceptions import AutoLLMSamplerError
from autollm_sampler.history import History
from autollm_sampler.integrations._common import (
    RECOMMEND_KEY,
    AgentSpec,
    CostSchedule,
    SamplerCore,
    check_seed,
    finite_or_none,
    short_repr,
)
from autollm_sampler.integrations._explain import (
    Explanation,
    describe_history,
    fmt_fidelity,
    fmt_params,
    fmt_prediction,
    fmt_value,
    rationale_lines,
)
from autollm_sampler.integrations._optuna_claims import (
    _ATTEMPTS,  # noqa: F401  (re-exported: the attribute names and limits of the claims)
    _CLAIM_ATTEMPTS,
    _FIXED_ASK,
    _PROPOSAL,  # noqa: F401
    _PROPOSED_AT,  # noqa: F401
    _READ_AT,  # noqa: F401
    _claimed_elsewhere,
    _pick,
    claim,
    shared_storage,
    write_attrs,
)
from autollm_sampler.integrations._optuna_fidelity import (
    _BUDGET_OUT,  # noqa: F401  (re-exported, as every name below that this module does not use)
    _CACHE_LIMIT,  # noqa: F401
    _FINISHED,
    _PENDING,  # noqa: F401
    _RUN_HERE,
    _SCHEDULE,
    ATTR_PREFIX,
    IS_TARGET_ATTR,
    FidelityBook,
    _fidelity_number,  # noqa: F401
    warn_once,
)
from autollm_sampler.integrations._optuna_history import (
    TrialCache,  # noqa: F401
    _expand_params,  # noqa: F401
    _load_runs,  # noqa: F401
    _sampler_of,  # noqa: F401
    _state_value,  # noqa: F401
    add_history,
    collect,
    target_best_trial,
    target_trials,
)
from autollm_sampler.integrations._optuna_ledger import StudyLedger
from autollm_sampler.integrations._optuna_space import (
    _MISSING,
    SpaceReader,
    _cast,
    _check_mixtures,  # noqa: F401
    _check_roles,  # noqa: F401
    _describe_param,  # noqa: F401
    _is_unit_float,  # noqa: F401
    _optuna_distributions,  # noqa: F401
    _Slot,
    _to_param,
    suggest_mixture,
    to_optuna,
)
from autollm_sampler.space import FloatParam, SearchSpace

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

_PRED = ATTR_PREFIX + "predicted_value"
_STD = ATTR_PREFIX + "predicted_std"
_WHY = ATTR_PREFIX + "rationale"
_SRC = ATTR_PREFIX + "source"
_short = short_repr  # the name this module used before its helpers moved out


def _finite(x: Any) -> bool:
    return finite_or_none(x) is not None


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
        low_fidelity_share: at most this share of the budget goes to cheaper levels; the rest is kept for
            whole target runs (cost-aware mode, :class:`~autollm_sampler.budget.BudgetRule`).
        budget_rule: more options of the cost-aware rule (:class:`~autollm_sampler.budget.BudgetRule`):
            ``level_share`` (the most one cheaper level may spend, share of the budget; default 0.25),
            ``patience`` (finished runs without improvement that end a level; 4), ``min_runs`` (runs a level
            gets before it may stagnate; 8) and ``min_improvement`` (what counts as improving, as a share of
            the gap between the level's median and best runs; 0.01).

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
        budget_rule: Mapping[str, Any] | None = None,
    ) -> None:
        self._core = SamplerCore(
            fidelity, target, agent=agent, seed=check_seed(seed), fidelity_levels=fidelity_levels, budget=budget,
            low_fidelity_share=low_fidelity_share, budget_rule=budget_rule,
        )
        # resolved now, once: an explicit checkpoint that cannot load raises here (CheckpointError), and
        # "default" falls back (loudly, once) here rather than being retried trial after trial
        self._core.load_agent()
        self._fallback = fallback_sampler if fallback_sampler is not None else RandomSampler(seed=self._core.seed)
        self._spaces = SpaceReader(mixtures, roles)
        self._warned: set[str] = set()
        self._fidelity = FidelityBook(self._core, fidelity_attr, cost_attr, self._warned,
                                      group_of=self._spaces.component_of)
        self._lock = threading.RLock()
        self._fallbacks: Counter[str] = Counter()
        self._ledger = StudyLedger()  # finished trials never change: each study's are read once (not pickled)

    # ------------------------------------------------------------------ public properties
    @property
    def agent(self) -> Agent:
        """The agent in use (resolved at construction; ``"default"`` may have fallen back to classical)."""
        return self._core.agent

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
        return self._core.axes

    @property
    def target(self) -> dict[str, float]:
        return dict(self._core.target)

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["_lock"]
        state.pop("_trial_cache", None)  # the core, the fidelity book, the space reader and the ledger drop their own
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()
        self._core.load_agent()  # resolved again from its name or path
        self.__dict__.setdefault("_fallbacks", Counter())
        if not isinstance(self.__dict__.get("_ledger"), StudyLedger):
            self._ledger = StudyLedger()

    def _clear_caches(self) -> None:
        """Forget everything read from studies (the ledger, cached fidelities and spaces); proposals do not
        change, only the time they take (the tests compare the two)."""
        with self._lock:
            self._ledger.clear()
            self._fidelity.clear_cache()
            self._spaces.reset()

    # ------------------------------------------------------------------ BaseSampler API
    def reseed_rng(self) -> None:
        with self._lock:
            self._core.reseed()
        self._fallback.reseed_rng()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._check_single_objective(study)
        self._fallback.before_trial(study, trial)
        if self._core.schedule is not None:
            with self._lock:
                self._fidelity.assign(study, trial)

    def after_trial(
        self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._fallback.after_trial(study, trial, state, values)
        # both are written with the proposal (one storage write); here only when there was none, or they changed
        system = {_RUN_HERE: True} if self._core.axes and _RUN_HERE not in trial.system_attrs else {}
        user = {}
        fid = self._fidelity.of(trial)
        if fid is not None:
            is_target = self._core.is_target(fid)
            if trial.user_attrs.get(IS_TARGET_ATTR) is not is_target:
                user[IS_TARGET_ATTR] = is_target
        if user or system:
            write_attrs(study, trial, user=user, system=system)

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        self._check_single_objective(study)
        try:
            fid = self._fidelity.of(trial)
            with self._lock:
                return self._infer_space(study, fid if fid is not None else self._core.target, exclude=trial.number)
        except Exception as exc:  # strict: raise; else never fail a study: fall back to independent sampling
            if self.agent.strict:
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
            if self.agent.strict:
                raise
            self._note_failure("failed to propose", trial, exc)
            return {}

    def _note_failure(self, what: str, trial: FrozenTrial, exc: Exception) -> None:
        """Count a trial handed to independent sampling; log the first failure of each kind with its reason."""
        with self._lock:
            self._fallbacks["error"] += 1
            warn_once(
                self._warned,
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
                rng = np.random.default_rng(self._core.seed_for(trial.number, zlib.crc32(param_name.encode())))
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
    def budget_spent(self, study: Study) -> float:
        """Cost spent or committed (running trials) so far; cost-aware mode only."""
        self._require_schedule("budget_spent")
        return float(sum(self._fidelity.spent_by_level(study).values()))

    def budget_left(self, study: Study) -> float:
        """The budget minus :meth:`budget_spent`."""
        return self._require_schedule("budget_left").budget - self.budget_spent(study)

    def budget_exhausted(self, study: Study) -> bool:
        """Whether the cost-aware rule runs nothing more: what is left affords no target run (and no cheaper
        level may still run; see :class:`~autollm_sampler.budget.BudgetRule`)."""
        self._require_schedule("budget_exhausted")
        return self._fidelity.choose(study)[0].level is None

    def stop_when_budget_spent(self, study: Study, trial: FrozenTrial) -> None:
        """An ``optimize`` callback that stops the study once the cost-aware budget is spent (logged with why)."""
        if self._core.schedule is None:
            return
        choice = self._fidelity.choose(study)[0]
        if choice.level is None:
            logger.info("stopping the study after trial %d: %s", trial.number, choice.reason)
            study.stop()

    def _require_schedule(self, what: str) -> CostSchedule:
        return self._core.require_schedule(what, "construct the sampler with fidelity_levels=[...]")

    def recommend(self, study: Study) -> Proposal:
        """The configuration to run at the target: the best target trial, else the agent's top proposal.

        Returns a :class:`~autollm_sampler.agent.Proposal`, not a trial: ``params`` (the study's parameter
        names), ``predicted_value``, ``predicted_std``, ``rationale`` and ``source``. For a completed
        target trial ``source`` is ``"observed"``, ``predicted_value`` is its value (``predicted_std`` 0)
        and ``extras["trial_number"]`` its number (``study.trials[n]`` is the trial); otherwise it is the
        agent's proposal for the target, not yet run.
        """
        self._check_single_objective(study)
        target = self._core.target
        done = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if (f := self._fidelity.of(t)) is not None and self._core.is_target(f) and _finite(t.value)
        ]
        if done:
            sign = 1.0 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1.0
            best = min(done, key=lambda t: sign * float(t.value))  # type: ignore[arg-type]
            return Proposal(dict(best.params), float(best.value), 0.0, f"Best completed target trial #{best.number}.",  # type: ignore[arg-type]
                            "observed", {"trial_number": best.number})
        with self._lock:
            search_space = self._infer_space(study, target, exclude=None)
            if not search_space:
                raise AutoLLMSamplerError("no trial has parameters yet, so there is nothing to recommend; run some trials first")
            space, slots = self._build_space(search_space, study)
            history, pending = self._collect(study, None, space, slots, target)
            prop = self.agent.propose(history, space, target, n=1, seed=self._core.seed_for(RECOMMEND_KEY), pending=pending)[0]
        params = to_optuna(prop.params, search_space, space, slots)
        return Proposal(params, prop.predicted_value, prop.predicted_std, prop.rationale, prop.source)

    # ------------------------------------------------------------------ explain
    def explain(self, study: Study, *, file: TextIO | None = None) -> Explanation:
        """Describe the evidence and every proposal the sampler made in ``study``, readably.

        Returns the text and prints nothing, like ``AskTell.explain`` and ``AutoLLMSearcher.explain``: an
        :class:`~autollm_sampler.integrations.Explanation`, a ``str`` that a notebook shows as the
        text itself; in a script, ``print(sampler.explain(study))``. ``file=`` also writes it there.
        Sentences a rationale shares with an earlier trial's are shown once.
        """
        self._check_single_objective(study)
        target = self._core.target
        with self._lock:
            search_space = self._infer_space(study, target, exclude=None)
            space, slots = self._build_space(search_space, study)
            history, _ = self._collect(study, None, space, slots, target)
        lines = [f"AutoLLMSampler (agent: {self.agent.name}) for target {fmt_fidelity(target)}"]
        lines += describe_history(history, space, target)
        if self._core.schedule is not None:
            spent = float(sum(self._fidelity.spent_by_level(study).values()))
            lines.append(f"Cost-aware budget: {spent:.4g} of {self._core.schedule.budget:.4g} spent.")
        proposed = [t for t in study.get_trials(deepcopy=False) if _WHY in t.user_attrs]
        if not proposed:
            lines.append("The sampler has not proposed any trial in this study yet.")
        whys = rationale_lines([(f"trial {t.number}", str(t.user_attrs.get(_WHY))) for t in proposed], indent="  ")
        for t in proposed:
            fid = self._fidelity.of(t)
            where = fmt_fidelity(fid) if fid else "target"
            value = fmt_value(t.value) if t.state == TrialState.COMPLETE else t.state.name.lower()
            lines.append(f"Trial {t.number} [{where}]: {fmt_params(t.params)} -> {value}")
            lines.append(f"  {fmt_prediction(t.user_attrs.get(_PRED), t.user_attrs.get(_STD), t.user_attrs.get(_SRC, '?'))}")
            lines.append(whys[f"trial {t.number}"])
            if _SCHEDULE in t.user_attrs:
                lines.append(f"  {t.user_attrs[_SCHEDULE]}")
        text = Explanation("\n".join(lines) + "\n")
        if file is not None:
            file.write(text)
        return text

    # ------------------------------------------------------------------ the space as the agent reads it
    def parameter_roles(self, study: Study) -> dict[str, str]:
        """The role the agent gives each parameter it proposes (a mixture group under its own name)."""
        self._check_single_objective(study)
        with self._lock:
            search_space = self._infer_space(study, self._core.target, exclude=None)
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
        target = self._core.target
        with self._lock:
            search_space = self._infer_space(study, target, exclude=None)
            space, slots = self._build_space(search_space, study)
        return self._spaces.describe(
            space, slots, study.get_trials(deepcopy=False, states=_FINISHED),
            fmt_fidelity(target) if target else "all trials", type(self._fallback).__name__,
        )

    def is_target_trial(self, trial: FrozenTrial) -> bool:
        """Whether ``trial`` ran at the target fidelity, as the sampler reads it (near-target runs included)."""
        return self._fidelity.is_target(trial)

    # ------------------------------------------------------------------ internals
    def _check_single_objective(self, study: Study) -> None:
        if len(study.directions) > 1:
            raise ValueError(
                f"AutoLLMSampler supports single-objective studies only, but this study has {len(study.directions)} "
                "objectives. Optimise one objective (for example a weighted sum), or use a multi-objective sampler "
                "such as optuna.samplers.NSGAIISampler."
            )

    def _infer_space(self, study: Study, fid: Mapping[str, float], exclude: int | None) -> dict[str, BaseDistribution]:
        return self._spaces.infer(study, fid, exclude, self._fidelity, self._ledger)

    def _build_space(self, search_space: Mapping[str, BaseDistribution], study: Study) -> tuple[SearchSpace, dict[str, _Slot]]:
        return self._spaces.build(search_space, study.direction)

    def _collect(
        self,
        study: Study,
        trial: FrozenTrial | None,
        space: SearchSpace,
        slots: Mapping[str, _Slot],
        fid_now: Mapping[str, float],
        known: dict[int, dict[str, Any]] | None = None,
    ) -> tuple[History, list[dict[str, Any]]]:
        return collect(study, trial, space, slots, fid_now, self._fidelity, self._ledger, known)

    def _sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        space, slots = self._build_space(search_space, study)
        if not space.params:
            return {}
        fid = self._fidelity.of(trial)
        fid_now = fid if fid is not None else dict(self._core.target)
        read_at = time.time()
        known: dict[int, dict[str, Any]] = {}
        history, pending = self._collect(study, trial, space, slots, fid_now, known)
        shared = shared_storage(study)
        # values fixed by a partial enqueue_trial replace the proposal's: ask for a few proposals and keep the
        # first that, with the fixed values put in, is not a configuration already run or running here
        raw_fixed = trial.system_attrs.get("fixed_params")
        fixed = {k: v for k, v in raw_fixed.items() if k in search_space} if isinstance(raw_fixed, Mapping) else {}

        def to_study(config: Mapping[str, Any]) -> dict[str, Any]:
            return to_optuna(config, search_space, space, slots)

        # marks trials run under this sampler (others without fidelity are worth a warning); after_trial writes
        # it for trials that never get here
        run_here = {_RUN_HERE: True} if self._core.axes else {}
        for attempt in range(_CLAIM_ATTEMPTS):
            seed = self._core.seed_for(trial.number, attempt)
            props = self.agent.propose(history, space, fid_now, n=_FIXED_ASK if fixed else 1, seed=seed, pending=pending)
            proposal, params = _pick(props, fixed, list(search_space), to_study, study, trial, fid_now, self._fidelity)
            self._note_unmapped(proposal.params, params, slots)
            proposed_at = claim(study, trial, params, read_at, attempt, user=self._proposal_attrs(proposal, fid),
                                system=run_here)
            if not shared or not params:
                break  # one process: the lock already serialises proposals
            # verify: did another process claim the same configuration first, unseen at read time?
            clash = _claimed_elsewhere(study, trial, params, proposed_at, fid_now, known, self._fidelity)
            if clash is None:
                break
            if attempt == _CLAIM_ATTEMPTS - 1:
                self._fallbacks["claim"] += 1
                warn_once(
                    self._warned,
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
        logger.debug("trial %d: proposed %s (%s)", trial.number, params, proposal.source)
        return params

    def _proposal_attrs(self, proposal: Proposal, fid: Mapping[str, float] | None) -> dict[str, Any]:
        """The user attributes that go with a proposal (written with its claim, in one storage write), with
        the trial's :data:`IS_TARGET_ATTR` when its fidelity is known already (``after_trial`` then writes it
        only if it changed)."""
        user: dict[str, Any] = {
            _PRED: finite_or_none(proposal.predicted_value),
            _STD: finite_or_none(proposal.predicted_std),
            _WHY: str(proposal.rationale),
            _SRC: str(proposal.source),
        }
        if fid is not None:
            user[IS_TARGET_ATTR] = self._core.is_target(fid)
        return user

    def _note_unmapped(self, config: Mapping[str, Any], params: Mapping[str, Any], slots: Mapping[str, _Slot]) -> None:
        """Count (and log once per parameter) proposed values that :func:`to_optuna` could not write."""
        for name, slot in slots.items():
            for oname in slot.optuna_names:
                if oname in params:
                    continue
                self._fallbacks["unmapped"] += 1
                warn_once(
                    self._warned,
                    f"unmapped:{oname}",
                    "the agent's value for %r (%s) is not a valid value of its distribution; that parameter is "
                    "sampled independently, the rest of the proposal is kept (warned once per parameter, counted "
                    "in sampler.fallback_counts['unmapped'])",
                    oname, repr(config.get(name))[:80],
                )


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
    storage: str = "memory",
) -> list[dict[str, Any]]:
    """Per-trial sampler overhead of :class:`AutoLLMSampler` and ``TPESampler`` side by side.

    For each history size, both samplers get the same study content: ``n`` completed trials on a
    three-parameter space (log float, int, categorical), half of them at a cheaper fidelity. Then
    ``n_measured`` ask/tell rounds are timed with a constant objective, after one untimed warm-up round,
    so the time is the sampler's (plus the storage's, the same for both). ``storage="sqlite"`` puts each
    study in a fresh SQLite file in a temporary folder (every write there is a transaction that waits for
    the disk), instead of in memory.

    Returns:
        one row per size: ``n_completed``, ``autollm_ms``, ``tpe_ms`` (mean per trial), ``ratio``,
        ``propose_ms`` (of ``autollm_ms``, the time inside the agent's ``propose``; the rest is the sampler
        reading the study and writing the proposal, plus Optuna's own ask/tell) and ``agent`` (the name of
        the agent actually used, after any fallback).
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
        in_propose = [0.0]
        propose_ms = float("nan")
        agent_obj = samplers["autollm"].agent  # type: ignore[attr-defined]
        propose = agent_obj.propose

        def timed_propose(*args: Any, propose: Any = propose, in_propose: list[float] = in_propose, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return propose(*args, **kwargs)
            finally:
                in_propose[0] += time.perf_counter() - t

        agent_obj.propose = timed_propose  # this benchmark's own sampler only: an instance attribute
        try:
            for label, sampler in samplers.items():
                url = None
                if storage == "sqlite":
                    import tempfile

                    folder = tempfile.mkdtemp(prefix="autollm-overhead-")
                    url = f"sqlite:///{folder}/{label}-{n}.db"
                elif storage != "memory":
                    raise ValueError(f"storage={storage!r}: use 'memory' or 'sqlite'")
                study = optuna.create_study(sampler=sampler, storage=url)
                study.add_trials(history)

                _round_trip(study)  # warm-up (lazy imports, model load), not timed
                in_propose[0] = 0.0
                t0 = time.perf_counter()
                for _ in range(n_measured):
                    _round_trip(study)
                times[label] = (time.perf_counter() - t0) / n_measured * 1e3
                if label == "autollm":
                    propose_ms = in_propose[0] / n_measured * 1e3
        finally:
            del agent_obj.propose
        used = samplers["autollm"].agent.name  # type: ignore[attr-defined]
        rows.append(
            {"n_completed": n, "autollm_ms": times["autollm"], "tpe_ms": times["tpe"], "ratio": times["autollm"] / times["tpe"],
             "propose_ms": propose_ms, "agent": used}
        )
        if progress is not None:
            progress(f"n={n}: AutoLLMSampler {times['autollm']:.2f} ms/trial (agent.propose {propose_ms:.2f}), "
                     f"TPESampler {times['tpe']:.2f} ms/trial")
    return rows
