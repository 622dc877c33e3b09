"""RegMix recipe: ``regmix-v1`` (pretraining data mixtures over 17 Pile domains at 1M / 60M / 1B parameters).

Source: Liu et al., "RegMix: Data Mixture as Regression for Language Model Pre-training" (arXiv 2407.01492),
repo ``sail-sg/regmix``, folder ``data/``. Licence: MIT.

* Join: each mixture file is matched to its loss file on ``index`` (indices are local to a file pair).
  A mixture without a loss row is dropped (and logged).
* Cells: ``1M`` = the 512 training mixtures plus the 256 test mixtures run at 1M parameters (768 rows);
  ``60M`` = the same 256 test mixtures at 60M; ``1B`` = 64 *different* mixtures at 1B. In the pinned files
  every 1B mixture has a loss row, so the 1B cell has 64 rows (gym_data/README.md says one lacks a loss row;
  the pinned ``test_pile_loss_1B.csv`` has rows for indices 0..63, so nothing is dropped).
* Configuration: one simplex parameter ``mixture`` over the 17 ``train_the_pile_*`` columns (renormalised to
  sum to exactly one; the raw weights are rounded to 3 decimals and sum to 1 +- 0.002).
* Fidelity axes: ``n_params`` (nominal 1e6, 6e7, 1e9) and ``n_tokens``. The token budgets are the paper's:
  the 1M and 60M models were trained on 1B tokens each, the 1B models on 25B tokens.
* Objective: any ``metric/*_val_loss`` column (minimised); default ``metric/the_pile_pile_cc_val_loss``
  (Pile-CC validation loss, the paper's default target).
* Cost: ``6 * n_params * n_tokens`` training FLOPs (nominal sizes; 6e15, 3.6e17 and 1.5e20 per run).

Example:
    >>> from autollm_sampler.gym.recipes import regmix
    >>> task = regmix.build()  # doctest: +SKIP
    >>> [(c.name, len(c)) for c in task.cells]  # doctest: +SKIP
    [('1M', 768), ('60M', 256), ('1B', 64)]
"""

from __future__ import annotations

import csv
import logging
import os
from typing import Any

from autollm_sampler.gym._data import raw_file, source_info
from autollm_sampler.gym._table import TabularTask, TaskMetadata
from autollm_sampler.gym.recipes._common import check_counts, pick_column

__all__ = ["build", "join_on_index", "ROWS", "CELLS", "ROWS_PER_CELL", "DEFAULT_OBJECTIVE", "SCALES", "N_COMPONENTS"]

logger = logging.getLogger(__name__)

DEFAULT_OBJECTIVE = "metric/the_pile_pile_cc_val_loss"
N_COMPONENTS = 17
#: cell name -> (nominal parameters, training tokens, [(mixture file, loss file), ...])
SCALES: dict[str, tuple[float, float, list[tuple[str, str]]]] = {
    "1M": (1e6, 1e9, [("train_mixture_1m.csv", "train_pile_loss_1m.csv"), ("test_mixture_1m.csv", "test_pile_loss_1m.csv")]),
    "60M": (6e7, 1e9, [("test_mixture_60m.csv", "test_pile_loss_60m.csv")]),
    "1B": (1e9, 25e9, [("test_mixture_1B.csv", "test_pile_loss_1B.csv")]),
}
ROWS_PER_CELL = {"1M": 768, "60M": 256, "1B": 64}
ROWS, CELLS = sum(ROWS_PER_CELL.values()), len(ROWS_PER_CELL)


def _read_csv(name: str, raw_dir: str | os.PathLike[str] | None) -> tuple[list[str], list[dict[str, str]]]:
    with open(raw_file("regmix", name, raw_dir), newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), [dict(r) for r in reader]


def join_on_index(
    mixes: list[dict[str, str]], losses: list[dict[str, str]], *, where: str = "regmix"
) -> tuple[list[dict[str, Any]], list[str]]:
    """Join mixture rows with loss rows on ``index``; returns the joined rows and the dropped indices.

    Raises:
        ValueError: when an index repeats in the loss rows.
    """
    by_index: dict[str, dict[str, str]] = {}
    for r in losses:
        key = r["index"].strip()
        if key in by_index:
            raise ValueError(f"{where}: duplicate index {key!r} in the loss rows")
        by_index[key] = r
    rows: list[dict[str, Any]] = []
    dropped: list[str] = []
    for m in mixes:
        key = m["index"].strip()
        if key in by_index:
            rows.append({**m, **by_index[key]})
        else:
            dropped.append(key)
    return rows, dropped


def _join(mix_file: str, loss_file: str, raw_dir: str | os.PathLike[str] | None) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """Rows of ``mix_file`` joined with ``loss_file`` on ``index``; returns (weight cols, metric cols, rows)."""
    mix_cols, mixes = _read_csv(mix_file, raw_dir)
    loss_cols, losses = _read_csv(loss_file, raw_dir)
    for name, cols in ((mix_file, mix_cols), (loss_file, loss_cols)):
        if "index" not in cols:
            raise ValueError(f"regmix/{name} has no 'index' column; it has {cols}")
    rows, dropped = join_on_index(mixes, losses, where=f"regmix/{loss_file}")
    if dropped:
        logger.info("regmix/%s: %d mixture(s) have no loss row in %s, dropped: %s", mix_file, len(dropped), loss_file, dropped)
    weights = [c for c in mix_cols if c.startswith("train_the_pile_")]
    metrics = [c for c in loss_cols if c.startswith("metric/")]
    return weights, metrics, rows


def build(
    raw_dir: str | os.PathLike[str] | None = None,
    *,
    objective: str = DEFAULT_OBJECTIVE,
) -> TabularTask:
    """Build ``regmix-v1``: 1,088 runs in 3 cells (1M: 768, 60M: 256, 1B: 64).

    Args:
        raw_dir: the raw-data directory (default: ``AUTOLLM_GYM_RAW``, then the user cache).
        objective: the ``metric/*_val_loss`` column to minimise.

    Raises:
        RawDataError: when the raw files are missing or differ from the pinned versions.
        ConfigError: when ``objective`` is not a validation-loss column present at every scale.
    """
    rows: list[dict[str, Any]] = []
    weight_sets: list[list[str]] = []
    metric_sets: list[set[str]] = []
    for cell, (n_params, n_tokens, pairs) in SCALES.items():
        for mix_file, loss_file in pairs:
            weights, metrics, joined = _join(mix_file, loss_file, raw_dir)
            weight_sets.append(weights)
            metric_sets.append(set(metrics))
            for r in joined:
                r["n_params"], r["n_tokens"], r["_cell"] = n_params, n_tokens, cell
            rows.extend(joined)
    weights = weight_sets[0]
    if len(weights) != N_COMPONENTS or any(sorted(w) != sorted(weights) for w in weight_sets):
        raise ValueError(f"regmix mixture files disagree on the {N_COMPONENTS} train_the_pile_* columns: {weight_sets}")
    common = sorted(set.intersection(*metric_sets))
    objective = pick_column("regmix-v1 objective", objective, common)
    info = source_info("regmix")
    meta = TaskMetadata(
        objective=objective,
        direction="minimize",
        cost_unit="FLOPs (6ND, nominal N; D = 1B tokens at 1M/60M, 25B at 1B)",
        citation=info["citation"],
        licence=info["licence"],
        description="Pretraining data mixture over 17 Pile domains (one simplex) at 1M, 60M and 1B parameters.",
        source=f"https://github.com/{info['repo']} @ {info['commit'][:12]}",
    )
    names = {(v[0], v[1]): k for k, v in SCALES.items()}
    task = TabularTask.from_table(
        rows,
        params={"mixture": weights},
        fidelity={"n_params": "n_params", "n_tokens": "n_tokens"},
        objective=objective,
        direction="minimize",
        cost=lambda r: 6.0 * float(r["n_params"]) * float(r["n_tokens"]),
        id="regmix-v1",
        metadata=meta,
        cell_name=lambda f: names[(f["n_params"], f["n_tokens"])],
        roles={"mixture": "mixture"},
    )
    check_counts(task.id, task.n_rows, len(task.cells), ROWS, CELLS)
    got = {c.name: len(c) for c in task.cells}
    if got != ROWS_PER_CELL:
        raise ValueError(f"regmix-v1: rows per cell {got}, expected {ROWS_PER_CELL}")
    return task
