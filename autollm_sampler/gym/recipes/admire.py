"""ADMIRE IFT recipe: ``admire-ift-v1`` (instruction-tuning data mixtures of Qwen2.5 0.5B / 3B / 7B).

Source: "ADMIRE-BayesOpt: Accelerated Data MIxture RE-weighting for Language Models with Bayesian
Optimization" (arXiv 2508.11551), repo ``xo28/ADMIRE-BayesOpt``, file ``admire_ift_runs/admire_ift_runs.csv``.
Licence: CC BY-NC-SA 4.0 (non-commercial, share-alike).

* Configuration: the 19 ``ratio_*`` columns form ONE simplex parameter named ``mixture`` (weights renormalised
  to sum to exactly one; the raw sums are within 1 +- 6e-4).
* Fidelity: one axis, ``model_size``, parsed from the ``model`` column (``Qwen2.5-0.5B`` -> 0.5e9, 3e9, 7e9).
  Cells are named ``"0.5B"``, ``"3B"`` and ``"7B"``.
* Objective: any ``metric_*`` column (all higher-is-better), default ``metric_avg_id+ood``, maximised.
* Cost: the ``train_time`` column of each run (about 95 / 259 / 537 units per run at 0.5B / 3B / 7B).

Example:
    >>> from autollm_sampler.gym.recipes import admire
    >>> task = admire.build()  # doctest: +SKIP
    >>> [(c.name, len(c)) for c in task.cells]  # doctest: +SKIP
    [('0.5B', 256), ('3B', 128), ('7B', 76)]
"""

from __future__ import annotations

import csv
import os
import re
from typing import Any

from autollm_sampler.gym._data import raw_file, source_info
from autollm_sampler.gym._table import TabularTask, TaskMetadata
from autollm_sampler.gym.recipes._common import check_counts, pick_column

__all__ = ["build", "ROWS", "CELLS", "ROWS_PER_MODEL", "DEFAULT_OBJECTIVE", "N_COMPONENTS"]

ROWS, CELLS = 460, 3
ROWS_PER_MODEL = {"0.5B": 256, "3B": 128, "7B": 76}
DEFAULT_OBJECTIVE = "metric_avg_id+ood"
N_COMPONENTS = 19
_MODEL_RE = re.compile(r"-(\d+(?:\.\d+)?)B$")


def model_size(model: str) -> float:
    """Parameter count encoded in a Qwen2.5 model name: ``"Qwen2.5-0.5B"`` -> ``5e8``.

    Raises:
        ValueError: naming the value when the name does not end in ``-<number>B``.
    """
    m = _MODEL_RE.search(model.strip())
    if m is None:
        raise ValueError(f"column 'model': cannot read a model size from {model!r}; expected e.g. 'Qwen2.5-3B'")
    return float(m.group(1)) * 1e9


def _cell_name(size: float) -> str:
    return f"{size / 1e9:g}B"


def _read(raw_dir: str | os.PathLike[str] | None) -> tuple[list[dict[str, Any]], list[str]]:
    raw_file("admire_ift_runs", "LICENSE.txt", raw_dir)  # the licence travels with the data; check it too
    path = raw_file("admire_ift_runs", "admire_ift_runs.csv", raw_dir)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        columns = list(reader.fieldnames or [])
        rows: list[dict[str, Any]] = [dict(r) for r in reader]
    for r in rows:
        r["model_size"] = model_size(r["model"])
    return rows, columns


def build(
    raw_dir: str | os.PathLike[str] | None = None,
    *,
    objective: str = DEFAULT_OBJECTIVE,
) -> TabularTask:
    """Build ``admire-ift-v1``: 460 runs in 3 cells (0.5B: 256, 3B: 128, 7B: 76).

    Args:
        raw_dir: the raw-data directory (default: ``AUTOLLM_GYM_RAW``, then the user cache).
        objective: the ``metric_*`` column to maximise.

    Raises:
        RawDataError: when the raw files are missing or differ from the pinned versions.
        ConfigError: when ``objective`` is not a ``metric_*`` column (the error lists them).
    """
    rows, columns = _read(raw_dir)
    ratios = [c for c in columns if c.startswith("ratio_")]
    if len(ratios) != N_COMPONENTS:
        raise ValueError(f"admire_ift_runs.csv has {len(ratios)} ratio_* columns, expected {N_COMPONENTS}")
    metrics = [c for c in columns if c.startswith("metric_")]
    objective = pick_column("admire-ift-v1 objective", objective, metrics)
    info = source_info("admire_ift_runs")
    meta = TaskMetadata(
        objective=objective,
        direction="maximize",
        cost_unit="train_time (as published)",
        citation=info["citation"],
        licence=info["licence"],
        description="Instruction tuning of Qwen2.5 base models: 19-source Tulu-3 SFT mixture (one simplex) "
        "per model size.",
        source=f"https://github.com/{info['repo']} @ {info['commit'][:12]}",
    )
    task = TabularTask.from_table(
        rows,
        params={"mixture": ratios},
        fidelity={"model_size": "model_size"},
        objective=objective,
        direction="maximize",
        cost="train_time",
        id="admire-ift-v1",
        metadata=meta,
        cell_name=lambda f: _cell_name(f["model_size"]),
        roles={"mixture": "mixture"},
    )
    check_counts(task.id, task.n_rows, len(task.cells), ROWS, CELLS)
    got = {c.name: len(c) for c in task.cells}
    if got != ROWS_PER_MODEL:
        raise ValueError(f"admire-ift-v1: rows per cell {got}, expected {ROWS_PER_MODEL} (gym_data/README.md)")
    return task
