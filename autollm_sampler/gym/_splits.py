"""The train/test experiment split of BENCHMARK.md, in one place.

An :class:`Experiment` is a target cell plus the cheaper cells whose runs form its low-fidelity history.
Test targets are never used as training targets. Training experiments also never see a test cell as
history (stricter than BENCHMARK.md requires), so nothing learned in training comes from a test table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from autollm_sampler.gym._table import Cell, TabularTask

__all__ = ["Experiment", "SPLITS", "is_test_target", "experiments", "register_split"]

CellRule = Callable[[Cell, TabularTask], bool]


@dataclass(frozen=True)
class Experiment:
    """One benchmark or training experiment: a target cell of a task and its history cells."""

    task_id: str
    target: str
    history_cells: tuple[str, ...]
    split: Literal["train", "test"]

    @property
    def key(self) -> str:
        return f"{self.task_id}:{self.target}"


def _largest(cell: Cell, task: TabularTask) -> bool:
    return cell.name == max(task.cells, key=lambda c: c.cost).name


#: family id -> predicate "is this cell a test target?" (everything else is a training target).
SPLITS: dict[str, CellRule] = {
    # Step Law dense: the two N = 1.07B cells and the three N = 537M cells are held out.
    "steplaw-dense-v1": lambda c, t: c.fidelity["n_params"] > 5e8,
    # Step Law MoE: the four D = 20B cells are held out.
    "steplaw-moe-v1": lambda c, t: c.fidelity["n_tokens"] >= 2e10,
    # ADMIRE IFT: 7B is the test target, 3B the training target (0.5B is history only).
    "admire-ift-v1": lambda c, t: c.fidelity["model_size"] >= 7e9,
    # RegMix: 1B is the test target, 60M the training target (1M is history only).
    "regmix-v1": lambda c, t: c.fidelity["n_params"] >= 1e9,
    # HW-GPT-Bench: L is the test target, M the training target (S is history only).
    "hwgpt-arch-v1": _largest,
}

#: Tasks whose cheapest cell is history only, never a training target.
_HISTORY_ONLY_CHEAPEST = {"admire-ift-v1", "regmix-v1", "hwgpt-arch-v1"}


def register_split(task_id: str, rule: CellRule | None = None, *, cheapest_history_only: bool = True) -> None:
    """Declare the split of a project-made or user task (default: its largest fidelity is the test)."""
    SPLITS[task_id] = rule or _largest
    if cheapest_history_only:
        _HISTORY_ONLY_CHEAPEST.add(task_id)


def is_test_target(task: TabularTask, cell: str | Cell) -> bool:
    c = task.cell(cell) if isinstance(cell, str) else cell
    rule = SPLITS.get(task.id, _largest)
    return bool(rule(c, task))


def experiments(task: TabularTask, split: Literal["train", "test"] = "test") -> list[Experiment]:
    """The experiments of one split for one task, cheapest target first."""
    out = []
    cheapest = min(task.cells, key=lambda c: c.cost).name
    for cell in task.cells:
        test = is_test_target(task, cell)
        if (split == "test") != test:
            continue
        if split == "train" and task.id in _HISTORY_ONLY_CHEAPEST and cell.name == cheapest:
            continue
        hist = [
            c.name
            for c in task.cheaper_cells(cell.name)
            if split == "test" or not is_test_target(task, c)
        ]
        out.append(Experiment(task.id, cell.name, tuple(hist), split))
    return out
