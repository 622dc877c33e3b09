"""Project-made tasks: ``nanolm-pretrain-v1`` and ``nanogrpo-v1``, built from tables shipped in the package.

Both tables were produced by this project on a CPU with the recipes in ``gym_data/recipes/`` (see
``docs/gym.md``, section "Project-made tasks") and ship as package data under ``gym/tables/``, so these
tasks need no raw data and no download: ``nanolm-pretrain-v1`` is the task a fresh install can always use.

* ``nanolm-pretrain-v1``: tiny byte-level Llama models pretrained on the Python standard library's
  sources. Configuration: peak learning rate x batch size (sequences of 64 bytes). Fidelity: non-embedding
  parameters ``n_params`` x token budget ``n_tokens``. Objective: validation loss in nats per byte
  (minimise). Cost: measured CPU seconds of training (``flops_6nd`` = 6ND is kept as a column).
* ``nanogrpo-v1``: GRPO post-training of tiny char-level policies on 2-digit addition. Configuration:
  learning rate x KL coefficient x group size x sampling temperature. Fidelity: ``n_params``. Objective:
  held-out exact-match pass@1 (maximise). Cost: measured CPU seconds of the GRPO updates.

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
from functools import cache
from importlib import resources
from typing import Any

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
    "runs",
    "metadata",
]

PRETRAIN_ID = "nanolm-pretrain-v1"
GRPO_ID = "nanogrpo-v1"
#: The task used when no raw data is present: it ships inside the package.
DEFAULT_TASK = PRETRAIN_ID
#: task id -> folder under ``autollm_sampler/gym/tables/``.
TABLE_DIRS = {PRETRAIN_ID: "nanolm_pretrain", GRPO_ID: "nanogrpo"}
#: Seed-0 rows and cells of the shipped tables (3 sizes x 2 budgets x 8 lr x 5 bs; 3 sizes x 54).
PRETRAIN_ROWS, PRETRAIN_CELLS = 240, 6
GRPO_ROWS, GRPO_CELLS = 162, 3


def _largest_model(cell: Cell, task: TabularTask) -> bool:
    return cell.fidelity["n_params"] >= max(c.fidelity["n_params"] for c in task.cells)


# The test split: the largest model size is held out (both token budgets for the pretraining task); the
# cheapest cell is history only, never a training target.
register_split(PRETRAIN_ID, _largest_model)
register_split(GRPO_ID, _largest_model)


def _read_text(task_id: str, name: str) -> str:
    if task_id not in TABLE_DIRS:
        raise KeyError(f"{task_id!r} is not a project-made task; choose one of {sorted(TABLE_DIRS)}")
    res = resources.files("autollm_sampler.gym").joinpath("tables", TABLE_DIRS[task_id], name)
    try:
        return res.read_text()
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
