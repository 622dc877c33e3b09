"""The benchmark's methods, all behind the gym's :class:`~autollm_sampler.gym.Policy` interface.

Every method is a :class:`BenchPolicy`: ``reset(obs, seed=...)``, ``act(obs) -> action``,
``recommend(obs) -> config``, plus ``wants_stop(obs)`` for Setting B (a method may end its episode before
the budget is spent). In Setting A an action is a target configuration; in Setting B it is
``{"params": ..., "cell": ...}``. The runner resolves every proposal against the cell's table (see
:mod:`autollm_sampler.benchmark._candidates`), so a policy may propose anything.

Methods here: random search, Optuna samplers on the target (optionally warm-started from the cheap runs),
transfer, successive halving across cells, the agent adapter and the agent's extrapolation feature without
its model (an ablation). The Step Law rule lives in
:mod:`autollm_sampler.benchmark._steplaw`.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from autollm_sampler.benchmark._candidates import CandidateIndex, candidate_index
from autollm_sampler.budget import BudgetChoice, BudgetRule, Direction, pick_ladder
from autollm_sampler.gym import Observation, Policy
from autollm_sampler.history import History, Trial
from autollm_sampler.space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    SearchSpace,
    SimplexParam,
    project_unit,
)
from autollm_sampler.strategies import random_proposals, transfer_proposals

__all__ = [
    "BenchPolicy",
    "RandomSearch",
    "TransferSearch",
    "OptunaSearch",
    "OptunaEncoding",
    "AgentPolicy",
    "ExtrapolatedSearch",
    "SuccessiveHalving",
    "BudgetSchedule",
    "cell_info",
    "history_trials",
    "target_only_history",
]

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- helpers
def cell_info(obs: Observation, name: str) -> Any:
    """The :class:`~autollm_sampler.gym.CellInfo` of a cell by name."""
    for c in obs.cells:
        if c.name == name:
            return c
    raise KeyError(f"cell {name!r} is not part of this experiment; cells: {[c.name for c in obs.cells]}")


def history_trials(obs: Observation, cell: str) -> list[Trial]:
    """Completed trials of one cell, in the order they were run."""
    return [t for t in obs.history.trials if t.attrs.get("cell") == cell and t.is_complete]


def target_only_history(obs: Observation) -> History:
    """The history restricted to the target cell's trials (no low-fidelity evidence)."""
    return History(trials=[t for t in obs.history.trials if t.attrs.get("cell") == obs.target.name],
                   fidelity_axes=obs.history.fidelity_axes)


def _index(obs: Observation, cell: str) -> CandidateIndex:
    return candidate_index(obs.task_id, cell, obs.spaces[cell], obs.candidates_by_cell[cell])


def _tried_rows(obs: Observation, cell: str) -> set[int]:
    return set(obs.tried.get(cell, set()))


def _transfer(obs: Observation, cell: str, rng: np.random.Generator, *, exclude_tried: bool = True) -> dict[str, Any]:
    """The gym's transfer strategy for one cell, with the cell's candidate tables precomputed."""
    index = _index(obs, cell)
    exclude = {index.keys[i] for i in _tried_rows(obs, cell)} if exclude_tried else set()
    return transfer_proposals(obs.history, obs.spaces[cell], cell_info(obs, cell).fidelity, 1, rng,
                              candidates=obs.candidates_by_cell[cell], exclude=exclude, index=index)[0]


def _affordable(obs: Observation, cell: str, *, untried: bool = False) -> bool:
    """Setting B: whether some run (some untried run) of ``cell`` fits in the budget left."""
    limit = obs.budget_left * (1 + 1e-9)
    costs = getattr(obs, "costs_by_cell", {}).get(cell)
    if costs is None:
        return bool(cell_info(obs, cell).cost <= limit) and (not untried or len(_tried_rows(obs, cell)) < cell_info(obs, cell).n_rows)
    done = _tried_rows(obs, cell) if untried else set()
    return any(float(c) <= limit for i, c in enumerate(costs) if i not in done)


class BenchPolicy(Policy):
    """Base class of every benchmark method.

    Class attributes describe the method to the runner: ``deterministic`` (same result for every seed
    given the same history; run once per experiment when the history is fixed), ``uses_history`` (reads
    the low-fidelity runs; if not, its Setting-A episodes are shared between the ``full`` and ``sparse``
    variants), ``settings`` (which of ``"A"``/``"B"`` it supports).
    """

    name = "bench-policy"
    deterministic = False
    uses_history = True
    settings: tuple[str, ...] = ("A", "B")

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self._seed = seed
        #: proposals of this episode that an agent handed over to its classical fallback
        self.fallbacks = 0
        #: ``(mean, std)`` the method predicted for its latest proposal's outcome, if it predicts (the
        #: runner reads and clears it after each step, for the calibration figures)
        self.last_prediction: tuple[float, float] | None = None

    def reset(self, obs: Observation, *, seed: int | None = None) -> None:
        super().reset(obs, seed=seed)
        self._seed = seed
        self.fallbacks = 0
        self.last_prediction = None

    def wants_stop(self, obs: Observation) -> bool:
        """Setting B: end the episode now. Default: when a target run can no longer be afforded."""
        return obs.setting == "B" and not _affordable(obs, obs.target.name, untried=True)

    def recommend(self, obs: Observation) -> dict[str, Any]:
        """Best target trial so far; without one, the transfer guess from the history (else a seeded pick).

        Unlike the gym's default this never draws from the policy's own generator, so computing the
        recommendation after every step (the Setting-B trace) does not change what the method does.
        """
        best = obs.history.best(obs.direction, obs.target.fidelity)
        if best is not None and best.attrs.get("cell") == obs.target.name:
            return dict(best.params)
        rng = np.random.default_rng(self._seed)
        if any(t.attrs.get("cell") != obs.target.name for t in obs.history.trials):
            return _transfer(obs, obs.target.name, rng, exclude_tried=False)
        return dict(obs.candidates[int(rng.integers(len(obs.candidates)))])

    def _on_target(self, obs: Observation, params: Mapping[str, Any]) -> dict[str, Any]:
        if obs.setting == "B":
            return {"params": dict(params), "cell": obs.target.name}
        return dict(params)

    def _step_seed(self, obs: Observation) -> int | None:
        return None if self._seed is None else int(self._seed) * 1009 + int(obs.step)


# --------------------------------------------------------------------------------------------- random
class RandomSearch(BenchPolicy):
    """Uniformly random untried target configurations (both settings: target runs only)."""

    name = "random"
    uses_history = False

    def act(self, obs: Observation) -> dict[str, Any]:
        exclude = {obs.space.config_key(obs.candidates[i]) for i in _tried_rows(obs, obs.target.name)}
        p = random_proposals(obs.space, 1, self._rng, candidates=obs.candidates, exclude=exclude)[0]
        return self._on_target(obs, p)


# --------------------------------------------------------------------------------------------- schedule
class BudgetSchedule:
    """Setting B's schedule for the methods that pick cells: the shipped cost-aware rule.

    The rule is :class:`autollm_sampler.budget.BudgetRule`, the one the Optuna sampler, the Ray searcher and
    the ask/tell API follow (through ``CostSchedule``), so the benchmark measures what users get. A task's
    cells map to levels as a user would offer them: :func:`~autollm_sampler.budget.pick_ladder` picks up to
    two cheaper cells (the cheapest, then the most expensive whose share affords ``min_runs`` runs), plus the
    target, with each cell's nominal cost; the rule then sees what each cell spent (the rows' own costs) and
    its values in order. A cell whose every affordable row was tried is closed.
    ``low_fidelity_share=0`` with ``max_levels=0`` runs the target only.
    """

    def __init__(self, *, low_fidelity_share: float = 0.4, max_levels: int = 2, min_runs: int = 4) -> None:
        BudgetRule([1.0, 2.0], 1, low_fidelity_share=low_fidelity_share)  # the rule's own checks of the share
        if isinstance(max_levels, bool) or not isinstance(max_levels, int) or max_levels < 0:
            raise ValueError(f"max_levels must be an int >= 0, got {max_levels!r}")
        if isinstance(min_runs, bool) or not isinstance(min_runs, int) or min_runs < 1:
            raise ValueError(f"min_runs must be an int >= 1, got {min_runs!r}")
        self.low_fidelity_share = low_fidelity_share
        self.max_levels = max_levels
        self.min_runs = min_runs
        self.ladder: list[str] = []
        self.rule: BudgetRule | None = None
        self.last: BudgetChoice | None = None

    def reset(self, obs: Observation) -> None:
        cells = [c for c in obs.cells if not c.is_target]
        costs = [c.cost for c in cells] + [obs.target.cost]
        budget = obs.budget_left
        picked = pick_ladder(costs, len(cells), budget, max_levels=self.max_levels, min_runs=self.min_runs,
                             low_fidelity_share=self.low_fidelity_share) if self.max_levels else []
        self.ladder = [cells[i].name for i in picked]
        names = [*self.ladder, obs.target.name]
        self.rule = BudgetRule([cell_info(obs, n).cost for n in names], len(self.ladder), budget, names=names,
                               low_fidelity_share=self.low_fidelity_share)
        self.last = None

    def choose(self, obs: Observation) -> BudgetChoice:
        """The rule's choice for the next run (``level`` indexes ``ladder + [target]``)."""
        assert self.rule is not None, "call reset(obs) first"
        names = [*self.ladder, obs.target.name]
        level = {n: i for i, n in enumerate(names)}
        spent: dict[int | None, float] = {}
        values: dict[int, list[float | None]] = {}
        for t in obs.history.trials:
            i = level.get(str(t.attrs.get("cell")), None)
            spent[i] = spent.get(i, 0.0) + float(t.cost or 0.0)
            if i is not None:
                values.setdefault(i, []).append(float(t.value) if t.is_complete and t.value is not None else None)
        closed = [i for i, n in enumerate(names) if not _affordable(obs, n, untried=True)]
        direction: Direction = "maximize" if obs.direction == "maximize" else "minimize"
        self.last = self.rule.choose(spent, values, direction, closed=closed, dims=len(obs.space.params))
        return self.last

    def next_cell(self, obs: Observation) -> str:
        level = self.choose(obs).level
        return obs.target.name if level is None else [*self.ladder, obs.target.name][level]


class _CellProposer(BenchPolicy):
    """A method that can propose for any cell; in Setting B it follows :class:`BudgetSchedule`."""

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.schedule = BudgetSchedule()

    def reset(self, obs: Observation, *, seed: int | None = None) -> None:
        super().reset(obs, seed=seed)
        if obs.setting == "B":
            self.schedule.reset(obs)

    def wants_stop(self, obs: Observation) -> bool:
        """Setting B: when the rule runs nothing more (what is left affords no target run)."""
        return obs.setting == "B" and self.schedule.choose(obs).level is None

    def act(self, obs: Observation) -> dict[str, Any]:
        if obs.setting == "A":
            return self.propose_for(obs, obs.target.name)
        cell = self.schedule.next_cell(obs)
        return {"params": self.propose_for(obs, cell), "cell": cell}

    def propose_for(self, obs: Observation, cell: str) -> dict[str, Any]:
        raise NotImplementedError


class TransferSearch(_CellProposer):
    """Best configuration of the nearest cheaper cell, then its untried neighbours, best first."""

    name = "transfer"
    deterministic = True

    def propose_for(self, obs: Observation, cell: str) -> dict[str, Any]:
        return _transfer(obs, cell, self._rng)


# --------------------------------------------------------------------------------------------- agent
_AGENTS: dict[str, Any] = {}


def load_agent_cached(name_or_path: str) -> Any:
    """``autollm_sampler.agent.load_agent`` once per process (checkpoints are read-only), in strict mode.

    The benchmark runs strict: an internal error of an agent fails the episode (reported as such) instead of
    becoming a quieter classical fallback; the fallbacks that remain by design (inputs outside the model's
    training distribution) are counted per episode and printed per method.
    """
    key = f"{name_or_path}@{checkpoint_fingerprint(name_or_path)}"  # a checkpoint rewritten in place is reloaded
    if key not in _AGENTS:
        from autollm_sampler.agent import load_agent

        agent = load_agent(name_or_path)
        agent.strict = True
        _AGENTS[key] = agent
    return _AGENTS[key]


def checkpoint_fingerprint(name_or_path: str) -> str:
    """16 hex digits of the sha256 of an agent checkpoint's manifest (``""``: no checkpoint file, e.g. classical)."""
    import hashlib

    if name_or_path == "classical" or name_or_path.startswith("llm:"):
        return ""
    from autollm_sampler.agent import DEFAULT_CHECKPOINT

    path = DEFAULT_CHECKPOINT if name_or_path == "default" else Path(name_or_path)
    for manifest in (path / "manifest.json", path / "llm_agent.json"):
        if manifest.is_file():
            return hashlib.sha256(manifest.read_bytes()).hexdigest()[:16]
    return ""


class AgentPolicy(_CellProposer):
    """Adapter from an :class:`~autollm_sampler.agent.Agent` to the policy interface.

    Each step calls ``agent.propose(history, space, target, n=1, seed, candidates=..., pending=<tried
    configs of that cell>)``. With ``use_history=False`` the agent sees only its own target trials (the
    no-low-fidelity-history ablation; in Setting B it then runs on the target only).

    Example:
        >>> from autollm_sampler.agent import ClassicalAgent
        >>> policy = AgentPolicy(agent=ClassicalAgent(), seed=0)
    """

    def __init__(self, *, agent: Any = None, agent_name: str = "default", use_history: bool = True,
                 name: str = "agent", seed: int | None = None, adapt: bool = True) -> None:
        super().__init__(seed=seed)
        self._agent = agent
        #: ``False``: the agent's in-context adaptation step is off for this policy's proposals (the ablation);
        #: set on each call, because agents are shared between the methods of one worker process
        self.adapt = adapt
        self.agent_name = agent_name
        self.use_history = use_history
        self.uses_history = use_history
        self.name = name
        if not use_history:
            self.schedule = BudgetSchedule(low_fidelity_share=0.0, max_levels=0)

    @property
    def agent(self) -> Any:
        if self._agent is None:
            self._agent = load_agent_cached(self.agent_name)
        return self._agent

    def propose_for(self, obs: Observation, cell: str) -> dict[str, Any]:
        hist = obs.history if self.use_history else target_only_history(obs)
        cands = obs.candidates_by_cell[cell]
        pending = [cands[i] for i in sorted(_tried_rows(obs, cell))]
        agent = self.agent
        if hasattr(agent, "adapt"):
            agent.adapt = self.adapt
        elif not self.adapt:
            raise TypeError(f"agent {type(agent).__name__} has no adaptation step to switch off")
        props = agent.propose(hist, obs.spaces[cell], cell_info(obs, cell).fidelity, n=1,
                                   seed=self._step_seed(obs), candidates=cands, pending=pending)
        self.fallbacks += sum(p.source == "fallback" for p in props)
        pv, ps = props[0].predicted_value, props[0].predicted_std
        if pv is not None and ps is not None and math.isfinite(pv) and math.isfinite(ps):
            self.last_prediction = (float(pv), float(ps))
        return dict(props[0].params)

    def recommend(self, obs: Observation) -> dict[str, Any]:
        """Best target trial; before any target run, the agent's own proposal for the target."""
        if history_trials(obs, obs.target.name):
            return super().recommend(obs)
        return self.propose_for(obs, obs.target.name)


class ExtrapolatedSearch(_CellProposer):
    """The agent's extrapolated optimum without the model: the nearest untried candidate (an ablation).

    The agent's serializer (``autollm_sampler.agent._features.encode``) fits a ridge extrapolation of the
    per-cell optima along log-fidelity and gives it to the model as a feature (``Encoded.extrap``, a point
    of the proposed-for cell's unit cube). This method proposes the untried row nearest to that point, with
    no model: it shows what the model adds over its own feature. The point depends only on the *other*
    cells' runs, so in Setting A it is fixed and the method walks outward from it, nearest first. With no
    evidence at all (Setting B's first cheap runs) ``encode`` gives its prior, the centre of the cube. In
    Setting B it follows the same :class:`BudgetSchedule` as :class:`AgentPolicy`.

    Example:
        >>> policy = ExtrapolatedSearch(seed=0)
    """

    name = "agent-extrap"
    deterministic = True

    def __init__(self, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self._points: dict[str, tuple[int, np.ndarray]] = {}  # cell -> (runs of the other cells, point)

    def reset(self, obs: Observation, *, seed: int | None = None) -> None:
        super().reset(obs, seed=seed)
        self._points = {}

    def extrapolated(self, obs: Observation, cell: str) -> np.ndarray:
        """``encode(history, space, fidelity).extrap`` for one cell (cached while the other cells' runs stay)."""
        from autollm_sampler.agent._features import encode

        n_other = sum(1 for t in obs.history.trials if t.attrs.get("cell") != cell)
        cached = self._points.get(cell)
        if cached is None or cached[0] != n_other:
            space = obs.spaces[cell]
            enc = encode(obs.history, space, cell_info(obs, cell).fidelity, np.zeros((0, space.width)))
            cached = (n_other, np.asarray(enc.extrap, dtype=float))
            self._points[cell] = cached
        return cached[1]

    def propose_for(self, obs: Observation, cell: str) -> dict[str, Any]:
        row = _index(obs, cell).nearest(self.extrapolated(obs, cell), exclude=_tried_rows(obs, cell))
        return dict(obs.candidates_by_cell[cell][row])

    def recommend(self, obs: Observation) -> dict[str, Any]:
        """Best target trial; before any target run, the target row nearest to the extrapolated optimum."""
        if history_trials(obs, obs.target.name):
            return super().recommend(obs)
        row = _index(obs, obs.target.name).nearest(self.extrapolated(obs, obs.target.name))
        return dict(obs.candidates[row])


# --------------------------------------------------------------------------------------------- optuna
class OptunaEncoding:
    """How a cell's search space is presented to an Optuna sampler, and how its suggestions are decoded.

    * a simplex of K components becomes K ``FloatDistribution(0, 1)`` named ``name[component]``,
      normalised to sum to one when decoded;
    * a categorical grid parameter is a ``CategoricalDistribution`` of its values, unless ``ordinal`` is
      set and its values are numeric: then it is one ``FloatDistribution(0, 1)`` over the values' ordered
      (log-spaced where appropriate) positions, decoded to the nearest value. Samplers that cannot model
      categoricals (CMA-ES, QMC) sample them independently at random, and GP would lose their order, so
      those samplers get the ordinal encoding;
    * float and int parameters map to the matching distributions.
    """

    def __init__(self, space: SearchSpace, *, ordinal: bool) -> None:
        from optuna.distributions import (
            BaseDistribution,
            CategoricalDistribution,
            FloatDistribution,
            IntDistribution,
        )

        self.space = space
        self.ordinal = ordinal
        self.distributions: dict[str, BaseDistribution] = {}
        self._ordinal_params: set[str] = set()
        for name, p in space.params.items():
            if isinstance(p, SimplexParam):
                for comp in p.components:
                    self.distributions[f"{name}[{comp}]"] = FloatDistribution(0.0, 1.0)
            elif isinstance(p, CategoricalParam):
                if ordinal and p.numeric and len(p.choices) > 1:
                    self.distributions[name] = FloatDistribution(0.0, 1.0)
                    self._ordinal_params.add(name)
                else:
                    self.distributions[name] = CategoricalDistribution(p.choices)
            elif isinstance(p, FloatParam):
                self.distributions[name] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
            elif isinstance(p, IntParam):
                self.distributions[name] = IntDistribution(p.low, p.high, log=p.log, step=p.step)

    def decode(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """An Optuna trial's params -> a configuration of the space."""
        out: dict[str, Any] = {}
        for name, p in self.space.params.items():
            if isinstance(p, SimplexParam):
                w = np.array([max(float(values[f"{name}[{c}]"]), 0.0) for c in p.components])
                out[name] = p.from_unit(list(w))
            elif name in self._ordinal_params:
                assert isinstance(p, CategoricalParam)
                out[name] = p.from_unit([float(values[name])], p.resolved_role(name))
            else:
                out[name] = values[name]
        return out

    def encode_unit(self, u: np.ndarray) -> dict[str, Any]:
        """A unit-cube point of the space -> Optuna params (ordinal coordinates keep their position)."""
        cfg = self.space.from_unit(u)
        out: dict[str, Any] = {}
        i = 0
        for name, p in self.space.params.items():
            seg = u[i : i + p.width]
            if isinstance(p, SimplexParam):
                w = cfg[name]
                for comp in p.components:
                    out[f"{name}[{comp}]"] = float(w[comp])
            elif name in self._ordinal_params:
                out[name] = float(np.clip(seg[0], 0.0, 1.0))
            else:
                out[name] = cfg[name]
            i += p.width
        return out


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*greenlet.*")


#: Per-process caches: warm trials by (task, target, encoding, cell, row, value), and pickled studies that
#: already hold a large warm history (building one deep-copies every trial; unpickling is much cheaper).
_FROZEN: dict[tuple[Any, ...], Any] = {}
_STORAGES: dict[tuple[Any, ...], bytes] = {}
_BIG_HISTORY = 500


def clear_method_caches() -> None:
    """Forget the per-process warm-trial and warm-study caches (the latency benchmark times cold setups)."""
    _FROZEN.clear()
    _STORAGES.clear()


def _warm_study(obs: Observation, enc: OptunaEncoding, trials: list[Any], direction: Any, sampler: Any) -> Any:
    """A study holding ``trials`` as completed trials, from the per-process cache when it is large."""
    import pickle

    import optuna

    sig = (obs.task_id, obs.target.name, enc.ordinal, direction, len(trials), hash(tuple(id(t) for t in trials)))
    blob = _STORAGES.get(sig) if len(trials) >= _BIG_HISTORY else None
    if blob is not None:
        storage = pickle.loads(blob)  # noqa: S301 - our own bytes, made in this process
        return optuna.load_study(study_name="bench", storage=storage, sampler=sampler)
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(study_name="bench", storage=storage, direction=direction, sampler=sampler)
    study.add_trials(trials)
    if len(trials) >= _BIG_HISTORY:
        if len(_STORAGES) >= 8:
            _STORAGES.clear()
        _STORAGES[sig] = pickle.dumps(storage)
    return study


def cmaes_warm_start_supported() -> str | None:
    """``None`` when the installed Optuna's CmaEsSampler accepts ``source_trials``, else the reason."""
    import inspect

    try:
        from optuna.samplers import CmaEsSampler
    except ImportError as exc:  # pragma: no cover - optuna is a core dependency
        return f"optuna is not importable ({exc})"
    if "source_trials" not in inspect.signature(CmaEsSampler.__init__).parameters:
        return "the installed Optuna's CmaEsSampler has no source_trials (warm start) argument"
    try:
        import cmaes  # noqa: F401
    except ImportError:
        return "the 'cmaes' package is not installed (pip install 'autollm-sampler[bench]')"
    return None


class OptunaSearch(BenchPolicy):
    """A real Optuna study driven by ask/tell on the target cell.

    Args:
        sampler: ``"tpe"``, ``"gp"``, ``"cmaes"`` or ``"qmc"``.
        warm: add the low-fidelity runs (carried into the target space) as completed trials; for CMA-ES
            they are passed as ``source_trials`` (warm-starting CMA-ES) instead.
        n_startup_trials: random trials before TPE/GP start modelling. Optuna's default (10) would make
            both pure random search over the whole 10-evaluation horizon, so the benchmark uses 3.
        max_reasks: when a suggestion decodes to an already-evaluated row, its known outcome is told back
            and the sampler is asked again, up to this many times.
        seed: seeds the sampler.
    """

    SAMPLERS = ("tpe", "gp", "cmaes", "qmc")

    def __init__(self, *, sampler: str, warm: bool = False, n_startup_trials: int = 3, max_reasks: int = 5,
                 seed: int | None = None) -> None:
        if sampler not in self.SAMPLERS:
            raise ValueError(f"sampler must be one of {self.SAMPLERS}, got {sampler!r}")
        super().__init__(seed=seed)
        self.sampler_name = sampler
        self.warm = warm
        self.uses_history = warm
        self.n_startup_trials = n_startup_trials
        self.max_reasks = max_reasks
        self.name = f"{sampler}-warm" if warm else sampler
        self.settings = ("A",) if warm else ("A", "B")
        self._study: Any = None
        self._enc: OptunaEncoding | None = None
        self._pending: Any = None
        self._n_target_at_ask = 0

    # -- setup
    def reset(self, obs: Observation, *, seed: int | None = None) -> None:
        import optuna

        super().reset(obs, seed=seed)
        _quiet_optuna()
        self._enc = OptunaEncoding(obs.space, ordinal=self.sampler_name != "tpe")
        warm_trials = self._warm_trials(obs) if self.warm else []
        sampler = self._make_sampler(seed, warm_trials)
        direction: Literal["minimize", "maximize"] = "maximize" if obs.direction == "maximize" else "minimize"
        if warm_trials and self.sampler_name != "cmaes":
            self._study = _warm_study(obs, self._enc, warm_trials, direction, sampler)
        else:
            self._study = optuna.create_study(direction=direction, sampler=sampler)
        self._pending = None
        self._n_target_at_ask = 0

    def _make_sampler(self, seed: int | None, warm_trials: list[Any]) -> Any:
        from optuna.samplers import CmaEsSampler, GPSampler, QMCSampler, TPESampler

        if self.sampler_name == "tpe":
            return TPESampler(seed=seed, n_startup_trials=self.n_startup_trials)
        if self.sampler_name == "gp":
            return GPSampler(seed=seed, n_startup_trials=self.n_startup_trials, warn_independent_sampling=False)
        if self.sampler_name == "qmc":
            return QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False,
                              warn_asynchronous_seeding=False)
        if warm_trials:
            # the source trials set the initial distribution, so the first suggestion already uses it
            return CmaEsSampler(seed=seed, source_trials=warm_trials, n_startup_trials=0,
                                warn_independent_sampling=False)
        return CmaEsSampler(seed=seed, warn_independent_sampling=False)

    def add_history_as_trials(self, obs: Observation) -> None:
        """Add the low-fidelity runs to the study as completed trials (the latency benchmark's scenario)."""
        if self._study is None:
            raise RuntimeError("call reset(obs) before add_history_as_trials(obs)")
        self._study.add_trials(self._warm_trials(obs, numeric_only=False))

    def _warm_trials(self, obs: Observation, *, numeric_only: bool | None = None) -> list[Any]:
        """The low-fidelity runs as completed Optuna trials in the target's encoding (cached per run).

        CMA-ES only accepts source trials whose parameters are exactly its (numeric) search space, so for
        it the categorical parameters are left out.
        """
        from optuna.distributions import FloatDistribution, IntDistribution
        from optuna.trial import create_trial

        assert self._enc is not None
        enc = self._enc
        numeric = self.sampler_name == "cmaes" if numeric_only is None else numeric_only
        keep = [n for n, d in enc.distributions.items()
                if not numeric or (isinstance(d, (FloatDistribution, IntDistribution)) and not d.single())]
        dists = {n: enc.distributions[n] for n in keep}
        kind = ("ordinal" if enc.ordinal else "categorical", numeric)
        out = []
        for t in obs.history.trials:
            cell = t.attrs.get("cell")
            if cell == obs.target.name or not t.is_complete:
                continue
            key = (obs.task_id, obs.target.name, kind, cell, t.attrs.get("row"), float(t.value))  # type: ignore[arg-type]
            frozen = _FROZEN.get(key) if key[4] is not None else None
            if frozen is None:
                params = enc.encode_unit(project_unit(t.params, None, obs.space))
                frozen = create_trial(params={n: params[n] for n in keep}, distributions=dists,
                                      value=float(t.value))  # type: ignore[arg-type]
                if key[4] is not None:
                    _FROZEN[key] = frozen
            out.append(frozen)
        return out

    # -- loop
    def act(self, obs: Observation) -> dict[str, Any]:
        assert self._enc is not None and self._study is not None
        self._tell_pending(obs)
        index = _index(obs, obs.target.name)
        tried = _tried_rows(obs, obs.target.name)
        known = {t.attrs.get("row"): float(t.value) for t in history_trials(obs, obs.target.name)}  # type: ignore[arg-type]
        cfg: dict[str, Any] = {}
        for _ in range(self.max_reasks + 1):
            trial = self._study.ask(self._enc.distributions)
            cfg = self._enc.decode(trial.params)
            row = index.find(cfg)
            if row is None or row not in tried or row not in known:  # new row, or off the table
                self._pending = trial
                self._n_target_at_ask = len(history_trials(obs, obs.target.name))
                return self._on_target(obs, cfg)
            self._study.tell(trial, known[row])  # a cached objective: the outcome is already known
        self._pending = None
        return self._on_target(obs, cfg)

    def _tell_pending(self, obs: Observation) -> None:
        if self._pending is None:
            return
        done = history_trials(obs, obs.target.name)
        if len(done) > self._n_target_at_ask:
            self._study.tell(self._pending, float(done[-1].value))  # type: ignore[arg-type]
        else:
            import optuna

            self._study.tell(self._pending, state=optuna.trial.TrialState.FAIL)
        self._pending = None


# --------------------------------------------------------------------------------------------- successive halving
class SuccessiveHalving(BenchPolicy):
    """Successive halving across fidelity cells (Setting B), Hyperband-style promotion.

    Rungs are the target plus up to ``max_rungs - 1`` cheaper cells, each at least ``eta`` times cheaper
    than the rung above. Rung ``r`` runs ``n_T * eta**(R-1-r)`` configurations (``n_T`` target runs, the
    largest that fits the budget); the first rung's are drawn at random, each later rung runs the best
    ``1/eta`` of the previous one carried into its own table (nearest untried row). Budget left after the
    target rung goes to the next-best promoted configurations, then to neighbours of the best target run.
    """

    name = "sh"
    settings = ("B",)
    uses_history = False

    def __init__(self, *, eta: int = 3, max_rungs: int = 4, seed: int | None = None) -> None:
        if eta < 2:
            raise ValueError(f"eta must be >= 2, got {eta!r}")
        super().__init__(seed=seed)
        self.eta = eta
        self.max_rungs = max_rungs
        self.rungs: list[str] = []
        self.counts: list[int] = []
        self._rung = 0
        self._queue: list[int] = []
        self._reserve: list[dict[str, Any]] = []

    def reset(self, obs: Observation, *, seed: int | None = None) -> None:
        super().reset(obs, seed=seed)
        if obs.setting != "B":
            raise ValueError("successive halving is a Setting-B method; run it with setting='B'")
        self.rungs, self.counts = self._plan(obs)
        self._rung = 0
        first = cell_info(obs, self.rungs[0])
        n0 = min(self.counts[0], first.n_rows)
        self._queue = [int(i) for i in self._rng.choice(first.n_rows, size=n0, replace=False)]
        self._reserve = []

    def _plan(self, obs: Observation) -> tuple[list[str], list[int]]:
        target = obs.target
        rungs = [target]
        cur = target.cost
        others = [c for c in obs.cells if not c.is_target]
        while len(rungs) < self.max_rungs:
            cheaper = [c for c in others if c.cost <= cur / self.eta and c not in rungs]
            if not cheaper:
                break
            pick = max(cheaper, key=lambda c: c.cost)
            rungs.insert(0, pick)
            cur = pick.cost
        budget = obs.budget_left
        while True:
            r = len(rungs)
            best_n = 0
            for n_t in range(1, 6):
                counts = [min(n_t * self.eta ** (r - 1 - i), c.n_rows) for i, c in enumerate(rungs)]
                if sum(n * c.cost for n, c in zip(counts, rungs, strict=True)) <= budget * (1 + 1e-9):
                    best_n = n_t
            if best_n > 0 or len(rungs) == 1:
                n_t = max(best_n, 1)
                counts = [min(n_t * self.eta ** (r - 1 - i), c.n_rows) for i, c in enumerate(rungs)]
                return [c.name for c in rungs], counts
            rungs.pop(0)

    def _next_cell(self) -> str:
        if self._queue or self._rung == len(self.rungs) - 1:
            return self.rungs[min(self._rung, len(self.rungs) - 1)]
        return self.rungs[self._rung + 1]

    def wants_stop(self, obs: Observation) -> bool:
        return not _affordable(obs, self._next_cell(), untried=True)

    def act(self, obs: Observation) -> dict[str, Any]:
        if not self._queue:
            self._advance(obs)
        cell = self.rungs[self._rung]
        row = self._queue.pop(0)
        return {"params": dict(obs.candidates_by_cell[cell][row]), "cell": cell}

    def _ranked(self, obs: Observation, cell: str) -> list[Trial]:
        sign = obs.space.sign
        return sorted(history_trials(obs, cell), key=lambda t: sign * float(t.value))  # type: ignore[arg-type]

    def _carry(self, obs: Observation, configs: Sequence[Mapping[str, Any]], cell: str) -> list[int]:
        index = _index(obs, cell)
        taken = set(_tried_rows(obs, cell))
        rows = []
        for cfg in configs:
            row = index.nearest(project_unit(cfg, None, obs.spaces[cell]), exclude=taken)
            if row not in taken:
                rows.append(row)
                taken.add(row)
        return rows

    def _advance(self, obs: Observation) -> None:
        last = len(self.rungs) - 1
        if self._rung < last:
            ranked = self._ranked(obs, self.rungs[self._rung])
            n_next = self.counts[self._rung + 1]
            self._rung += 1
            self._queue = self._carry(obs, [t.params for t in ranked[:n_next]], self.rungs[self._rung])
            self._reserve = [dict(t.params) for t in ranked[n_next:]]
            if self._queue:
                return
        target = self.rungs[last]
        while self._reserve and not self._queue:
            self._queue = self._carry(obs, [self._reserve.pop(0)], target)
        if not self._queue:
            best = self._ranked(obs, target)
            index = _index(obs, target)
            anchor = index.unit_of(best[0].params) if best else np.full(obs.space.width, 0.5)
            self._queue = [index.nearest(anchor, exclude=_tried_rows(obs, target))]

    def recommend(self, obs: Observation) -> dict[str, Any]:
        for cell in reversed(self.rungs):
            ranked = self._ranked(obs, cell)
            if ranked:
                if cell == obs.target.name:
                    return dict(ranked[0].params)
                index = _index(obs, obs.target.name)
                return dict(obs.candidates[index.nearest(project_unit(ranked[0].params, None, obs.space))])
        return super().recommend(obs)

