"""The benchmark runner: the same held-out experiments and fixed seeds for every method, resumable.

An *episode* is one (setting, history variant, task, target, method, seed). The runner plans every
episode of a :class:`BenchConfig`, skips those already in ``<out>/episodes.jsonl`` (one JSON line per
finished episode, written as soon as it finishes), runs the rest (in worker processes when
``workers > 1``) and returns every record of the plan.

Conventions (also stated in the report):

* seeds are ``0 .. seeds-1`` for every method, so every method sees the same sparse histories;
* a deterministic method (transfer, Step Law rule) runs once per experiment when the history is fixed
  (Setting A, ``full``), with every seed when it is not (``sparse``);
* a method that ignores the low-fidelity history runs once per seed in Setting A and its episodes count
  for both the ``full`` and ``sparse`` tables;
* a proposal off the target table is snapped to the nearest untried row and counted as invalid; a
  proposal of an already-evaluated row is replaced by the nearest untried row and counted as a repeat.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autollm_sampler.benchmark._candidates import candidate_index, resolve_proposal
from autollm_sampler.benchmark._methods import DEFAULT_METHODS, make_policy, method_fingerprint, method_spec
from autollm_sampler.benchmark._policies import BenchPolicy
from autollm_sampler.exceptions import ConfigError, RawDataError
from autollm_sampler.gym import LLMConfigEnv, Observation, TabularTask, experiments, list_ids, make, registry
from autollm_sampler.history import Trial

__all__ = [
    "RECORD_VERSION",
    "CACHE_NAME",
    "QUICK_FAMILIES",
    "BenchConfig",
    "EpisodeSpec",
    "Skip",
    "Plan",
    "plan_episodes",
    "run_episode",
    "run_benchmark",
    "load_cache",
]

logger = logging.getLogger(__name__)

#: Bump when the meaning of a cached record changes; older lines are then ignored (and rerun).
RECORD_VERSION = 1
CACHE_NAME = "episodes.jsonl"
#: The families of ``--quick`` (those registered), with fewer seeds.
QUICK_FAMILIES = ("steplaw-dense-v1", "admire-ift-v1")
QUICK_SEEDS = 3
#: Rough relative cost of one episode (measured), to start the slow ones first and balance the workers.
_WEIGHT = {"gp": 10.0, "agent": 5.0, "agent-distilled": 5.0, "agent-nohist": 3.0, "tpe-warm": 3.0, "cmaes-warm": 2.0}
_WIDE_TASKS = {"hwgpt-arch-v1": 5.0, "regmix-v1": 2.0, "admire-ift-v1": 2.0}


def _weight(e: EpisodeSpec) -> float:
    return _WEIGHT.get(e.method, 1.0) * _WIDE_TASKS.get(e.task_id, 1.0) * (4.0 if e.history == "full" else 1.0)


@dataclass
class BenchConfig:
    """What to run. ``None`` means "everything": every registered task, every method, both settings."""

    families: Sequence[str] | None = None
    methods: Sequence[str] | None = None
    settings: Sequence[str] = ("A", "B")
    histories: Sequence[str] = ("full", "sparse")
    seeds: int = 20
    out: Path = Path("docs/benchmarks")
    workers: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))
    quick: bool = False
    budget: int = 10
    budget_runs: float = 5.0

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        bad = [s for s in self.settings if s not in ("A", "B")]
        if bad or not self.settings:
            raise ConfigError(f"settings must be a non-empty subset of ('A', 'B'), got {list(self.settings)!r}")
        bad = [h for h in self.histories if h not in ("full", "sparse")]
        if bad or not self.histories:
            raise ConfigError(f"histories must be a non-empty subset of ('full', 'sparse'), got {list(self.histories)!r}")
        if self.seeds < 1:
            raise ConfigError(f"seeds must be >= 1, got {self.seeds!r}; BENCHMARK.md asks for at least 20")
        if self.workers < 1:
            raise ConfigError(f"workers must be >= 1, got {self.workers!r}")
        if self.budget < 1 or self.budget_runs <= 0:
            raise ConfigError(f"budget ({self.budget!r}) and budget_runs ({self.budget_runs!r}) must be positive")


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode to run; ``history`` is ``full``/``sparse``, ``-`` (history not used) or ``none`` (B)."""

    setting: str
    history: str
    task_id: str
    family: str
    target: str
    history_cells: tuple[str, ...]
    method: str
    seed: int
    budget: int = 10
    budget_runs: float = 5.0

    @property
    def key(self) -> str:
        budget = f"k{self.budget}" if self.setting == "A" else f"c{self.budget_runs:g}"
        return f"{self.setting}/{self.history}/{self.task_id}/{self.target}/{self.method}/{self.seed}/{budget}"


@dataclass(frozen=True)
class Skip:
    """A method (or task) left out of some scope, and why."""

    method: str
    scope: str
    reason: str


@dataclass
class Plan:
    episodes: list[EpisodeSpec]
    skipped: list[Skip]
    tasks: dict[str, str]  # task id -> family


def _resolve_tasks(families: Sequence[str] | None, skipped: list[Skip]) -> dict[str, TabularTask]:
    specs = registry()
    ids = list_ids()
    if families:
        wanted: list[str] = []
        for f in families:
            match = [i for i in ids if i == f or specs[i].family == f]
            if not match:
                raise ConfigError(f"unknown family or task {f!r}; registered tasks: {ids}")
            wanted.extend(m for m in match if m not in wanted)
        ids = wanted
    out: dict[str, TabularTask] = {}
    for tid in ids:
        try:
            task = make(tid)
        except (RawDataError, ImportError) as exc:  # raw data not here, an optional dependency missing
            skipped.append(Skip("*", tid, f"task could not be built: {type(exc).__name__}: {exc}"))
            continue
        # any other error building a task is a bug in its recipe: it fails the benchmark (not a skip line)
        if not experiments(task, "test"):
            skipped.append(Skip("*", tid, "task has no test experiments"))
            continue
        out[tid] = task
    return out


def plan_episodes(cfg: BenchConfig) -> Plan:
    """Every episode of ``cfg``, plus what is skipped and why (never silently)."""
    skipped: list[Skip] = []
    families = cfg.families
    if cfg.quick and families is None:
        families = [f for f in QUICK_FAMILIES if f in list_ids()]
    tasks = _resolve_tasks(families, skipped)
    names = list(cfg.methods) if cfg.methods else list(DEFAULT_METHODS)
    specs = {n: method_spec(n) for n in names}
    usable = []
    for n, spec in specs.items():
        reason = spec.unavailable()
        if reason:
            skipped.append(Skip(n, "all", reason))
        else:
            usable.append(n)
    seeds = list(range(cfg.seeds))
    episodes: list[EpisodeSpec] = []
    seen: set[str] = set()
    fam = registry()
    for tid, task in tasks.items():
        for n in usable:
            spec = specs[n]
            reason = spec.not_applicable(task)
            if reason:
                skipped.append(Skip(n, tid, reason))
                continue
            for setting in cfg.settings:
                if setting not in spec.settings:
                    continue
                variants = ["none"] if setting == "B" else (["-"] if not spec.uses_history else list(cfg.histories))
                for hist in variants:
                    run_seeds = seeds[:1] if (setting == "A" and spec.deterministic and hist == "full") else seeds
                    for exp in experiments(task, "test"):
                        for s in run_seeds:
                            ep = EpisodeSpec(setting, hist, tid, fam[tid].family, exp.target, exp.history_cells, n, s,
                                             cfg.budget, cfg.budget_runs)
                            if ep.key not in seen:
                                seen.add(ep.key)
                                episodes.append(ep)
    for n in usable:
        for setting in cfg.settings:
            if setting not in specs[n].settings:
                skipped.append(Skip(n, f"setting {setting}", f"runs in Setting {'/'.join(specs[n].settings)} only"))
    return Plan(episodes, skipped, {tid: fam[tid].family for tid in tasks})


# --------------------------------------------------------------------------------------------- one episode
_FULL_HISTORY: dict[tuple[str, str, tuple[str, ...]], list[Trial]] = {}


def _full_history(task: TabularTask, spec: EpisodeSpec) -> list[Trial]:
    """The ``full`` history of an experiment, built once per process and shared (read-only) by episodes.

    Identical to what ``LLMConfigEnv(history="full").reset()`` builds, without rebuilding ~2,000 trials per
    episode.
    """
    key = (task.id, spec.target, spec.history_cells)
    if key not in _FULL_HISTORY:
        env = LLMConfigEnv(task, spec.target, history="full", history_cells=list(spec.history_cells))
        obs, _ = env.reset(seed=0)
        _FULL_HISTORY[key] = list(obs.history.trials)
    return _FULL_HISTORY[key]


def _split_action(action: Any, target: str) -> tuple[dict[str, Any], str]:
    if isinstance(action, dict) and "params" in action and isinstance(action["params"], dict):
        return dict(action["params"]), str(action.get("cell", target))
    if not isinstance(action, dict):
        raise TypeError(f"a policy returned {action!r}; an action is a config dict or {{'params', 'cell'}}")
    return dict(action), target


def _rec_value(env: LLMConfigEnv, policy: BenchPolicy, obs: Observation) -> float:
    row, _ = env.target.snap(policy.recommend(obs))
    return float(env.target.values[row])


def run_episode(spec: EpisodeSpec, policy: BenchPolicy | None = None) -> dict[str, Any]:
    """Run one episode and return its record (everything the metrics need, JSON-serialisable)."""
    t0 = time.perf_counter()
    task = make(spec.task_id)
    sparse = spec.setting == "A" and spec.history == "sparse"
    env = LLMConfigEnv(task, spec.target, setting="B" if spec.setting == "B" else "A",
                       history="sparse" if sparse else "none", budget=spec.budget, budget_runs=spec.budget_runs,
                       history_cells=list(spec.history_cells))
    obs, _ = env.reset(seed=spec.seed)
    if spec.setting == "A" and spec.history == "full":
        obs.history.trials[0:0] = _full_history(task, spec)
    policy = policy if policy is not None else make_policy(spec.method)
    policy.reset(obs, seed=spec.seed)
    target = env.target
    steps: list[dict[str, Any]] = []
    rec0 = _rec_value(env, policy, obs) if spec.setting == "B" else None
    done = False
    max_steps = spec.budget if spec.setting == "A" else 100_000
    while not done and len(steps) < max_steps:
        if spec.setting == "B" and policy.wants_stop(obs):
            break
        policy.last_prediction = None
        params, cell_name = _split_action(policy.act(obs), target.name)
        pred = policy.last_prediction
        cell = task.cell(cell_name)
        index = candidate_index(task.id, cell_name, cell.space, cell.configs)
        unaffordable: set[int] = set()
        if spec.setting == "B":
            unaffordable = {int(i) for i in np.flatnonzero(cell.costs > obs.budget_left * (1 + 1e-9))}
        res = resolve_proposal(index, params, set(obs.tried.get(cell_name, set())), unaffordable)
        cost = float(cell.costs[res.row])
        if spec.setting == "B" and cost > obs.budget_left * (1 + 1e-9):
            break
        obs, _, terminated, truncated, info = env.step({"params": dict(cell.configs[res.row]), "cell": cell_name})
        step: dict[str, Any] = {"cell": cell_name, "target": cell_name == target.name, "row": res.row,
                                "value": float(info["value"]), "cost": cost, "invalid": res.invalid,
                                "repeat": res.repeat, "over_budget": res.over_budget}
        if pred is not None and not (res.invalid or res.repeat):  # the outcome of the predicted configuration
            step["pred"] = [round(pred[0], 6), round(pred[1], 6)]
        if spec.setting == "B":
            step["rec"] = _rec_value(env, policy, obs)
        steps.append(step)
        done = terminated or truncated
    final = env.recommend(policy.recommend(obs))["value"] if spec.setting == "B" else None
    return {
        "v": RECORD_VERSION, "key": spec.key, **{k: v for k, v in asdict(spec).items() if k != "history_cells"},
        "direction": task.direction, "optimum": target.optimum, "p90": target.p90, "target_cost": target.cost,
        "n_rows": len(target), "steps": steps, "rec0": rec0, "final": final, "fallbacks": int(policy.fallbacks),
        "wall_s": round(time.perf_counter() - t0, 4),
    }


# --------------------------------------------------------------------------------------------- many episodes
def load_cache(path: Path) -> dict[str, dict[str, Any]]:
    """Finished episodes of the current record version, by key (malformed or stale lines are ignored)."""
    out: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return out
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by an interrupted run
            if isinstance(rec, dict) and rec.get("v") == RECORD_VERSION and "key" in rec:
                out[rec["key"]] = rec
    return out


def _end_with_newline(path: Path) -> None:
    """Terminate a last line cut short by an interrupted run, so the next record starts on its own line."""
    if path.is_file() and path.stat().st_size > 0:
        with open(path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            last = fh.read(1)
        if last != b"\n":
            with open(path, "a", encoding="utf-8") as fh:
                fh.write("\n")


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    logging.getLogger("optuna").setLevel(logging.ERROR)


def _work(spec: EpisodeSpec) -> tuple[str, dict[str, Any] | None, str | None]:
    try:
        return spec.key, run_episode(spec), None
    except Exception as exc:  # not swallowed: logged with its traceback, listed in RESULTS.md, and `bench` exits 1
        logger.exception("episode %s failed", spec.key)
        return spec.key, None, f"{type(exc).__name__}: {exc}"


def _execute(todo: Sequence[EpisodeSpec], workers: int) -> Iterator[tuple[str, dict[str, Any] | None, str | None]]:
    if workers <= 1 or len(todo) <= 1:
        for spec in todo:
            yield _work(spec)
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes=min(workers, len(todo)), initializer=_init_worker) as pool:
        yield from pool.imap_unordered(_work, todo, chunksize=1)


def run_benchmark(
    cfg: BenchConfig,
    *,
    plan: Plan | None = None,
    progress: bool = True,
    on_error: Callable[[str, str], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Run (or resume) every planned episode.

    Returns:
        ``(records, errors)``: the records of every planned episode that has finished, in plan order, and
        ``{episode key: error}`` for episodes that raised (they are not cached, so a rerun retries them).
    """
    plan = plan or plan_episodes(cfg)
    cfg.out.mkdir(parents=True, exist_ok=True)
    cache_path = cfg.out / CACHE_NAME
    # an agent's episodes are reused only while its checkpoint is the one they were run with
    fps = {m: method_fingerprint(m) for m in {e.method for e in plan.episodes}}
    done = {k: r for k, r in load_cache(cache_path).items() if r.get("fp", "") == fps.get(r.get("method", ""), "")}
    todo = sorted((e for e in plan.episodes if e.key not in done), key=lambda e: -_weight(e))
    errors: dict[str, str] = {}
    bar: Any = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="bench", unit="episode", smoothing=0.05)
    _end_with_newline(cache_path)
    with open(cache_path, "a", encoding="utf-8") as fh:
        for key, rec, err in _execute(todo, cfg.workers):
            if rec is not None:
                rec["fp"] = fps.get(rec["method"], "")
                fh.write(json.dumps(rec) + "\n")
                fh.flush()
                done[key] = rec
            else:
                errors[key] = err or "unknown error"
                if on_error is not None:
                    on_error(key, errors[key])
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return [done[e.key] for e in plan.episodes if e.key in done], errors


def iter_records(records: Iterable[dict[str, Any]], **match: Any) -> Iterator[dict[str, Any]]:
    """Records whose fields equal every ``match`` item."""
    for r in records:
        if all(r.get(k) == v for k, v in match.items()):
            yield r
