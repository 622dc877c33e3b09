"""Task tables: configurations x fidelity cells -> outcomes and costs.

A :class:`TabularTask` is a list of :class:`Cell` objects. A cell is one fidelity level (for example Step
Law's N = 1.07B, D = 20B): its own search space, the configurations that were run there, their measured
outcomes and each run's cost. Everything in the gym (environments, baselines, training data) reads tasks
through this one class, and users bring their own sweep tables with :meth:`TabularTask.from_table`.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np

from autollm_sampler._io import parse_csv_value, parse_number, short_repr
from autollm_sampler._strict import strict_default
from autollm_sampler.candidates import CandidateIndex
from autollm_sampler.exceptions import InvalidSpaceError
from autollm_sampler.space import CategoricalParam, SearchSpace, SimplexParam, project_unit

logger = logging.getLogger(__name__)

__all__ = ["Cell", "TaskMetadata", "TabularTask", "SCHEMA_VERSION"]

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class TaskMetadata:
    """Descriptive metadata of a task (stored next to cached tables as ``metadata.json``)."""

    objective: str
    direction: Literal["minimize", "maximize"]
    cost_unit: str
    citation: str = ""
    licence: str = ""
    description: str = ""
    source: str = ""
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(eq=False)
class Cell:
    """One fidelity level of a task: a finite table of configurations and outcomes."""

    name: str
    fidelity: dict[str, float]
    space: SearchSpace
    configs: list[dict[str, Any]]
    values: np.ndarray
    costs: np.ndarray
    _index: CandidateIndex = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=float)
        self.costs = np.asarray(self.costs, dtype=float)
        if len(self.configs) != len(self.values) or len(self.values) != len(self.costs):
            raise ValueError(f"cell {self.name!r}: configs, values and costs differ in length")
        if len(self.configs) == 0:
            raise ValueError(f"cell {self.name!r} has no rows")
        if not np.all(np.isfinite(self.values)):
            raise ValueError(f"cell {self.name!r} has non-finite outcomes")
        self._index = CandidateIndex(self.space, self.configs)

    def __len__(self) -> int:
        return len(self.configs)

    @property
    def direction(self) -> str:
        return self.space.direction

    @property
    def cost(self) -> float:
        """The typical (mean) cost of one run in this cell."""
        return float(np.mean(self.costs))

    @property
    def unit(self) -> np.ndarray:
        """Every row's configuration in the unit cube, shape ``(rows, width)``."""
        return self._index.unit

    @property
    def index(self) -> CandidateIndex:
        """The cell's rows as a :class:`~autollm_sampler.candidates.CandidateIndex` (lookup, nearest rows)."""
        return self._index

    @cached_property
    def losses(self) -> np.ndarray:
        """Outcomes signed so that lower is better."""
        return self.space.sign * self.values

    @property
    def best_index(self) -> int:
        return int(np.argmin(self.losses))

    @property
    def optimum(self) -> float:
        """The best outcome in the table."""
        return float(self.values[self.best_index])

    @property
    def p90(self) -> float:
        """The 90th-percentile outcome, on the bad side (mirrored for maximisation)."""
        return float(self.space.sign * np.percentile(self.losses, 90))

    def regret(self, value: float) -> float:
        """Normalised regret of an outcome: ``(v - opt) / (p90 - opt)`` clipped to ``[0, 1]``."""
        s = self.space.sign
        opt = s * self.optimum
        denom = s * self.p90 - opt
        if denom <= 0:
            return 0.0 if s * value <= opt else 1.0
        return float(np.clip((s * value - opt) / denom, 0.0, 1.0))

    def gap(self, value: float) -> float:
        """Relative gap in percent (``best/opt - 1`` for min, ``1 - best/opt`` for max)."""
        opt = self.optimum
        if opt == 0:
            return float(abs(value - opt) * 100)
        if self.direction == "minimize":
            return float((value / opt - 1.0) * 100)
        return float((1.0 - value / opt) * 100)

    def find(self, params: Mapping[str, Any]) -> int | None:
        """Row index of an exact configuration, or ``None``."""
        return self._index.find(params)

    def snap(self, params: Mapping[str, Any]) -> tuple[int, bool]:
        """The row of ``params``: ``(index, exact)``; off-table proposals go to the nearest row."""
        idx = self.find(params)
        if idx is not None:
            return idx, True
        try:
            u = self.space.to_unit(self.space.validate_params(params, partial=True) | _fill(self, params))
        except (KeyError, TypeError, ValueError):  # InvalidTrialError is a ValueError
            # off-grid numbers, unknown names, partial mixtures: carry the values by name and magnitude
            try:
                u = project_unit(params, None, self.space)
            except (KeyError, TypeError, ValueError) as exc:
                # nothing readable: strict mode (tests, benchmark) raises; otherwise the centre row, said loudly
                if strict_default():
                    raise
                logger.warning("cell %r: proposal %s cannot be placed (%s); snapped from the centre of the space",
                               self.name, short_repr(dict(params), 200), exc)
                u = np.full(self.space.width, 0.5)
        return self._index.nearest(np.asarray(u, dtype=float)), False


def _fill(cell: Cell, params: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults (the first row's values) for parameters the proposal left out."""
    return {k: v for k, v in cell.configs[0].items() if k not in params}


class TabularTask:
    """A multi-fidelity task made of :class:`Cell` tables.

    Example:
        >>> rows = [
        ...     {"lr": 1e-3, "n": 1e6, "loss": 3.0}, {"lr": 1e-2, "n": 1e6, "loss": 2.8},
        ...     {"lr": 1e-3, "n": 1e7, "loss": 2.5}, {"lr": 1e-2, "n": 1e7, "loss": 2.6},
        ... ]
        >>> task = TabularTask.from_table(rows, params=["lr"], fidelity=["n"], objective="loss",
        ...                               direction="minimize", cost=lambda r: r["n"], id="toy-v1")
        >>> [c.name for c in task.cells], task.cell("n=1e+07").optimum
        (['n=1e+06', 'n=1e+07'], 2.5)
    """

    def __init__(self, id: str, cells: Sequence[Cell], metadata: TaskMetadata) -> None:
        if not cells:
            raise ValueError(f"task {id!r} has no cells")
        names = [c.name for c in cells]
        if len(set(names)) != len(names):
            raise ValueError(f"task {id!r} has duplicate cell names")
        axes = tuple(cells[0].fidelity)
        for c in cells:
            if tuple(c.fidelity) != axes:
                raise ValueError(f"task {id!r}: cell {c.name!r} has fidelity axes {tuple(c.fidelity)}, not {axes}")
        self.id = id
        self.cells: list[Cell] = sorted(cells, key=lambda c: (c.cost, c.name))
        self.metadata = metadata
        self.fidelity_axes = axes

    def __repr__(self) -> str:
        return f"TabularTask(id={self.id!r}, cells={len(self.cells)}, rows={self.n_rows})"

    @property
    def direction(self) -> str:
        return self.metadata.direction

    @property
    def n_rows(self) -> int:
        return sum(len(c) for c in self.cells)

    @property
    def cell_names(self) -> list[str]:
        return [c.name for c in self.cells]

    def cell(self, name: str) -> Cell:
        for c in self.cells:
            if c.name == name:
                return c
        import difflib

        close = difflib.get_close_matches(name, self.cell_names, n=3)
        hint = f"; did you mean {close}?" if close else f"; cells are {self.cell_names}"
        raise KeyError(f"task {self.id!r} has no cell {name!r}{hint}")

    def cheaper_cells(self, target: str) -> list[Cell]:
        """Cells whose per-run cost is below the target cell's (the low-fidelity evidence)."""
        t = self.cell(target)
        return [c for c in self.cells if c.name != t.name and c.cost < t.cost]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_table(
        cls,
        table: str | Path | Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]],
        *,
        params: Sequence[str] | Mapping[str, str | Sequence[str]],
        fidelity: Sequence[str] | Mapping[str, str],
        objective: str,
        direction: Literal["minimize", "maximize"] = "minimize",
        cost: str | Callable[[Mapping[str, Any]], float] | float | None = None,
        id: str = "custom-v1",
        metadata: TaskMetadata | None = None,
        cell_name: Callable[[Mapping[str, float]], str] | None = None,
        roles: Mapping[str, str] | None = None,
        cost_unit: str | None = None,
    ) -> TabularTask:
        """Build a task from a sweep table.

        Args:
            table: a CSV path, a list of row dicts, or a dict of columns.
            params: the configuration columns. A list names one column per parameter; a mapping names a
                parameter and either its column or a list of columns, which become one *simplex* parameter
                (mixture weights, renormalised to sum to one).
            fidelity: the fidelity columns (a list), or ``{axis: column}``.
            objective: the outcome column.
            direction: ``"minimize"`` or ``"maximize"``.
            cost: a cost column, a function of the row, a constant, or ``None``. A function receives the
                row with its numbers parsed (``int``, ``float`` or ``bool``; other text stays a string),
                keyed by column name, even when the table is a CSV file. ``None`` makes each run's cost the
                product of its cell's fidelity values (so the cell that is largest on every axis is the most
                expensive one, the default test target, and every smaller cell is its history); it needs
                every fidelity value > 0 and a single most expensive cell, and raises ``ValueError`` otherwise.
            id: the task id.
            metadata: full metadata; by default built from ``objective``, ``direction``, ``cost_unit``.
            cell_name: names a cell from its fidelity dict; by default ``"axis=value,..."``.
            roles: parameter roles by name, overriding the name-based guess.
            cost_unit: the unit of ``cost``; default ``"run"``, or ``"fidelity product"`` when ``cost=None``.

        Raises:
            ValueError: on missing columns, non-numeric fidelity/objective/cost values, a cost that is
                negative or not finite, or ``cost=None`` without a usable fidelity product (see ``cost``).

        Each cell's search space is inferred from the values found in that cell: a categorical of the
        distinct values (ordered when numeric) per column parameter, and a simplex per column group.
        """
        rows = _rows(table)
        if not rows:
            raise ValueError("the table has no rows")
        pmap: dict[str, str | list[str]] = (
            {p: p for p in params} if not isinstance(params, Mapping) else {k: (v if isinstance(v, str) else list(v)) for k, v in params.items()}
        )
        fmap = {f: f for f in fidelity} if not isinstance(fidelity, Mapping) else dict(fidelity)
        needed = {objective, *fmap.values()} | {c for v in pmap.values() for c in ([v] if isinstance(v, str) else v)}
        if isinstance(cost, str):
            needed.add(cost)
        missing = sorted(needed - set(rows[0]))
        if missing:
            raise ValueError(f"the table lacks column(s) {_short(missing, 200)}; it has {_short(sorted(rows[0]), 300)}")
        if cost_unit is None:
            cost_unit = "fidelity product" if cost is None else "run"
        meta = metadata or TaskMetadata(objective=objective, direction=direction, cost_unit=cost_unit)
        groups: dict[tuple[float, ...], list[Mapping[str, Any]]] = {}
        for r in rows:
            groups.setdefault(tuple(_num(r[c], c) for c in fmap.values()), []).append(r)
        cells = []
        for fid_vals, group in groups.items():
            fid = dict(zip(fmap, fid_vals, strict=True))
            name = cell_name(fid) if cell_name else ",".join(f"{a}={v:.4g}" for a, v in fid.items())
            cells.append(_build_cell(name, fid, group, pmap, objective, direction, cost, roles or {}))
        if cost is None:
            _check_fidelity_product(cells)
        return cls(id, cells, meta)


def _short(x: Any, n: int = 60) -> str:
    """A bounded ``repr`` for error messages."""
    r = repr(x)
    return r if len(r) <= n else r[: n - 3] + "..."


def _fidelity_product(name: str, fid: Mapping[str, float]) -> float:
    bad = {a: v for a, v in fid.items() if not (math.isfinite(v) and v > 0)}
    if bad:
        raise ValueError(
            f"cost=None makes each run's cost the product of its fidelity values, which needs values > 0; cell "
            f"{_short(name)} has {_short(bad)}. Pass cost= (a column, a function of the row or a constant)"
        )
    return float(math.prod(fid.values()))


def _check_fidelity_product(cells: Sequence[Cell]) -> None:
    top = max(c.cost for c in cells)
    tied = [c.name for c in cells if math.isclose(c.cost, top, rel_tol=1e-9)]
    if len(tied) > 1:
        raise ValueError(
            f"cost=None makes each run's cost the product of its fidelity values, but cells {_short(tied, 120)} tie "
            "for the largest, so no cell is the natural target. Pass cost= (a column, a function of the row or a "
            "constant)"
        )


def _call_cost(cost: Callable[[Mapping[str, Any]], float], row: Mapping[str, Any]) -> float:
    """``cost(row)`` with the row's numbers parsed (a CSV file gives text)."""
    out = cost({k: _cell_value(v) for k, v in row.items()})
    try:
        return float(out)
    except (TypeError, ValueError):
        raise ValueError(f"the cost function returned {_short(out)}, not a number, for a row of the table") from None


def _rows(table: Any) -> list[Mapping[str, Any]]:
    if isinstance(table, (str, Path)):
        with open(table, newline="", encoding="utf-8-sig") as fh:  # a BOM (Excel's "CSV UTF-8") is not a column name
            return list(csv.DictReader(fh))
    if isinstance(table, Mapping):
        cols = {k: list(v) for k, v in table.items()}
        n = len(next(iter(cols.values()))) if cols else 0
        return [{k: v[i] for k, v in cols.items()} for i in range(n)]
    return list(table)


def _num(x: Any, col: str) -> float:
    if isinstance(x, str):  # CSV text: the one number reading of autollm_sampler._io
        v = parse_number(x)
        if v is None:
            raise ValueError(f"column {_short(col)}: {_short(x)} is not a number")
        return v
    try:
        return float(x)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"column {_short(col)}: {_short(x)} is not a number") from None


def _cell_value(x: Any) -> Any:
    if isinstance(x, str):
        return parse_csv_value(x)  # the same reading as a CSV history's cells
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    return x


def _build_cell(
    name: str,
    fid: dict[str, float],
    group: list[Mapping[str, Any]],
    pmap: Mapping[str, str | list[str]],
    objective: str,
    direction: Literal["minimize", "maximize"],
    cost: str | Callable[[Mapping[str, Any]], float] | float | None,
    roles: Mapping[str, str],
) -> Cell:
    configs: list[dict[str, Any]] = []
    for r in group:
        cfg: dict[str, Any] = {}
        for pname, cols in pmap.items():
            if isinstance(cols, str):
                cfg[pname] = _cell_value(r[cols])
            else:
                w = np.array([max(_num(r[c], c), 0.0) for c in cols])
                w = w / w.sum() if w.sum() > 0 else np.full(len(cols), 1.0 / len(cols))
                cfg[pname] = {c: float(x) for c, x in zip(cols, w, strict=True)}
        configs.append(cfg)
    params: dict[str, Any] = {}
    for pname, cols in pmap.items():
        role = roles.get(pname)
        if isinstance(cols, str):
            distinct: dict[Any, Any] = {}
            for c in configs:
                distinct.setdefault(_key(c[pname]), c[pname])
            vals = list(distinct.values())
            if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
                vals.sort()
            try:
                params[pname] = CategoricalParam(choices=tuple(vals), role=role)
            except Exception as exc:
                raise InvalidSpaceError(f"cell {name!r}, parameter {pname!r}: {exc}") from None
        else:
            params[pname] = SimplexParam(components=tuple(cols), role=role or "mixture")
    space = SearchSpace(params=params, direction=direction)
    values = np.array([_num(r[objective], objective) for r in group])
    if cost is None:
        costs = np.full(len(group), _fidelity_product(name, fid))
    elif isinstance(cost, str):
        costs = np.array([_num(r[cost], cost) for r in group])
    elif callable(cost):
        costs = np.array([_call_cost(cost, r) for r in group])
    else:
        costs = np.full(len(group), _num(cost, "cost"))
    keep = np.isfinite(values)
    if not keep.all():
        configs = [c for c, k in zip(configs, keep, strict=True) if k]
        values, costs = values[keep], costs[keep]
    bad = ~(np.isfinite(costs) & (costs >= 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(
            f"cell {_short(name)}: the run {_short(configs[i], 120)} costs {float(costs[i])!r}; every run's cost "
            "must be a finite number >= 0"
        )
    return Cell(name=name, fidelity=fid, space=space, configs=configs, values=values, costs=costs)


def _key(v: Any) -> Any:
    if isinstance(v, bool):
        return ("b", v)
    if isinstance(v, (int, float)):
        return ("n", float(f"{float(v):.10g}"))
    return ("s", str(v))


def is_finite_number(x: Any) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False
