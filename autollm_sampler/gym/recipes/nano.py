"""Project-made tasks (``nanolm-pretrain-v1/-v2``, ``nanogrpo-v1/-v2``), built from tables shipped in the package.

The tables were produced by this project on a CPU with the recipes in ``gym_data/recipes/`` (see
``docs/gym.md``, section "Project-made tasks") and ship as package data under ``gym/tables/``, so these
tasks need no raw data and no download: ``nanolm-pretrain-v1`` is the task a fresh install can always use.

* ``nanolm-pretrain-v1``: tiny byte-level Llama models pretrained on the Python standard library's
  sources. Configuration: peak learning rate x batch size (sequences of 64 bytes). Fidelity: non-embedding
  parameters ``n_params`` x token budget ``n_tokens``. Objective: validation loss in nats per byte
  (minimise). Cost: measured CPU seconds of training (``flops_6nd`` = 6ND is kept as a column).
* ``nanogrpo-v1``: GRPO post-training of tiny char-level policies on 2-digit addition. Configuration:
  learning rate x KL coefficient x group size x sampling temperature. Fidelity: ``n_params``. Objective:
  held-out exact-match pass@1 (maximise). Cost: measured CPU seconds of the GRPO updates. Superseded by
  ``nanogrpo-v2`` (its optimum is one configuration at the two larger sizes and its smallest cell is noise).
* ``nanogrpo-v2``: GRPO on 3-digit addition from pretrained-then-SFT policies at 4 sizes. Configuration: lr x
  KL coefficient (zero included) x group size x temperature x clip range, a 32-point Sobol design shared by
  every cell. Fidelity: ``n_params`` x ``rl_updates`` (40 or 160). Objective: held-out pass@1 (maximise).
* ``nanolm-pretrain-v2``: as v1 at 4 sizes and budgets of 65,536 / 262,144 tokens, over a 24-point Sobol
  design of lr x batch size (1-64) x warmup share. Supersedes v1, whose best batch size was always the
  smallest.

The tables hold every run, including the repeat seeds used to measure noise; the tasks use the seed-0 run
of each configuration, one row per configuration. :func:`runs` returns all rows and :func:`metadata`
the recorded ``metadata.json`` (noise, compute, software versions).

Example:
    >>> from autollm_sampler.gym.recipes import nano
    >>> task = nano.build_pretrain()
    >>> len(task.cells), task.direction
    (6, 'minimize')
"""

from __future__ import annotations

import csv
import io
import json
import math
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from autollm_sampler.exceptions import RawDataError
from autollm_sampler.gym._splits import register_split
from autollm_sampler.gym._table import Cell, TabularTask, TaskMetadata
from autollm_sampler.gym.recipes._common import human

__all__ = [
    "PRETRAIN_ID",
    "GRPO_ID",
    "DEFAULT_TASK",
    "TABLE_DIRS",
    "PRETRAIN_ROWS",
    "PRETRAIN_CELLS",
    "GRPO_ROWS",
    "GRPO_CELLS",
    "build_pretrain",
    "build_grpo",
    "PRETRAIN2_ID",
    "GRPO2_ID",
    "PRETRAIN2_ROWS",
    "PRETRAIN2_CELLS",
    "GRPO2_ROWS",
    "GRPO2_CELLS",
    "build_pretrain_v2",
    "build_grpo_v2",
    "runs",
    "metadata",
    "informativeness",
]

PRETRAIN_ID = "nanolm-pretrain-v1"
GRPO_ID = "nanogrpo-v1"
PRETRAIN2_ID = "nanolm-pretrain-v2"
GRPO2_ID = "nanogrpo-v2"
#: The task used when no raw data is present: it ships inside the package.
DEFAULT_TASK = PRETRAIN_ID
#: task id -> folder under ``autollm_sampler/gym/tables/``.
TABLE_DIRS = {PRETRAIN_ID: "nanolm_pretrain", GRPO_ID: "nanogrpo",
              PRETRAIN2_ID: "nanolm_pretrain_v2", GRPO2_ID: "nanogrpo_v2"}
#: Seed-0 rows and cells of the shipped tables (3 sizes x 2 budgets x 8 lr x 5 bs; 3 sizes x 54;
#: 4 sizes x 2 budgets x 24 Sobol points; 4 sizes x 2 update counts x 32 Sobol points).
PRETRAIN_ROWS, PRETRAIN_CELLS = 240, 6
GRPO_ROWS, GRPO_CELLS = 162, 3
PRETRAIN2_ROWS, PRETRAIN2_CELLS = 192, 8
GRPO2_ROWS, GRPO2_CELLS = 256, 8

#: task id -> (parameter columns, fidelity columns, objective column) of its table.
_COLUMNS: dict[str, tuple[tuple[str, ...], tuple[str, ...], str]] = {
    PRETRAIN_ID: (("lr", "batch_size"), ("n_params", "n_tokens"), "val_loss"),
    GRPO_ID: (("lr", "kl_coef", "group_size", "temperature"), ("n_params",), "accuracy"),
    PRETRAIN2_ID: (("lr", "batch_size", "warmup_frac"), ("n_params", "n_tokens"), "val_loss"),
    GRPO2_ID: (("lr", "kl_coef", "group_size", "temperature", "clip_eps"), ("n_params", "rl_updates"), "accuracy"),
}


def _largest_model(cell: Cell, task: TabularTask) -> bool:
    return cell.fidelity["n_params"] >= max(c.fidelity["n_params"] for c in task.cells)


# The test split: the largest model size is held out (both token budgets for the pretraining task); the
# cheapest cell is history only, never a training target.
register_split(PRETRAIN_ID, _largest_model)
register_split(GRPO_ID, _largest_model)
register_split(PRETRAIN2_ID, _largest_model)
register_split(GRPO2_ID, _largest_model)


def _read_text(task_id: str, name: str) -> str:
    if task_id not in TABLE_DIRS:
        raise KeyError(f"{task_id!r} is not a project-made task; choose one of {sorted(TABLE_DIRS)}")
    res = resources.files("autollm_sampler.gym").joinpath("tables", TABLE_DIRS[task_id], name)
    try:
        return res.read_text(encoding="utf-8")
    except (FileNotFoundError, OSError):
        raise RawDataError(
            f"{task_id}: the shipped table {TABLE_DIRS[task_id]}/{name} is missing from the installed package; "
            "reinstall autollm-sampler, or rebuild it with the recipe in gym_data/recipes/"
        ) from None


@cache
def metadata(task_id: str) -> dict[str, Any]:
    """The recorded ``metadata.json`` of a project-made task (schema, noise, compute, versions)."""
    return json.loads(_read_text(task_id, "metadata.json"))  # type: ignore[no-any-return]


def runs(task_id: str) -> list[dict[str, str]]:
    """Every run of a project-made task's table, repeat seeds included, as CSV row dicts."""
    return list(csv.DictReader(io.StringIO(_read_text(task_id, "table.csv"))))


def _task_meta(task_id: str) -> TaskMetadata:
    m = metadata(task_id)
    return TaskMetadata(
        objective=m["objective"],
        direction=m["direction"],
        cost_unit=m["cost_unit"],
        citation=m["citation"],
        licence=m["licence"],
        description=m["description"],
        source=m["how_made"],
        schema_version=int(m["schema_version"]),
    )


def _seed0(task_id: str) -> list[dict[str, str]]:
    rows = [r for r in runs(task_id) if int(r["seed"]) == 0]
    if not rows:
        raise RawDataError(f"{task_id}: the shipped table has no seed-0 rows; rebuild it with its recipe")
    return rows


def build_pretrain() -> TabularTask:
    """``nanolm-pretrain-v1``: lr x batch size per (n_params, n_tokens) cell; validation loss (min)."""
    return TabularTask.from_table(
        _seed0(PRETRAIN_ID),
        params={"lr": "lr", "batch_size": "batch_size"},
        fidelity={"n_params": "n_params", "n_tokens": "n_tokens"},
        objective="val_loss",
        direction="minimize",
        cost="train_cpu_s",
        id=PRETRAIN_ID,
        metadata=_task_meta(PRETRAIN_ID),
        cell_name=lambda f: f"N={human(f['n_params'])},D={human(f['n_tokens'])}",
        roles={"lr": "lr", "batch_size": "batch_size"},
    )


def build_grpo() -> TabularTask:
    """``nanogrpo-v1``: lr x KL coef x group size x temperature per model size; held-out pass@1 (max)."""
    return TabularTask.from_table(
        _seed0(GRPO_ID),
        params={"lr": "lr", "kl_coef": "kl_coef", "group_size": "group_size", "temperature": "temperature"},
        fidelity={"n_params": "n_params"},
        objective="accuracy",
        direction="maximize",
        cost="train_cpu_s",
        id=GRPO_ID,
        metadata=_task_meta(GRPO_ID),
        cell_name=lambda f: f"N={human(f['n_params'])}",
        roles={"lr": "lr", "kl_coef": "kl_coef", "group_size": "group_size", "temperature": "temperature"},
    )


def build_pretrain_v2() -> TabularTask:
    """``nanolm-pretrain-v2``: lr x batch size x warmup share per (n_params, n_tokens) cell; val loss (min)."""
    return TabularTask.from_table(
        _seed0(PRETRAIN2_ID),
        params={"lr": "lr", "batch_size": "batch_size", "warmup_frac": "warmup_frac"},
        fidelity={"n_params": "n_params", "n_tokens": "n_tokens"},
        objective="val_loss",
        direction="minimize",
        cost="train_cpu_s",
        id=PRETRAIN2_ID,
        metadata=_task_meta(PRETRAIN2_ID),
        cell_name=lambda f: f"N={human(f['n_params'])},D={human(f['n_tokens'])}",
        roles={"lr": "lr", "batch_size": "batch_size", "warmup_frac": "warmup"},
    )


def build_grpo_v2() -> TabularTask:
    """``nanogrpo-v2``: lr x KL x group size x temperature x clip range per (n_params, rl_updates); pass@1 (max)."""
    params = _COLUMNS[GRPO2_ID][0]
    return TabularTask.from_table(
        _seed0(GRPO2_ID),
        params={p: p for p in params},
        fidelity={"n_params": "n_params", "rl_updates": "rl_updates"},
        objective="accuracy",
        direction="maximize",
        cost="train_cpu_s",
        id=GRPO2_ID,
        metadata=_task_meta(GRPO2_ID),
        cell_name=lambda f: f"N={human(f['n_params'])},U={int(f['rl_updates'])}",
        roles={"lr": "lr", "kl_coef": "kl_coef", "group_size": "group_size", "temperature": "temperature",
               "clip_eps": "other"},
    )


_BUILDERS = {PRETRAIN_ID: build_pretrain, GRPO_ID: build_grpo, PRETRAIN2_ID: build_pretrain_v2,
             GRPO2_ID: build_grpo_v2}


def _cell_noise(task_id: str, task: TabularTask) -> dict[str, list[float]]:
    """cell name -> |seed 0 - seed 1| of every repeated configuration in that cell."""
    params, fid, obj = _COLUMNS[task_id]
    by: dict[tuple[str, ...], dict[int, float]] = {}
    for r in runs(task_id):
        key = tuple(r[c] for c in fid + params)
        by.setdefault(key, {})[int(r["seed"])] = float(r[obj])
    name_of = {tuple(repr(float(c.fidelity[f])) for f in fid): c.name for c in task.cells}
    out: dict[str, list[float]] = {c.name: [] for c in task.cells}
    for key, seeds in by.items():
        if 0 in seeds and 1 in seeds:
            out[name_of[tuple(repr(float(v)) for v in key[: len(fid)])]].append(abs(seeds[0] - seeds[1]))
    return out


def _robust_sd(diffs: list[float]) -> float:
    """Per-run sd from |seed 0 - seed 1| pairs, read from the median pair (0.954 = median |N(0, 2)|)."""
    return float(np.median(diffs)) / 0.9539 if diffs else float("nan")


def informativeness(task_id: str) -> dict[str, Any]:
    """How much signal a project-made task carries, computed from its shipped table.

    Returns a dict with, for the most expensive cell (``largest``): its best and p90 outcome (the benchmark's
    regret scale), the gap between them, the run-to-run noise (sd from the repeat seeds: ``noise_sd`` over
    the whole table, ``cell_noise_sd`` in that cell, both read from the median pair so that a few unstable
    configurations do not inflate them) and the gap in units of each; for each cheaper neighbour (one step
    down one fidelity axis): its best configuration, which parameters differ from the largest cell's best,
    and what that configuration scores in the largest cell; and per parameter, the cells whose best sits at
    the edge of the design's range.
    """
    if task_id not in _COLUMNS:
        raise KeyError(f"{task_id!r} is not a project-made task; choose one of {sorted(_COLUMNS)}")
    task = _BUILDERS[task_id]()
    params, fid, _ = _COLUMNS[task_id]
    noise = _cell_noise(task_id, task)
    pooled = [d for ds in noise.values() for d in ds]
    top = max(task.cells, key=lambda c: c.cost)
    best = top.configs[top.best_index]
    sd = _robust_sd(pooled)
    cell_sd = _robust_sd(noise[top.name])
    gap = abs(top.p90 - top.optimum)
    median_gap = abs(float(np.median(top.values)) - top.optimum)
    out: dict[str, Any] = {
        "task_id": task_id,
        "largest": {"cell": top.name, "best": top.optimum, "best_config": best, "p90": top.p90,
                    "p90_gap": gap, "median": float(np.median(top.values)), "median_gap": median_gap,
                    "noise_sd": sd, "cell_noise_sd": cell_sd, "noise_pairs": len(pooled),
                    "p90_gap_over_noise": gap / sd if sd > 0 else math.inf,
                    "median_gap_over_noise": median_gap / sd if sd > 0 else math.inf},
        "neighbours": [],
        "edges": {},
    }
    for axis in fid:
        lower = sorted({c.fidelity[axis] for c in task.cells if c.fidelity[axis] < top.fidelity[axis]})
        if not lower:
            continue
        want = {**top.fidelity, axis: lower[-1]}
        nb = next(c for c in task.cells if all(c.fidelity[f] == want[f] for f in fid))
        nb_best = nb.configs[nb.best_index]
        at_top = top.find(nb_best)
        value = float(top.values[at_top]) if at_top is not None else float("nan")
        differ = [p for p in params if not math.isclose(float(nb_best[p]), float(best[p]), rel_tol=1e-9)]
        out["neighbours"].append({"cell": nb.name, "axis": axis, "best_config": nb_best, "differs_on": differ,
                                  "its_value_in_largest": value,
                                  "loss_in_noise_sd": abs(top.optimum - value) / sd if sd > 0 else math.inf})
    for p in params:
        lo = min(float(c[p]) for cell in task.cells for c in cell.configs)
        hi = max(float(c[p]) for cell in task.cells for c in cell.configs)
        at = [cell.name for cell in task.cells
              if float(cell.configs[cell.best_index][p]) in (lo, hi)]
        out["edges"][p] = {"range": [lo, hi], "cells_at_edge": at, "every_cell": len(at) == len(task.cells)}
    return out
