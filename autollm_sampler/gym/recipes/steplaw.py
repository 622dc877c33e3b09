"""Step Law recipes: ``steplaw-dense-v1`` and ``steplaw-moe-v1`` (learning rate x batch size grids).

Source: Li et al., "Predictable Scale: Part I" (arXiv 2503.04715), repo ``step-law/steplaw``.
Objective: ``smooth loss`` (minimise). Configuration: peak learning rate (rounded to 3 significant digits,
as the raw values are rounded inconsistently) and batch size in sequences of 2,048 tokens. Cost: 6·N·D
training FLOPs (6·Na·D for MoE, Na = active parameters). Diverged runs are kept: they are real outcomes.
"""

from __future__ import annotations

import csv
import os
from typing import Any

from autollm_sampler.gym._data import raw_file, source_info
from autollm_sampler.gym._table import TabularTask, TaskMetadata
from autollm_sampler.gym.recipes._common import human, round_sig

__all__ = ["build_dense", "build_moe", "DENSE_ROWS", "DENSE_CELLS", "MOE_ROWS", "MOE_CELLS"]

DENSE_ROWS, DENSE_CELLS = 1911, 17
MOE_ROWS, MOE_CELLS = 708, 16


def _meta(description: str, cost_unit: str) -> TaskMetadata:
    info = source_info("steplaw")
    return TaskMetadata(
        objective="smooth loss",
        direction="minimize",
        cost_unit=cost_unit,
        citation=info["citation"],
        licence=info["licence"],
        description=description,
        source=f"https://github.com/{info['repo']} @ {info['commit'][:12]}",
    )


def _read(name: str, raw_dir: str | os.PathLike[str] | None) -> list[dict[str, Any]]:
    with open(raw_file("steplaw", name, raw_dir), newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        r = dict(r)
        r["lr"] = round_sig(float(r["lr"]), 3)
        r["bs"] = int(float(r["bs"]))
        out.append(r)
    return out


def build_dense(raw_dir: str | os.PathLike[str] | None = None) -> TabularTask:
    """Dense models: 17 (N, D) cells, 1,911 runs; fidelity axes ``n_params`` (N) and ``n_tokens`` (D)."""
    rows = _read("dense_lr_bs_loss.csv", raw_dir)
    task = TabularTask.from_table(
        rows,
        params={"lr": "lr", "batch_size": "bs"},
        fidelity={"n_params": "N", "n_tokens": "D"},
        objective="smooth loss",
        direction="minimize",
        cost=lambda r: 6.0 * float(r["N"]) * float(r["D"]),
        id="steplaw-dense-v1",
        metadata=_meta("Dense LLM pretraining: peak lr x batch size grid per (N, D) cell.", "FLOPs (6ND)"),
        cell_name=lambda f: f"N={human(f['n_params'])},D={human(f['n_tokens'])}",
        roles={"lr": "lr", "batch_size": "batch_size"},
    )
    _check_counts(task, DENSE_ROWS, DENSE_CELLS)
    return task


def build_moe(raw_dir: str | os.PathLike[str] | None = None) -> TabularTask:
    """MoE models (~2.15B total params): 4 sparsity settings x 4 token budgets = 16 cells, 708 runs.

    Fidelity axes: ``n_active_params`` (Na), ``n_tokens`` (D) and ``active_ratio`` (Na/N).
    """
    rows = _read("moe_lr_bs_loss.csv", raw_dir)
    names = {}
    for r in rows:
        names[(float(r["Na"]), float(r["D"]))] = r["moe_name"]
    task = TabularTask.from_table(
        rows,
        params={"lr": "lr", "batch_size": "bs"},
        fidelity={"n_active_params": "Na", "n_tokens": "D", "active_ratio": "Na/N"},
        objective="smooth loss",
        direction="minimize",
        cost=lambda r: 6.0 * float(r["Na"]) * float(r["D"]),
        id="steplaw-moe-v1",
        metadata=_meta("MoE LLM pretraining: peak lr x batch size grid per (sparsity, D) cell.", "FLOPs (6·Na·D)"),
        cell_name=lambda f: f"{names[(f['n_active_params'], f['n_tokens'])]},D={human(f['n_tokens'])}",
        roles={"lr": "lr", "batch_size": "batch_size"},
    )
    _check_counts(task, MOE_ROWS, MOE_CELLS)
    return task


def _check_counts(task: TabularTask, rows: int, cells: int) -> None:
    if task.n_rows != rows or len(task.cells) != cells:
        raise ValueError(
            f"{task.id}: built {task.n_rows} rows in {len(task.cells)} cells, expected {rows} rows in {cells} "
            "cells (gym_data/README.md); the raw file is not the pinned version"
        )
