"""``AutoLLMSearcher``: the research agent as a Ray Tune search algorithm.

Tune's ``param_space`` is converted in :meth:`AutoLLMSearcher.set_search_properties`: ``uniform`` /
``loguniform`` / ``quniform`` / ``qloguniform`` become floats, ``randint`` / ``lograndint`` / ``qrandint`` /
``qlograndint`` integers (Tune's exclusive upper bounds respected), ``choice`` a categorical. Nested
dicts are flattened to ``"outer/inner"`` names and rebuilt in every suggested config. Constants stay
constants. ``grid_search``, ``sample_from`` and ``randn`` are refused with a clear error; pass an explicit
:class:`~autollm_sampler.space.SearchSpace` as ``space=`` instead (which is also how mixture weights, a
``simplex`` parameter, reach Tune: its value in the config is a ``{component: weight}`` dict).

Every suggested config also carries the trial's fidelity, one key per axis (``config["n_tokens"]``): the
target, or in the cost-aware mode (``fidelity_levels=``) the level the searcher chose within ``budget``.
Earlier cheap runs come in as ``history=`` or through :meth:`AutoLLMSearcher.add_evaluated_point` with the
fidelity keys among the parameters.

Trials that error out, or end without the metric, are recorded as failed; trials stopped early by a
scheduler such as ASHA as pruned with their last metric (a trial that ran fewer iterations than the
longest trial at its fidelity, failed ones included, was stopped early). Running
and paused trials are pending: their configurations are not proposed again.

:meth:`AutoLLMSearcher.save` writes the state as JSON and :meth:`AutoLLMSearcher.restore` only parses JSON:
a state file is never unpickled (a pickle from an older release is refused with a clear error).

Example:
    >>> from ray import tune
    >>> searcher = AutoLLMSearcher(metric="loss", mode="min", fidelity=("n_tokens",),
    ...                            target={"n_tokens": 2e10}, agent="classical", seed=0)
    >>> searcher.set_search_properties(None, None, {"lr": tune.loguniform(1e-4, 1e-1)})
    True
    >>> cfg = searcher.suggest("trial_0")
    >>> sorted(cfg), cfg["n_tokens"]
    (['lr', 'n_tokens'], 20000000000.0)
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ray.tune.search import Searcher
from ray.tune.search.sample import Categorical, Domain, Float, Integer, LogUniform, Quantized, Uniform
from ray.tune.search.variant_generator import parse_spec_vars

from autollm_sampler.agent import Agent, Proposal
from autollm_sampler.exceptions import CheckpointError, InvalidSpaceError
from autollm_sampler.history import History, Trial
from autollm_sampler.integrations._common import (
    EXPLAIN_KEY,
    RECOMMEND_KEY,
    AgentSpec,
    CostSchedule,
    SamplerCore,
    finite_or_none,
    history_items,
    parse_levels,
    same_fidelity,
    short_repr,
)
from autollm_sampler.integrations._explain import Explanation, describe_history, describe_proposals
from autollm_sampler.space import CategoricalParam, FloatParam, IntParam, SearchSpace

__all__ = ["AutoLLMSearcher", "convert_tune_space"]

logger = logging.getLogger(__name__)

_STATE_VERSION = 2  # 2: JSON state files (1 was a pickle)
_STATE_FORMAT = "autollm-sampler/ray-searcher-state"
_STATE_KEYS = ("metric", "mode", "axes", "target", "space", "quantize", "constants", "history", "live", "paused",
               "n_suggested", "seed_base", "schedule", "agent", "roles")


def _short(x: Any, n: int = 80) -> str:
    """A bounded ``repr`` for error messages."""
    r = x if isinstance(x, str) else repr(x)
    return r if len(r) <= n else r[: n - 3] + "..."


def _is_json(v: Any) -> bool:
    try:
        json.dumps(v, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _check_type(v: Any, kind: type, name: str) -> Any:
    if not isinstance(v, kind):
        raise TypeError(f"{name} must be a JSON {'object' if kind is dict else 'array'}, got {type(v).__name__}")
    return v


def _opt_float(v: Any, name: str) -> float | None:
    if v is None:
        return None
    f = finite_or_none(v)
    if f is None or isinstance(v, bool):
        raise ValueError(f"{name} must be a finite number or null")
    return f


def _check_live(rec: Any) -> dict[str, Any]:
    rec = _check_type(rec, dict, "a running trial")
    params = _check_type(rec.get("params"), dict, "a running trial's params")
    fid = {str(k): float(v) for k, v in _check_type(rec.get("fidelity"), dict, "a running trial's fidelity").items()}
    return {"params": dict(params), "fidelity": fid, "cost": _opt_float(rec.get("cost"), "cost"),
            "last": _opt_float(rec.get("last"), "last"), "note": str(rec.get("note") or "")}


def _schedule_to_dict(schedule: CostSchedule) -> dict[str, Any]:
    return {"levels": [lv.to_dict() for lv in schedule.levels], "target": dict(schedule.target.fidelity),
            "budget": schedule.budget, **schedule.rule_options()}


def _schedule_from_dict(data: Any, axes: Sequence[str]) -> CostSchedule:
    data = _check_type(data, dict, "schedule")
    levels = [
        {**_check_type(lv, dict, "a level")["fidelity"], "cost": lv["cost"], "name": lv["name"]}
        for lv in _check_type(data["levels"], list, "levels")
    ]
    # states saved before the stagnation rule carry low_fidelity_share only; the rest keeps its defaults
    options = {k: data[k] for k in ("level_share", "patience", "min_runs", "min_improvement") if k in data}
    return CostSchedule(parse_levels(levels, axes), target=_check_type(data["target"], dict, "target"),
                        budget=data["budget"], low_fidelity_share=float(data["low_fidelity_share"]), **options)


def _path_name(path: Sequence[Any]) -> str:
    return "/".join(str(p) for p in path)


def convert_tune_space(
    config: Mapping[str, Any], *, direction: str = "minimize", roles: Mapping[str, str] | None = None
) -> tuple[SearchSpace, dict[str, float], dict[str, Any]]:
    """Convert a Tune ``param_space`` into a :class:`SearchSpace`.

    Returns:
        ``(space, quantize, constants)``: the space (nested keys joined with ``/``), the quantum of every
        log-scaled quantized parameter (rounded after proposing), and the constant entries by name.

    Raises:
        InvalidSpaceError: naming the parameter whose Tune domain cannot be converted, and the fix.
    """
    roles = roles or {}
    resolved, domains, grids = parse_spec_vars(dict(config))
    if grids:
        names = [_path_name(p) for p, _ in grids]
        raise InvalidSpaceError(
            f"tune.grid_search is not supported by AutoLLMSearcher (parameters {names}); use tune.choice, "
            "or run the grid with Tune's BasicVariantGenerator"
        )
    params: dict[str, Any] = {}
    quantize: dict[str, float] = {}
    for path, domain in domains:
        name = _path_name(path)
        param, q = _convert_domain(name, domain, roles.get(name))
        params[name] = param
        if q is not None:
            quantize[name] = q
    constants = {_path_name(p): v for p, v in resolved}
    try:
        space = SearchSpace(params=params, direction=direction)  # type: ignore[arg-type]
    except ValueError as exc:
        raise InvalidSpaceError(f"invalid Tune search space: {exc}") from None
    return space, quantize, constants


def _convert_domain(name: str, domain: Domain, role: str | None) -> tuple[Any, float | None]:
    sampler = domain.get_sampler()
    q: float | None = None
    if isinstance(sampler, Quantized):
        q = float(sampler.q)
        sampler = sampler.get_sampler()
    log = isinstance(sampler, LogUniform)
    if not isinstance(sampler, (Uniform, LogUniform)) and not isinstance(domain, Categorical):
        raise InvalidSpaceError(
            f"parameter {name!r}: Tune sampler {type(sampler).__name__} is not supported; use uniform, "
            "loguniform, randint, lograndint, their q-variants, or choice"
        )
    try:
        if isinstance(domain, Categorical):
            return CategoricalParam(choices=tuple(domain.categories), role=role), None
        if isinstance(domain, Integer):
            upper = int(domain.upper) - (1 if q is None or q == 1 else 0)
            step = int(q) if (q is not None and not log) else 1
            return IntParam(low=int(domain.lower), high=upper, log=log, step=step, role=role), (q if log and q not in (None, 1) else None)
        if isinstance(domain, Float):
            if log:
                return FloatParam(low=float(domain.lower), high=float(domain.upper), log=True, role=role), q
            return FloatParam(low=float(domain.lower), high=float(domain.upper), step=q, role=role), None
    except ValueError as exc:
        raise InvalidSpaceError(f"parameter {name!r}: {exc}") from None
    raise InvalidSpaceError(
        f"parameter {name!r}: Tune domain {type(domain).__name__} (e.g. sample_from) is not supported; use "
        "uniform, loguniform, randint, choice, or pass space=SearchSpace(...)"
    )


def _has_tune_domain(obj: Any) -> bool:
    if isinstance(obj, Domain):
        return True
    if isinstance(obj, Mapping):
        return any(_has_tune_domain(v) for v in obj.values())
    return False


def _user_space(
    space: SearchSpace | Mapping[str, Any], roles: Mapping[str, str]
) -> tuple[SearchSpace, dict[str, float], dict[str, Any]]:
    """``space=`` as given: a :class:`SearchSpace`, its dict form, or a Tune ``param_space`` dict.

    A dict holding Tune sampling domains (``tune.loguniform(...)``, ...) is converted like Tune's
    ``param_space`` (:func:`convert_tune_space`); ``{"params": {...}, "direction": ...}`` with domains among
    the params is read the same way.
    """
    if isinstance(space, SearchSpace):
        return space, {}, {}
    if not isinstance(space, Mapping):
        raise TypeError(
            f"space= must be a SearchSpace, its dict form or a Tune param_space dict, got {type(space).__name__}"
        )
    if not _has_tune_domain(space):
        if "params" in space:
            return SearchSpace.from_dict(space), {}, {}
        # not the SearchSpace form: a Tune param_space without sampling domains (grid_search, constants only)
        defs = [str(k) for k, v in space.items() if isinstance(v, Mapping) and "type" in v]
        if defs:
            raise InvalidSpaceError(
                f"space= gives parameter definitions {short_repr(defs, 120)} at the top level; the SearchSpace form "
                "puts them under 'params': space={'params': {...}, 'direction': 'minimize'}"
            )
        converted = convert_tune_space(space, roles=roles)  # refuses grid_search with its own message
        if not converted[0].params:
            raise InvalidSpaceError(
                f"space= has no parameter to search (got {short_repr(dict(space), 200)}): give Tune domains "
                "({'lr': tune.loguniform(1e-4, 1e-2)}) or the SearchSpace form {'params': {'lr': {'type': 'float', ...}}}"
            )
        return converted
    direction = space.get("direction", "minimize")
    inner = space.get("params")
    if isinstance(inner, Mapping) and set(space) <= {"params", "direction"} and isinstance(direction, str):
        params: dict[str, Any] = {}
        quantize: dict[str, float] = {}
        for name, p in inner.items():
            if isinstance(p, Domain):
                params[str(name)], q = _convert_domain(str(name), p, roles.get(str(name)))
                if q is not None:
                    quantize[str(name)] = q
            else:
                params[str(name)] = p
        return SearchSpace.from_dict({"params": params, "direction": direction}), quantize, {}
    return convert_tune_space(space, roles=roles)


def _quantize(value: Any, q: float, param: Any) -> Any:
    v = round(float(value) / q) * q
    v = min(max(v, float(param.low)), float(param.high))
    return int(round(v)) if isinstance(param, IntParam) else float(f"{v:.12g}")


def _set_path(cfg: dict[str, Any], name: str, value: Any) -> None:
    parts = name.split("/")
    node = cfg
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def _get_path(cfg: Mapping[str, Any], name: str) -> Any:
    node: Any = cfg
    for p in name.split("/"):
        if not isinstance(node, Mapping) or p not in node:
            raise KeyError(name)
        node = node[p]
    return node


class AutoLLMSearcher(Searcher):
    """A Ray Tune ``Searcher`` that asks the autollm research agent for every configuration.

    Args:
        space: the search space, if not given through Tune's ``param_space``: a :class:`SearchSpace`, its
            dict form (needed for mixture weights), or a Tune dict such as ``{"lr": tune.loguniform(...)}``
            (converted as ``param_space`` is).
        metric: the result key to optimise (or set by ``TuneConfig(metric=...)``).
        mode: ``"min"`` or ``"max"`` (or set by ``TuneConfig(mode=...)``).
        fidelity: the fidelity axes; each appears as a key of every suggested config.
        target: the expensive fidelity point, one value per axis.
        history: earlier runs: a :class:`History`, a path to a ``.jsonl`` / ``.json`` / ``.csv`` history file
            (read with :meth:`History.load`), or trial dicts ``{"params", "fidelity", "value", "state"}``.
        fidelity_levels: enables the cost-aware mode (``[{axis: value, ..., "cost": c}, ...]``, target included).
        budget: the cost-aware budget; default five target runs.
        low_fidelity_share: at most this share of the budget goes to cheaper levels; the rest is kept for
            whole target runs (cost-aware mode, :class:`~autollm_sampler.budget.BudgetRule`).
        budget_rule: more options of the cost-aware rule (:class:`~autollm_sampler.budget.BudgetRule`):
            ``level_share`` (the most one cheaper level may spend, share of the budget; default 0.25),
            ``patience`` (finished runs without improvement that end a level; 4), ``min_runs`` (runs a level
            gets before it may stagnate; 8) and ``min_improvement`` (what counts as improving, as a share of
            the gap between the level's median and best runs; 0.01).
        agent: an :class:`~autollm_sampler.agent.Agent`, ``"default"`` (falls back to ``"classical"`` with a
            warning when the shipped model cannot be loaded), ``"classical"`` or a checkpoint path.
        seed: makes the suggestions reproducible.
        roles: parameter roles by name, overriding the guess from the name.

    Example:
        >>> searcher = AutoLLMSearcher(space={"params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1,
        ...     "log": True}}}, metric="loss", mode="min", agent="classical", seed=0)
        >>> searcher.suggest("t0")["lr"] > 0
        True
    """

    def __init__(
        self,
        space: SearchSpace | Mapping[str, Any] | None = None,
        *,
        metric: str | None = None,
        mode: str | None = None,
        fidelity: Sequence[str] = (),
        target: Mapping[str, float] | None = None,
        history: History | str | os.PathLike[str] | Iterable[Mapping[str, Any]] | None = None,
        fidelity_levels: Sequence[Mapping[str, Any]] | None = None,
        budget: float | None = None,
        low_fidelity_share: float = 0.4,
        agent: AgentSpec = "default",
        seed: int | None = None,
        roles: Mapping[str, str] | None = None,
        budget_rule: Mapping[str, Any] | None = None,
    ) -> None:
        if mode is not None and mode not in ("min", "max"):
            raise ValueError(f"mode={mode!r}: use 'min' or 'max' (AutoLLMSearcher optimises a single metric)")
        if metric is not None and not isinstance(metric, str):
            raise ValueError(f"metric={metric!r}: AutoLLMSearcher optimises a single metric; pass one name")
        super().__init__(metric=metric, mode=mode)
        # the fidelity axes and target, the cost-aware schedule, the agent (loaded on first use) and the seed
        self._core = SamplerCore(
            fidelity, target, agent=agent, seed=seed, fidelity_levels=fidelity_levels, budget=budget,
            low_fidelity_share=low_fidelity_share, budget_rule=budget_rule,
        )
        self._roles = dict(roles or {})
        self._space: SearchSpace | None = None
        self._quantize: dict[str, float] = {}
        self._constants: dict[str, Any] = {}
        self._history = History(fidelity_axes=self._core.axes)
        self._live: dict[str, dict[str, Any]] = {}
        self._paused: set[str] = set()
        self._n_suggested = 0
        self._last_proposal: dict[str, Proposal] = {}
        if space is not None:
            self._space, self._quantize, self._constants = _user_space(space, self._roles)
        for item in history_items(history):
            self._add_history(item)

    # ------------------------------------------------------------------ properties
    @property
    def agent(self) -> Agent:
        return self._core.agent

    @property
    def history(self) -> History:
        """Every finished trial so far (including the ``history=`` given at construction)."""
        return self._history

    @property
    def space(self) -> SearchSpace | None:
        return self._space

    def _direction(self) -> str:
        return "maximize" if self._mode == "max" else "minimize"

    # ------------------------------------------------------------------ Searcher API
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any) -> bool:
        if self._space is not None and config:
            # the searcher already has a space; Tune then uses it and passes its own config to nobody
            _, domains, _ = parse_spec_vars(dict(config))
            if domains:
                return False
        if metric:
            self._metric = metric
        if mode:
            if mode not in ("min", "max"):
                raise ValueError(f"mode={mode!r}: use 'min' or 'max'")
            self._mode = mode
        if self._space is None:
            space, quantize, constants = convert_tune_space(config, direction=self._direction(), roles=self._roles)
            self._space, self._quantize, self._constants = space, quantize, constants
        else:
            self._space = self._space.model_copy(update={"direction": self._direction()})
        clash = [a for a in self._core.axes if a in self._space.params]
        if clash:
            raise InvalidSpaceError(f"fidelity axes {clash} are also search parameters; rename one of them")
        for a in self._core.axes:
            if a in self._constants and finite_or_none(self._constants[a]) != self._core.target[a] and self._core.schedule is None:
                logger.warning(
                    "param_space sets %s=%r but the target is %r; the searcher writes the trial's fidelity into "
                    "the config, so the target value is used",
                    a, self._constants[a], self._core.target[a],
                )
        return True

    def set_max_concurrency(self, max_concurrent: int) -> bool:
        return False  # ConcurrencyLimiter enforces the limit; pending trials are already excluded

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._space is None:
            raise RuntimeError(
                "AutoLLMSearcher has no search space: pass param_space to tune.Tuner or space= to the searcher"
            )
        fid, level_note = self._next_fidelity()
        if fid is None:
            return Searcher.FINISHED  # type: ignore[return-value]
        pending = [r["params"] for r in self._live.values() if same_fidelity(r["fidelity"], fid)]
        seed = self._core.seed_for(self._n_suggested)
        self._n_suggested += 1
        proposal = self.agent.propose(self._history, self._space, fid, n=1, seed=seed, pending=pending)[0]
        params = {
            k: (_quantize(v, self._quantize[k], self._space.params[k]) if k in self._quantize else v)
            for k, v in proposal.params.items()
        }
        cost = self._core.level_cost(fid)
        self._live[trial_id] = {"params": params, "fidelity": fid, "cost": cost, "last": None, "note": level_note}
        self._last_proposal[trial_id] = proposal
        config: dict[str, Any] = {}
        for k, v in params.items():
            _set_path(config, k, v)
        for a, v in fid.items():
            config[a] = v
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        rec = self._live.get(trial_id)
        if rec is None or not self._metric:
            return
        v = finite_or_none(result.get(self._metric))
        if v is not None:
            rec["last"] = v

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        rec = self._live.pop(trial_id, None)
        self._paused.discard(trial_id)
        if rec is None:
            return
        value = finite_or_none(result.get(self._metric)) if (result is not None and self._metric) else None
        if error or result is None or value is None:
            state, value = "failed", None
        elif result.get("done") is False:
            state = "pruned"  # stopped by the scheduler (e.g. ASHA) before its last iteration
        else:
            state = "complete"
        prop = self._last_proposal.pop(trial_id, None)
        attrs: dict[str, Any] = {"trial_id": trial_id}
        iters = finite_or_none(result.get("training_iteration")) if result is not None else None
        if iters is not None:
            attrs["iterations"] = int(iters)
        if prop is not None:
            attrs.update(
                predicted_value=finite_or_none(prop.predicted_value), predicted_std=finite_or_none(prop.predicted_std),
                rationale=prop.rationale, source=prop.source,
            )
        self._history.add(
            Trial(
                id=self._history.next_id(), params=rec["params"], fidelity=rec["fidelity"], value=value,
                state=state, cost=rec["cost"], attrs=attrs,  # type: ignore[arg-type]
            )
        )
        self._mark_stopped_early(rec["fidelity"])

    def _mark_stopped_early(self, fidelity: Mapping[str, float]) -> None:
        """Relabel as pruned the trials at ``fidelity`` that ran fewer iterations than the longest one.

        A scheduler such as ASHA ends a trial early with ``done=True`` in its last result, so the number of
        iterations is the only trace: a shorter trial was stopped before its budget, and its metric is a
        partial result, not the outcome of a full run.
        """
        # every trial that reported counts for the length, a failed one too (a run that ends in NaN after
        # the full budget still shows how long a full run is)
        same = [t for t in self._history.trials if "iterations" in t.attrs and same_fidelity(t.fidelity, fidelity)]
        if not same:
            return
        longest = max(int(t.attrs["iterations"]) for t in same)
        for t in same:
            if t.state == "complete" and int(t.attrs["iterations"]) < longest:
                t.state = "pruned"

    def on_pause(self, trial_id: str) -> None:
        self._paused.add(trial_id)  # still pending: its configuration stays taken

    def on_unpause(self, trial_id: str) -> None:
        self._paused.discard(trial_id)

    def add_evaluated_point(
        self,
        parameters: dict[str, Any],
        value: float,
        error: bool = False,
        pruned: bool = False,
        intermediate_values: list[float] | None = None,
    ) -> None:
        """Add a run evaluated outside Tune; fidelity keys among ``parameters`` give its fidelity."""
        params = dict(parameters)
        fid = dict(self._core.target)
        for a in self._core.axes:
            if a in params:
                fv = finite_or_none(params.pop(a))
                if fv is None:
                    raise ValueError(f"add_evaluated_point: fidelity {a!r} is {parameters[a]!r}; give a finite number")
                fid[a] = fv
        flat: dict[str, Any] = {}
        names = list(self._space.params) if self._space is not None else []
        for n in names:
            try:
                flat[n] = _get_path(params, n)
            except KeyError:
                continue
        if not names:
            flat = params
        v = finite_or_none(value)
        state = "failed" if (error or v is None and not pruned) else ("pruned" if pruned else "complete")
        if state == "pruned" and v is None and intermediate_values:
            finite = [x for x in (finite_or_none(i) for i in intermediate_values) if x is not None]
            v = finite[-1] if finite else None
        self._add_history({"params": flat, "fidelity": fid, "value": v if state != "failed" else None, "state": state})

    def _add_history(self, item: Trial | Mapping[str, Any]) -> None:
        t = item if isinstance(item, Trial) else Trial.parse({"id": self._history.next_id(), **dict(item)}, where="history trial")
        if self._core.axes and not t.fidelity:
            t = t.model_copy(update={"fidelity": dict(self._core.target)})
        if any(str(o.id) == str(t.id) for o in self._history.trials):
            t = t.model_copy(update={"id": self._history.next_id()})
        self._history.add(t)

    # ------------------------------------------------------------------ cost-aware mode
    def _spent(self) -> dict[int | None, float]:
        records = [(t.fidelity, t.cost) for t in self._history.trials] + [(r["fidelity"], r["cost"]) for r in self._live.values()]
        return self._core.spent_by_level(records)

    def _next_fidelity(self) -> tuple[dict[str, float] | None, str]:
        if self._core.schedule is None:
            return dict(self._core.target), ""
        runs = [(t.fidelity, t.cost, True, t.value if t.state == "complete" else None) for t in self._history.trials]
        runs += [(r["fidelity"], r["cost"], False, None) for r in self._live.values()]
        choice, spent = self._core.choose_level(runs, self._direction(),
                                                dims=len(self._space.params) if self._space is not None else None)
        level = choice.level
        if level is None:
            logger.info("cost-aware budget %.4g spent (%s); the search is finished", self._core.schedule.budget,
                        choice.reason)
            return None, ""
        return dict(self._core.schedule.levels[level].fidelity), self._core.schedule.describe(level, spent, choice.reason)

    def budget_spent(self) -> float:
        """Cost spent or committed so far (cost-aware mode)."""
        self._core.require_schedule("budget_spent")
        return float(sum(self._spent().values()))

    def recommend(self) -> Proposal:
        """The configuration to run at the target: the best finished target trial, else the agent's top proposal.

        Returns a :class:`~autollm_sampler.agent.Proposal` (``params``, ``predicted_value``,
        ``predicted_std``, ``rationale``, ``source``). For a finished target trial ``source`` is
        ``"observed"``, ``predicted_value`` its metric and ``extras["trial_id"]`` Tune's trial id (or the
        history's id for an imported run); otherwise it is the agent's proposal for the target, not yet run.
        """
        if self._space is None:
            raise RuntimeError("AutoLLMSearcher has no search space yet: pass space= to the searcher, or param_space "
                               "to tune.Tuner and let Tune call set_search_properties")
        best = self._history.best(self._space.direction, fidelity=self._core.target if self._core.axes else None)
        if best is not None:
            tid = best.attrs.get("trial_id", best.id)
            return Proposal(dict(best.params), float(best.value), 0.0, f"Best completed target trial {tid}.",  # type: ignore[arg-type]
                            "observed", {"trial_id": tid})
        return self.agent.propose(self._history, self._space, self._core.target, n=1, seed=self._core.seed_for(RECOMMEND_KEY))[0]

    def explain(self) -> Explanation:
        """The evidence and the next proposal, in words.

        Returns the text and prints nothing (an :class:`~autollm_sampler.integrations.Explanation`,
        a ``str`` that a notebook shows as the text itself; in a script, ``print`` it).
        """
        if self._space is None:
            return Explanation("AutoLLMSearcher has no search space yet.")
        lines = describe_history(self._history, self._space, self._core.target)
        props = self.agent.propose(self._history, self._space, self._core.target, n=1, seed=self._core.seed_for(EXPLAIN_KEY),
                                   pending=[r["params"] for r in self._live.values()])
        lines += describe_proposals(props, self._core.target)
        return Explanation("\n".join(lines))

    # ------------------------------------------------------------------ save / restore / pickle
    def get_state(self) -> dict[str, Any]:
        """The searcher's state as plain JSON data (what :meth:`save` writes)."""
        agent = None if isinstance(self._core.agent_spec, Agent) else (
            os.fspath(self._core.agent_spec) if isinstance(self._core.agent_spec, os.PathLike) else self._core.agent_spec
        )
        return {
            "version": _STATE_VERSION,
            "metric": self._metric,
            "mode": self._mode,
            "axes": list(self._core.axes),
            "target": dict(self._core.target),
            "space": self._space.model_dump(mode="json") if self._space is not None else None,
            "quantize": dict(self._quantize),
            # constants only serve the fidelity-axis check of set_search_properties; others (objects) are not kept
            "constants": {k: v for k, v in self._constants.items() if _is_json(v)},
            "history": self._history.to_jsonl(),
            "live": {k: dict(v) for k, v in self._live.items()},
            "paused": sorted(self._paused),
            "n_suggested": self._n_suggested,
            "seed_base": self._core.seed_base,
            "schedule": _schedule_to_dict(self._core.schedule) if self._core.schedule is not None else None,
            "agent": agent,
            "roles": dict(self._roles),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore the state returned by :meth:`get_state`.

        Raises:
            CheckpointError: when ``state`` is not a searcher state of this release (naming the bad field).
        """
        if not isinstance(state, Mapping):
            raise CheckpointError(f"searcher state must be a JSON object, got {type(state).__name__}")
        if state.get("version") != _STATE_VERSION:
            raise CheckpointError(
                f"searcher state version {_short(state.get('version'))} is not {_STATE_VERSION}; "
                "it was saved by another release of autollm-sampler"
            )
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise CheckpointError(f"searcher state lacks field(s) {missing}")
        field = "?"
        try:
            field = "metric/mode"
            metric, mode = state["metric"], state["mode"]
            if (metric is not None and not isinstance(metric, str)) or mode not in (None, "min", "max"):
                raise ValueError("expected a metric name and 'min' or 'max'")
            field = "axes"
            axes = tuple(_check_type(state["axes"], list, "axes"))
            field = "target"
            target = {str(k): float(v) for k, v in _check_type(state["target"], dict, "target").items()}
            field = "space"
            space = SearchSpace.from_dict(state["space"]) if state["space"] is not None else None
            field = "quantize"
            quantize = {str(k): float(v) for k, v in _check_type(state["quantize"], dict, "quantize").items()}
            field = "constants"
            constants = dict(_check_type(state["constants"], dict, "constants"))
            field = "history"
            text = state["history"]
            if not isinstance(text, str):
                raise ValueError("expected JSON lines")
            history = History.from_jsonl(text, source="searcher state") if text else History(fidelity_axes=axes)
            if not history.fidelity_axes:
                history.fidelity_axes = axes
            field = "live"
            live = {str(k): _check_live(v) for k, v in _check_type(state["live"], dict, "live").items()}
            field = "paused"
            paused = {str(x) for x in _check_type(state["paused"], list, "paused")}
            field = "n_suggested"
            n_suggested = int(state["n_suggested"])
            field = "seed_base"
            seed_base = int(state["seed_base"])
            field = "schedule"
            schedule = _schedule_from_dict(state["schedule"], axes) if state["schedule"] is not None else None
            field = "roles"
            roles = {str(k): str(v) for k, v in _check_type(state["roles"], dict, "roles").items()}
            field = "agent"
            agent = state["agent"]
            if agent is not None and not isinstance(agent, str):
                raise ValueError("expected an agent name or checkpoint path")
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise CheckpointError(f"searcher state field {field!r} is malformed: {_short(str(exc), 300)}") from None
        self._metric, self._mode = metric, mode
        self._core.axes, self._core.target, self._space = axes, target, space
        self._quantize, self._constants, self._history = quantize, constants, history
        self._live, self._paused = live, paused
        self._n_suggested, self._core.seed_base = n_suggested, seed_base
        self._core.schedule, self._roles = schedule, roles
        if agent is None:
            if not isinstance(self._core.agent_spec, Agent):
                logger.warning(
                    "the saved searcher used an Agent object, which a state file cannot hold; this searcher "
                    "continues with agent=%r (pass the same agent= to the restoring searcher)", self._core.agent_spec,
                )
        elif self._core.agent_spec != agent and not isinstance(self._core.agent_spec, Agent):
            self._core.set_agent_spec(agent)
        self._last_proposal = {}

    def save(self, checkpoint_path: str) -> None:
        """Write the state as JSON (Tune calls this with a ``searcher-state-*.pkl`` name; the content is JSON)."""
        text = json.dumps({"format": _STATE_FORMAT, "state": self.get_state()}, allow_nan=False)
        with open(checkpoint_path, "w", encoding="utf-8") as fh:
            fh.write(text)

    def restore(self, checkpoint_path: str) -> None:
        """Read a state file written by :meth:`save`.

        The file is parsed as JSON only, never unpickled, so restoring an untrusted file cannot run code.

        Raises:
            CheckpointError: when the file is missing, a pickle (an older release's format), or not a
                searcher state.
        """
        where = _short(os.fspath(checkpoint_path), 200)
        try:
            with open(checkpoint_path, "rb") as fh:
                raw = fh.read()
        except OSError as exc:
            raise CheckpointError(f"cannot read searcher state {where}: {exc.strerror}") from None
        if raw[:1] == b"\x80":  # every pickle of protocol 2 or later starts so; JSON never does
            raise CheckpointError(
                f"searcher state {where} is a pickle file (written by an older release); it is refused because "
                "unpickling can run arbitrary code. Re-run the study, or load it with the older release and save again"
            )
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"searcher state {where} is not valid JSON: {_short(str(exc), 200)}") from None
        if not isinstance(data, dict) or data.get("format") != _STATE_FORMAT or "state" not in data:
            raise CheckpointError(
                f"searcher state {where} is JSON but not an AutoLLMSearcher state "
                f"(expected an object with format={_STATE_FORMAT!r} and 'state')"
            )
        try:
            self.set_state(data["state"])
        except CheckpointError as exc:
            raise CheckpointError(f"searcher state {where}: {exc}") from None

