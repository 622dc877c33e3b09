"""Stage 1, curate: the training experiments, from the gym's *training* split only, plus augmentation.

Each curated experiment is a small JSON-able spec, so the stage output (``curate.json``) is tiny and the
experiments are rebuilt deterministically later. Augmentations against overfitting to a few dozen real cells:

* random sub-grids of the target table (10-50% of rows dropped);
* sparse and thinned histories, and random subsets of the history cells;
* perturbed outcomes: a random increasing affine map of every value plus small multiplicative noise
  (ranks mostly preserved, units and scale changed);
* synthetic tasks from the prior in :mod:`training.synthetic`.

Guarantee (checked here, and tested): no test target of the benchmark split is ever a training target,
and no training target sits at a test target's fidelity in another version of the same task (the v1 and
v2 nano tasks share model sizes: the v2 N = 222K pretraining cells are v1's test size and the v2 N = 160K
GRPO cells are within 1% of v1's, so they are left out; see :func:`sibling_test_fidelities`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from autollm_sampler import gym
from autollm_sampler.gym import Cell, TabularTask
from training.config import PipelineConfig
from training.synthetic import make_synthetic

__all__ = ["ExperimentSpec", "curate", "materialize"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExperimentSpec:
    """A training experiment: where it comes from and how it is augmented."""

    source: str  # a registered task id, or "synthetic:<family>:<seed>"
    target: str
    history_cells: tuple[str, ...]
    history: str  # full | sparse
    sparse_n: int
    drop_target_frac: float
    perturb: bool
    seed: int

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["history_cells"] = list(self.history_cells)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExperimentSpec:
        return cls(**{**d, "history_cells": tuple(d["history_cells"])})


def _load_task(source: str, raw_dir: str | None) -> TabularTask:
    if source.startswith("synthetic:"):
        _, family, seed = source.split(":")
        return make_synthetic(family, int(seed))
    return gym.make(source, raw_dir=raw_dir)


SIBLING_TOL = 0.05  # relative distance on every shared fidelity axis that counts as "the same size"


def sibling_test_fidelities(task_id: str, raw_dir: str | None) -> list[dict[str, float]]:
    """Fidelities of the test targets of the *other* registered versions of ``task_id`` (``x-v1`` for ``x-v2``)."""
    stem = re.sub(r"-v\d+$", "", task_id)
    out: list[dict[str, float]] = []
    for other in gym.list_ids():
        if other == task_id or re.sub(r"-v\d+$", "", other) != stem:
            continue
        try:
            sibling = gym.make(other, raw_dir=raw_dir)
        except Exception as exc:  # noqa: BLE001 - without its data a sibling cannot be benchmarked either
            logger.warning("curate: cannot build %s to check %s against its test sizes (%s)", other, task_id, exc)
            continue
        tests = [dict(sibling.cell(exp.target).fidelity) for exp in gym.experiments(sibling, "test")]
        trains = [dict(sibling.cell(exp.target).fidelity) for exp in gym.experiments(sibling, "train")]
        # the held-out axes: those whose test values no training target has (the model size, for "largest
        # model held out"); a token budget shared by both splits says nothing about the size held out
        held = {a for a in tests[0] if not {t[a] for t in tests} & {t.get(a) for t in trains}} if tests else set()
        out += [{a: v for a, v in t.items() if a in held or not held} for t in tests]
    return out


def near_fidelity(fid: dict[str, float], others: list[dict[str, float]], tol: float = SIBLING_TOL) -> bool:
    """Whether ``fid`` matches one of ``others`` within ``tol`` (relative) on every axis they share."""
    for other in others:
        shared = set(fid) & set(other)
        if shared and all(abs(fid[a] - other[a]) <= tol * max(abs(other[a]), 1e-12) for a in shared):
            return True
    return False


def curate(cfg: PipelineConfig) -> list[ExperimentSpec]:
    """All training experiments of a configuration (deterministic in ``cfg.seed``)."""
    rng = np.random.default_rng([cfg.seed, 1])
    c = cfg.curate
    specs: list[ExperimentSpec] = []
    available = set(gym.list_ids())
    for task_id in c.real_tasks:
        if task_id not in available:
            logger.warning("curate: task %s is not registered; skipped", task_id)
            continue
        try:
            task = gym.make(task_id, raw_dir=cfg.raw_dir)
        except Exception as exc:  # missing raw data for one family should not stop the pipeline
            logger.warning("curate: cannot build %s (%s); skipped", task_id, exc)
            continue
        sibling_tests = sibling_test_fidelities(task_id, cfg.raw_dir)
        for exp in gym.experiments(task, "train"):
            if gym.is_test_target(task, exp.target):  # belt and braces: never train on a test target
                raise AssertionError(f"{task_id}:{exp.target} is a test target")
            if near_fidelity(dict(task.cell(exp.target).fidelity), sibling_tests):
                logger.info("curate: %s:%s left out (a test size of another version of the task)", task_id, exp.target)
                continue
            for a in range(c.augment_per_experiment):
                specs.append(_augment(task_id, exp.target, list(exp.history_cells), a == 0, rng, c.sparse_prob))
    for i in range(c.synthetic_tasks):
        family = c.synthetic_families[i % len(c.synthetic_families)]
        seed = int(rng.integers(1 << 30))
        task = make_synthetic(family, seed)
        target = max(task.cells, key=lambda cell: cell.cost).name
        hist = [cell.name for cell in task.cheaper_cells(target)]
        specs.append(_augment(f"synthetic:{family}:{seed}", target, hist, True, rng, c.sparse_prob))
    logger.info("curated %d training experiments", len(specs))
    return specs


def _augment(source: str, target: str, hist: list[str], plain: bool, rng: np.random.Generator, sparse_prob: float) -> ExperimentSpec:
    if plain:
        return ExperimentSpec(source, target, tuple(hist), "full", 20, 0.0, False, int(rng.integers(1 << 30)))
    keep_hist = [h for h in hist if rng.random() > 0.25] if len(hist) > 1 else hist
    if hist and not keep_hist:
        keep_hist = [hist[-1]]
    return ExperimentSpec(
        source=source,
        target=target,
        history_cells=tuple(keep_hist),
        history="sparse" if rng.random() < sparse_prob else "full",
        sparse_n=int(rng.integers(8, 40)),
        drop_target_frac=float(rng.uniform(0.1, 0.5)) if rng.random() < 0.5 else 0.0,
        perturb=bool(rng.random() < 0.5),
        seed=int(rng.integers(1 << 30)),
    )


def materialize(spec: ExperimentSpec, raw_dir: str | None = None) -> tuple[TabularTask, gym.LLMConfigEnv]:
    """Rebuild the (augmented) task and its Setting-A environment from a spec."""
    task = _load_task(spec.source, raw_dir)
    rng = np.random.default_rng(spec.seed)
    if spec.drop_target_frac > 0 or spec.perturb:
        task = _augmented_task(task, spec, rng)
    env = gym.LLMConfigEnv(task, spec.target, history=spec.history, sparse_n=spec.sparse_n,  # type: ignore[arg-type]
                           history_cells=list(spec.history_cells), budget=10)
    return task, env


def _augmented_task(task: TabularTask, spec: ExperimentSpec, rng: np.random.Generator) -> TabularTask:
    keep = {spec.target, *spec.history_cells}
    scale = float(np.exp(rng.uniform(-0.7, 0.7)))
    shift = float(rng.normal(0, 0.5))
    noise = float(rng.uniform(0.0, 0.004))
    cells = []
    for cell in task.cells:
        if cell.name not in keep:
            continue
        idx = np.arange(len(cell))
        if cell.name == spec.target and spec.drop_target_frac > 0 and len(cell) > 10:
            idx = np.sort(rng.choice(len(cell), size=max(8, int(len(cell) * (1 - spec.drop_target_frac))), replace=False))
        values = cell.values[idx].copy()
        if spec.perturb:
            values = shift + scale * values * (1 + rng.normal(0, noise, len(values)))
        cells.append(Cell(name=cell.name, fidelity=dict(cell.fidelity), space=cell.space,
                          configs=[cell.configs[i] for i in idx], values=values, costs=cell.costs[idx]))
    return TabularTask(task.id, cells, task.metadata)
