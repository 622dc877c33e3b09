"""Trials, fidelities and histories, with JSON / JSONL / CSV round-trips.

A :class:`Trial` is one run: its configuration (``params``), where it ran (``fidelity``: named numeric
axes such as ``n_params`` and ``n_tokens``), what it measured (``value``), its ``state`` and its ``cost``.
A :class:`History` is an ordered list of trials with unique ids and a fixed set of fidelity axes.

Example:
    >>> h = History(fidelity_axes=("n_params",))
    >>> _ = h.add(Trial(id=0, params={"lr": 1e-3}, fidelity={"n_params": 1e8}, value=2.5))
    >>> History.from_jsonl(h.to_jsonl()).trials[0].value
    2.5
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from autollm_sampler.exceptions import InvalidHistoryError, InvalidTrialError
from autollm_sampler.space import SearchSpace, _format_validation_error

__all__ = ["TrialState", "Trial", "History", "fidelity_key"]

TrialState = Literal["complete", "pruned", "failed", "running"]


def fidelity_key(fidelity: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    """A hashable, order-independent key for a fidelity point (values to 10 significant digits)."""
    return tuple(sorted((str(k), float(f"{float(v):.10g}")) for k, v in fidelity.items()))


def _check_finite_mapping(field: str, data: Mapping[str, Any]) -> None:
    for k, v in data.items():
        tv = type(v)
        if tv is int or tv is str or tv is bool:  # the common cases, without the slow ABC check below
            continue
        if isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError(f"{field}.{k} is {v!r}; NaN and infinite values are not allowed")
        elif isinstance(v, Mapping):
            _check_finite_mapping(f"{field}.{k}", v)


class Trial(BaseModel):
    """One run of one configuration at one fidelity."""

    model_config = ConfigDict(extra="forbid")

    id: int | str
    params: dict[str, Any]
    fidelity: dict[str, float] = Field(default_factory=dict)
    value: float | None = None
    state: TrialState = "complete"
    cost: float | None = None
    attrs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("params")
    @classmethod
    def _params_finite(cls, v: dict[str, Any]) -> dict[str, Any]:
        _check_finite_mapping("params", v)
        return v

    @field_validator("fidelity")
    @classmethod
    def _fidelity_finite(cls, v: dict[str, float]) -> dict[str, float]:
        for k, x in v.items():
            if not math.isfinite(x):
                raise ValueError(f"fidelity axis {k!r} is {x!r}; it must be a finite number")
        return v

    @field_validator("cost")
    @classmethod
    def _cost_ok(cls, v: float | None) -> float | None:
        if v is not None and (not math.isfinite(v) or v < 0):
            raise ValueError(f"cost is {v!r}; it must be a finite number >= 0")
        return v

    @model_validator(mode="after")
    def _value_matches_state(self) -> Trial:
        if self.value is not None and not math.isfinite(self.value):
            if self.state == "complete":
                raise ValueError(
                    f"value is {self.value!r} for a complete trial; record it as state 'failed' instead"
                )
            self.value = None
        if self.state == "complete" and self.value is None:
            raise ValueError("a complete trial needs a value; use state 'failed' or 'running' otherwise")
        return self

    @classmethod
    def parse(cls, data: Mapping[str, Any], *, where: str = "trial") -> Trial:
        """Validate plain data into a trial; errors name ``where``, the field and the value."""
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise InvalidTrialError(_format_validation_error(where, exc)) from None

    @property
    def is_complete(self) -> bool:
        return self.state == "complete" and self.value is not None


class _IdIndex:
    """The set of trial ids (as strings) and the largest int id of a history's ``trials`` list."""

    __slots__ = ("ids", "max_int", "ref", "n")

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.max_int: int | None = None
        self.ref: list[Trial] | None = None
        self.n = -1

    def rebuild(self, trials: list[Trial]) -> None:
        self.ids, self.max_int = set(), None
        for t in trials:
            self.add(t.id)
        self.ref, self.n = trials, len(trials)

    def add(self, tid: int | str) -> None:
        self.ids.add(str(tid))
        if isinstance(tid, int) and (self.max_int is None or tid > self.max_int):
            self.max_int = tid

    def __deepcopy__(self, memo: dict[int, Any]) -> _IdIndex:
        return _IdIndex()  # a deep copy gets new trial lists; it rebuilds on first use

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _IdIndex)  # never makes two histories differ


class History(BaseModel):
    """An ordered collection of trials with unique ids and a fixed set of fidelity axes.

    If ``fidelity_axes`` is empty it is taken from the first trial that names any.
    """

    model_config = ConfigDict(extra="forbid")

    trials: list[Trial] = Field(default_factory=list)
    fidelity_axes: tuple[str, ...] = ()
    # Index of the trial ids, so that add() and next_id() stay O(1); rebuilt when ``trials`` was replaced or
    # changed length behind our back. Not part of equality (see __eq__).
    _idx: _IdIndex = PrivateAttr(default_factory=lambda: _IdIndex())

    @model_validator(mode="after")
    def _check(self) -> History:
        trials, self.trials = self.trials, []
        for t in trials:
            self.add(t)
        return self

    def __eq__(self, other: object) -> bool:
        # compare the data only, never the private id index
        if not isinstance(other, History):
            return NotImplemented
        return self.fidelity_axes == other.fidelity_axes and self.trials == other.trials

    __hash__ = None  # type: ignore[assignment]

    def _index(self) -> _IdIndex:
        idx = self._idx
        if idx.ref is not self.trials or idx.n != len(self.trials):
            idx.rebuild(self.trials)
        return idx

    # ------------------------------------------------------------------ mutation
    def add(self, trial: Trial | Mapping[str, Any]) -> Trial:
        """Append a trial, checking id uniqueness and fidelity axes."""
        t = trial if isinstance(trial, Trial) else Trial.parse(trial)
        idx = self._index()
        if str(t.id) in idx.ids:
            raise InvalidHistoryError(f"duplicate trial id {t.id!r}; every trial needs its own id")
        if not self.fidelity_axes and t.fidelity:
            self.fidelity_axes = tuple(t.fidelity)
        if self.fidelity_axes and t.fidelity:
            missing = [a for a in self.fidelity_axes if a not in t.fidelity]
            extra = [a for a in t.fidelity if a not in self.fidelity_axes]
            if missing or extra:
                raise InvalidHistoryError(
                    f"trial {t.id!r}: fidelity axes {sorted(t.fidelity)!r} do not match the history's "
                    f"{list(self.fidelity_axes)!r} (missing {missing!r}, unexpected {extra!r})"
                )
        self.trials.append(t)
        idx.add(t.id)
        idx.n = len(self.trials)
        return t

    def next_id(self) -> int:
        idx = self._index()
        return (idx.max_int + 1) if idx.max_int is not None else len(self.trials)

    def validate_against(self, space: SearchSpace, *, ignore_unknown: bool = False) -> History:
        """Check every trial's params against ``space``; returns a history with normalised params."""
        out = History(fidelity_axes=self.fidelity_axes)
        for t in self.trials:
            params = {k: v for k, v in t.params.items() if k in space.params} if ignore_unknown else t.params
            try:
                norm = space.validate_params(params)
            except InvalidTrialError as exc:
                raise InvalidTrialError(f"trial {t.id!r}: {exc}") from None
            out.add(t.model_copy(update={"params": norm}))
        return out

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self.trials)

    def __iter__(self) -> Iterator[Trial]:  # type: ignore[override]
        return iter(self.trials)

    def completed(self) -> list[Trial]:
        return [t for t in self.trials if t.is_complete]

    def cells(self) -> dict[tuple[tuple[str, float], ...], list[Trial]]:
        """Trials grouped by fidelity point."""
        out: dict[tuple[tuple[str, float], ...], list[Trial]] = {}
        for t in self.trials:
            out.setdefault(fidelity_key(t.fidelity), []).append(t)
        return out

    def at(self, fidelity: Mapping[str, float]) -> list[Trial]:
        key = fidelity_key(fidelity)
        return [t for t in self.trials if fidelity_key(t.fidelity) == key]

    def best(self, direction: str = "minimize", fidelity: Mapping[str, float] | None = None) -> Trial | None:
        pool = self.at(fidelity) if fidelity is not None else self.trials
        done = [t for t in pool if t.is_complete]
        if not done:
            return None
        sign = 1.0 if direction == "minimize" else -1.0
        return min(done, key=lambda t: sign * float(t.value))  # type: ignore[arg-type]

    # ------------------------------------------------------------------ I/O
    def to_json(self) -> str:
        return self.model_dump_json(indent=1)

    @classmethod
    def from_json(cls, text: str) -> History:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidHistoryError(f"history is not valid JSON: {exc}") from None
        if not isinstance(data, Mapping) or "trials" not in data:
            raise InvalidHistoryError("history JSON must be an object with a 'trials' list")
        h = cls(fidelity_axes=tuple(data.get("fidelity_axes", ())))
        for i, t in enumerate(data["trials"]):
            h.add(Trial.parse(t, where=f"trials[{i}]"))
        return h

    def to_jsonl(self) -> str:
        return "".join(t.model_dump_json() + "\n" for t in self.trials)

    @classmethod
    def from_jsonl(cls, text: str, *, source: str = "<history>") -> History:
        """Parse one trial per line. A missing ``id`` becomes the line number (0-based trial index)."""
        return cls.from_records(_jsonl_records(text, source), source=source)

    @classmethod
    def from_records(cls, records: Iterable[tuple[int, Mapping[str, Any]]], *, source: str = "<history>") -> History:
        h = cls()
        for n, (line_no, rec) in enumerate(records):
            rec = dict(rec)
            rec.setdefault("id", n)
            try:
                t = Trial.parse(rec, where=f"{source}, line {line_no}")
                h.add(t)
            except InvalidHistoryError as exc:
                raise InvalidHistoryError(f"{source}, line {line_no}: {exc}") from None
        return h

    @classmethod
    def from_csv(cls, text: str, *, source: str = "<history>") -> History:
        """Parse a CSV with columns ``param:<name>``, ``fidelity:<axis>``, ``value``, ``state``, ``cost``, ``id``.

        Bare column names that are not one of the reserved ones are read as parameters.
        """
        reader = csv.DictReader(io.StringIO(text))
        records: list[tuple[int, dict[str, Any]]] = []
        for line_no, row in enumerate(reader, start=2):
            rec: dict[str, Any] = {"params": {}, "fidelity": {}}
            for col, raw in row.items():
                if col is None or raw is None or raw == "":
                    continue
                col = col.strip()
                if col.startswith("fidelity:"):
                    rec["fidelity"][col[9:]] = _csv_number(raw, source, line_no, col)
                elif col in ("value", "cost"):
                    rec[col] = _csv_number(raw, source, line_no, col)
                elif col in ("state", "id"):
                    rec[col] = raw.strip()
                else:
                    name = col[6:] if col.startswith("param:") else col
                    rec["params"][name] = _csv_value(raw)
            records.append((line_no, rec))
        return cls.from_records(records, source=source)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> History:
        """Read a ``.jsonl``, ``.json`` or ``.csv`` history file."""
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as exc:
            raise InvalidHistoryError(f"cannot read history file {str(p)!r}: {exc.strerror}") from None
        if p.suffix.lower() == ".csv":
            return cls.from_csv(text, source=str(p))
        if p.suffix.lower() == ".json":
            return cls.from_json(text)
        return cls.from_jsonl(text, source=str(p))

    def save(self, path: str | os.PathLike[str]) -> None:
        p = Path(path)
        p.write_text(self.to_json() if p.suffix.lower() == ".json" else self.to_jsonl())


def _jsonl_records(text: str, source: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    # split on "\n" only: str.splitlines() also splits on U+0085, U+2028 ..., which JSON strings may hold raw
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidHistoryError(f"{source}, line {line_no}: not valid JSON ({exc.msg})") from None
        if not isinstance(rec, Mapping):
            raise InvalidHistoryError(f"{source}, line {line_no}: expected a JSON object, got {rec!r}")
        yield line_no, rec


def _csv_number(raw: str, source: str, line_no: int, col: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise InvalidHistoryError(f"{source}, line {line_no}: column {col!r} is {raw!r}, not a number") from None


def _csv_value(raw: str) -> Any:
    s = raw.strip()
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    try:
        f = float(s)
    except ValueError:
        return s
    return int(f) if f.is_integer() and "." not in s and "e" not in s.lower() else f
