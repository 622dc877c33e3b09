"""``AskTell``: the research agent behind a plain ask/tell loop, for in-house sweep scripts.

It needs neither Optuna nor Ray. :meth:`AskTell.ask` returns a :class:`Suggestion` with an ``id``; run it
however you like and report back with :meth:`AskTell.tell`. Asked-but-untold suggestions are *pending*:
they are never suggested again. Earlier runs come in with :meth:`AskTell.add` (or ``history=``), at any
fidelity. The whole state is one JSONL history file (:meth:`AskTell.save` / :meth:`AskTell.load`), the same
format the ``autollm-sampler suggest`` CLI reads; pending suggestions are stored with state ``running``.

Example:
    >>> from autollm_sampler.integrations.asktell import AskTell
    >>> at = AskTell({"params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}},
    ...              target={"n_params": 1e9}, agent="classical", seed=0)
    >>> _ = at.add({"lr": 3e-3}, 2.9, fidelity={"n_params": 1e8})
    >>> s = at.ask()
    >>> s.params, s.fidelity
    ({'lr': 0.003}, {'n_params': 1000000000.0})
    >>> _ = at.tell(s.id, 2.4)
    >>> at.best().value
    2.4
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autollm_sampler.agent import Agent, Proposal
from autollm_sampler.exceptions import InvalidHistoryError, InvalidTrialError
from autollm_sampler.history import History, Trial, TrialState, fidelity_key
from autollm_sampler.integrations._common import (
    EXPLAIN_KEY,
    RECOMMEND_KEY,
    AgentSpec,
    SamplerCore,
    check_target,
    finite_or_none,
    history_items,
    same_fidelity,
)
from autollm_sampler.integrations._explain import Explanation, describe_history, describe_proposals
from autollm_sampler.space import SearchSpace

__all__ = ["AskTell", "Suggestion"]

logger = logging.getLogger(__name__)


@dataclass
class Suggestion:
    """One suggested run: what to run (``params`` at ``fidelity``) and why.

    Attributes:
        id: pass it back to :meth:`AskTell.tell`.
        params: the configuration.
        fidelity: where to run it (the target unless the cost-aware mode chose a cheaper level).
        predicted_value: the agent's predicted outcome, ``None`` when it has no basis for one.
        predicted_std: the uncertainty of that prediction.
        rationale: the agent's reason, in words.
        source: ``"model"`` or ``"fallback"``.
        cost: the run's cost in the cost-aware mode, else ``None``.
    """

    id: int | str
    params: dict[str, Any]
    fidelity: dict[str, float] = field(default_factory=dict)
    predicted_value: float | None = None
    predicted_std: float | None = None
    rationale: str = ""
    source: str = "model"
    cost: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "params": self.params,
            "fidelity": self.fidelity,
            "predicted_value": self.predicted_value,
            "predicted_std": self.predicted_std,
            "rationale": self.rationale,
            "source": self.source,
            "cost": self.cost,
        }


class AskTell:
    """Ask for configurations, tell their outcomes; the agent proposes from the whole multi-fidelity history.

    Args:
        space: the target's search space: a :class:`SearchSpace`, its dict form, or a YAML / JSON file as
            read by the CLI.
        target: the expensive fidelity point; its keys are the fidelity axes. Omit for single-fidelity use.
        history: earlier runs (a :class:`History`, a path to a JSONL / CSV / JSON history, or trial dicts).
        agent: an :class:`~autollm_sampler.agent.Agent`, ``"default"`` (falls back to ``"classical"`` with a
            warning when the shipped model cannot be loaded), ``"classical"`` or a checkpoint path.
        seed: makes the suggestions reproducible.
        fidelity_levels: enables the cost-aware mode (``[{axis: value, ..., "cost": c}, ...]``, target included):
            :meth:`ask` then also picks the fidelity within ``budget``.
        budget: the cost-aware budget; default five target runs.
        low_fidelity_share: at most this share of the budget goes to cheaper levels; the rest is kept for
            whole target runs (cost-aware mode, :class:`~autollm_sampler.budget.BudgetRule`).
        budget_rule: more options of the cost-aware rule (:class:`~autollm_sampler.budget.BudgetRule`):
            ``level_share`` (the most one cheaper level may spend, share of the budget; default 0.25),
            ``patience`` (finished runs without improvement that end a level; 4), ``min_runs`` (runs a level
            gets before it may stagnate; 8) and ``min_improvement`` (what counts as improving, as a share of
            the gap between the level's median and best runs; 0.01).
    """

    def __init__(
        self,
        space: SearchSpace | Mapping[str, Any] | str | os.PathLike[str],
        *,
        target: Mapping[str, float] | None = None,
        history: History | str | os.PathLike[str] | Sequence[Mapping[str, Any]] | None = None,
        agent: AgentSpec = "default",
        seed: int | None = None,
        fidelity_levels: Sequence[Mapping[str, Any]] | None = None,
        budget: float | None = None,
        low_fidelity_share: float = 0.4,
        budget_rule: Mapping[str, Any] | None = None,
    ) -> None:
        if isinstance(space, (str, os.PathLike)):
            from autollm_sampler.integrations.cli import load_space

            space = load_space(space)
        self.space = space if isinstance(space, SearchSpace) else SearchSpace.from_dict(space)
        axes = tuple(target) if target else ()
        if axes:
            check_target(axes, target)  # a bad target is reported before the other arguments, as it always was
        self._core = SamplerCore(
            axes, target if axes else None, agent=agent, seed=seed, fidelity_levels=fidelity_levels, budget=budget,
            low_fidelity_share=low_fidelity_share, levels_need="fidelity_levels= needs target= (whose keys name the fidelity axes)",
            budget_rule=budget_rule,
        )
        self._axes = axes
        self._history = History(fidelity_axes=axes)
        if history is not None:
            self.add_history(history)

    # ------------------------------------------------------------------ properties
    @property
    def agent(self) -> Agent:
        return self._core.agent

    @property
    def target(self) -> dict[str, float]:
        """The target fidelity, one value per axis (``{}`` without a target)."""
        return self._core.target

    @property
    def history(self) -> History:
        """Every trial so far: added, told and pending (``state="running"``)."""
        return self._history

    @property
    def pending(self) -> list[Trial]:
        """Asked but not yet told."""
        return [t for t in self._history.trials if t.state == "running"]

    # ------------------------------------------------------------------ history
    def add(
        self,
        params: Mapping[str, Any],
        value: float | None = None,
        *,
        fidelity: Mapping[str, float] | None = None,
        state: TrialState = "complete",
        cost: float | None = None,
        id: int | str | None = None,
    ) -> Trial:
        """Record a run done elsewhere (any fidelity; none means the target).

        Raises:
            InvalidTrialError: when a target-fidelity run does not fit the space, or the record is malformed.
        """
        fid = self._full_fidelity(fidelity)
        rec = {"id": self._history.next_id() if id is None else id, "params": dict(params), "fidelity": fid,
               "value": value, "state": state, "cost": cost}
        t = Trial.parse(rec, where="trial")
        return self._history.add(self._checked(t))

    def add_history(self, history: History | str | os.PathLike[str] | Sequence[Mapping[str, Any]]) -> None:
        """Add many earlier runs: a :class:`History`, a history file path, or trial dicts.

        A dict without ``id`` gets its index, as a JSONL line does (a clash with a trial already here gets
        the next free id).
        """
        trials = [h if isinstance(h, Trial) else Trial.parse({"id": i, **h}, where=f"history[{i}]")
                  for i, h in enumerate(history_items(history))]
        for t in trials:
            t = t.model_copy(update={"fidelity": self._full_fidelity(t.fidelity)})
            if any(str(o.id) == str(t.id) for o in self._history.trials):
                t = t.model_copy(update={"id": self._history.next_id()})
            self._history.add(self._checked(t))

    def _full_fidelity(self, fidelity: Mapping[str, float] | None) -> dict[str, float]:
        if not self._axes:
            if fidelity:
                raise InvalidTrialError(f"fidelity {dict(fidelity)!r} given, but AskTell has no target; pass target= with the axes")
            return {}
        out = dict(self.target)
        for k, v in (fidelity or {}).items():
            if k not in out:
                raise InvalidTrialError(f"fidelity axis {k!r} is not one of the target's axes {list(self._axes)!r}")
            fv = finite_or_none(v)
            if fv is None:
                raise InvalidTrialError(f"fidelity {k!r} is {v!r}; give a finite number")
            out[k] = fv
        return out

    def _checked(self, t: Trial) -> Trial:
        if same_fidelity(t.fidelity, self.target) or not self._axes:
            try:
                norm = self.space.validate_params(t.params)
            except InvalidTrialError as exc:
                raise InvalidTrialError(f"trial {t.id!r} (at the target): {exc}") from None
            return t.model_copy(update={"params": norm})
        unknown = sorted(set(t.params) - set(self.space.params))
        if unknown:
            raise InvalidTrialError(f"trial {t.id!r}: unknown parameter(s) {unknown!r}; the space has {sorted(self.space.params)!r}")
        return t

    # ------------------------------------------------------------------ ask / tell
    def ask(self, *, fidelity: Mapping[str, float] | None = None) -> Suggestion:
        """Suggest the next run (at ``fidelity``, else the target or the cost-aware choice).

        Raises:
            InvalidHistoryError: in the cost-aware mode when the budget is spent (see :meth:`budget_left`).
        """
        return self.ask_batch(1, fidelity=fidelity)[0]

    def ask_batch(self, n: int, *, fidelity: Mapping[str, float] | None = None) -> list[Suggestion]:
        """Suggest ``n`` distinct runs at once (to run in parallel); all become pending."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n!r}")
        out: list[Suggestion] = []
        for _ in range(n):
            fid, cost, note = self._choose_fidelity(fidelity)
            tkey = fidelity_key(fid)
            pending = [t.params for t in self.pending if fidelity_key(t.fidelity) == tkey]
            done = History(fidelity_axes=self._history.fidelity_axes, trials=[t for t in self._history.trials if t.state != "running"])
            tid = self._history.next_id()
            prop = self.agent.propose(done, self.space, fid, n=1, seed=self._core.seed_for(int(tid) if isinstance(tid, int) else len(self._history)), pending=pending)[0]
            why = prop.rationale + (f" {note}" if note else "")
            s = Suggestion(tid, dict(prop.params), fid, finite_or_none(prop.predicted_value), finite_or_none(prop.predicted_std), why, prop.source, cost)
            attrs = {"predicted_value": s.predicted_value, "predicted_std": s.predicted_std, "rationale": why, "source": s.source}
            self._history.add(Trial(id=tid, params=s.params, fidelity=fid, state="running", cost=cost, attrs=attrs))
            out.append(s)
        return out

    def tell(self, id: int | str | Suggestion, value: float | None = None, *, state: TrialState = "complete",
             cost: float | None = None) -> Trial:
        """Report the outcome of a suggestion: its ``id``, or the :class:`Suggestion` :meth:`ask` returned.

        A ``complete`` state with a NaN or infinite value is recorded as ``failed`` (with a warning).

        Raises:
            InvalidTrialError: if ``id`` is not a pending suggestion, or a complete state has no value.
        """
        if isinstance(id, Suggestion):  # as Optuna's study.tell takes the trial itself
            id = id.id
        idx = next((i for i, t in enumerate(self._history.trials) if str(t.id) == str(id)), None)
        if idx is None:
            raise InvalidTrialError(f"no suggestion with id {id!r}; ids come from ask()")
        old = self._history.trials[idx]
        if old.state != "running":
            raise InvalidTrialError(f"trial {id!r} was already told (state {old.state!r}); each suggestion is told once")
        if state not in ("complete", "failed", "pruned"):
            raise InvalidTrialError(f"state={state!r}: use 'complete', 'failed' or 'pruned'")
        v = finite_or_none(value) if value is not None else None
        if state == "complete" and value is not None and v is None:
            logger.warning("trial %r: value %r is not finite; recorded as failed", id, value)
            state = "failed"
        if state == "complete" and v is None:
            raise InvalidTrialError(f"trial {id!r}: state 'complete' needs a numeric value; use state='failed' otherwise")
        new = Trial.parse({**old.model_dump(), "value": v, "state": state, "cost": cost if cost is not None else old.cost}, where=f"trial {id!r}")
        self._history.trials[idx] = new
        return new

    # ------------------------------------------------------------------ results
    def best(self) -> Trial | None:
        """The best completed target trial, or ``None``."""
        return self._history.best(self.space.direction, fidelity=self.target if self._axes else None)

    def recommend(self) -> Suggestion:
        """The configuration to run at the target: the best target trial, else the agent's top proposal.

        Returns a :class:`Suggestion`: for a completed target trial its ``id``, ``params`` and value (as
        ``predicted_value``, ``source="observed"``); otherwise ``id="recommendation"`` and the agent's
        proposal for the target (not recorded as pending: :meth:`ask` for a run to tell).
        """
        b = self.best()
        if b is not None:
            return Suggestion(b.id, dict(b.params), dict(b.fidelity), b.value, 0.0, f"Best completed target trial {b.id!r}.", "observed")
        prop = self.agent.propose(self._history, self.space, self.target, n=1, seed=self._core.seed_for(RECOMMEND_KEY))[0]
        return Suggestion("recommendation", dict(prop.params), dict(self.target), finite_or_none(prop.predicted_value),
                          finite_or_none(prop.predicted_std), prop.rationale, prop.source)

    def explain(self, n: int = 1) -> Explanation:
        """The evidence and the next ``n`` proposals for the target, in words (nothing is recorded).

        Returns the text and prints nothing (an :class:`~autollm_sampler.integrations.Explanation`,
        a ``str`` that a notebook shows as the text itself; in a script, ``print`` it).
        """
        lines = describe_history(self._history, self.space, self.target)
        props: list[Proposal] = self.agent.propose(
            self._history, self.space, self.target, n=n, seed=self._core.seed_for(EXPLAIN_KEY),
            pending=[t.params for t in self.pending],
        )
        return Explanation("\n".join(lines + describe_proposals(props, self.target)))

    # ------------------------------------------------------------------ cost-aware mode
    def _spent(self) -> dict[int | None, float]:
        return self._core.spent_by_level((t.fidelity, t.cost) for t in self._history.trials)

    def budget_left(self) -> float:
        """The cost-aware budget not yet spent or committed (pending runs count)."""
        return self._core.require_schedule("budget_left").remaining(self._spent())

    def _choose_fidelity(self, fidelity: Mapping[str, float] | None) -> tuple[dict[str, float], float | None, str]:
        schedule = self._core.schedule
        if fidelity is not None or schedule is None:
            fid = self._full_fidelity(fidelity)
            return fid, self._core.level_cost(fid), ""
        runs = ((t.fidelity, t.cost, t.state != "running", t.value if t.state == "complete" else None)
                for t in self._history.trials)
        choice, spent = self._core.choose_level(runs, self.space.direction, dims=len(self.space.params))
        level = choice.level
        if level is None:
            raise InvalidHistoryError(
                f"the cost-aware budget {schedule.budget:.4g} is spent ({choice.reason}); call recommend() for "
                "the answer, or pass fidelity= to ask() to run outside the budget"
            )
        chosen = schedule.levels[level]
        return dict(chosen.fidelity), chosen.cost, schedule.describe(level, spent, choice.reason)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the history (pending suggestions as ``running``) to a JSONL file."""
        Path(path).write_text(self._history.to_jsonl(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | os.PathLike[str], space: SearchSpace | Mapping[str, Any] | str | os.PathLike[str], **kwargs: Any) -> AskTell:
        """Rebuild an :class:`AskTell` from :meth:`save`'s file (other arguments as in the constructor)."""
        at = cls(space, **kwargs)
        hist = History.load(path)
        for t in hist.trials:
            t = t.model_copy(update={"fidelity": at._full_fidelity(t.fidelity)})
            at._history.add(t if t.state == "running" else at._checked(t))
        return at
