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
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from autollm_sampler._io import (
    JSONInputError,
    loads_json,
    parse_csv_value,
    parse_number,
    path_name,
    read_text_file,
    short_repr,
)
from autollm_sampler.exceptions import InvalidHistoryError, InvalidTrialError
from autollm_sampler.space import (
    SIMPLEX_TOL,
    CategoricalParam,
    FloatParam,
    IntParam,
    SearchSpace,
    SimplexParam,
)

__all__ = ["TrialState", "Trial", "History", "FidelityPoint", "fidelity_key", "check_params", "read_history", "parse_csv_value"]

TrialState = Literal["complete", "pruned", "failed", "running"]


def _number_text(v: Any) -> Any:
    """A numeric field given as text (``"1e8"``, as csv.DictReader gives it) is read once, here."""
    if isinstance(v, str):
        x = parse_number(v)
        return v if x is None else x
    if isinstance(v, (np.integer, np.floating)) and not isinstance(v, np.bool_):
        return v.item()
    return v


#: A number field: an int or a float (or numeric text); never a bool, never other text.
Number = Annotated[float, Strict(), BeforeValidator(_number_text)]


_FKEYS: dict[tuple[Any, ...], tuple[tuple[str, float], ...]] = {}


class FidelityPoint(dict):  # type: ignore[type-arg]
    """A fidelity dict that remembers its :func:`fidelity_key` (forgotten on any change).

    The integrations build their histories' fidelities as these: the agent asks for the key of every
    trial's fidelity several times per proposal. It is a plain ``dict`` in every other respect.
    """

    __slots__ = ("_key",)
    _key: tuple[tuple[str, float], ...] | None

    def __setitem__(self, k: Any, v: Any) -> None:
        self._key = None
        super().__setitem__(k, v)

    def __delitem__(self, k: Any) -> None:
        self._key = None
        super().__delitem__(k)

    def __ior__(self, other: Any) -> FidelityPoint:  # type: ignore[override, misc]
        self._key = None
        super().__ior__(other)
        return self

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._key = None
        super().update(*args, **kwargs)

    def setdefault(self, k: Any, default: Any = None) -> Any:
        self._key = None
        return super().setdefault(k, default)

    def pop(self, *args: Any) -> Any:
        self._key = None
        return super().pop(*args)

    def popitem(self) -> Any:
        self._key = None
        return super().popitem()

    def clear(self) -> None:
        self._key = None
        super().clear()


def fidelity_key(fidelity: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    """A hashable, order-independent key for a fidelity point (values to 10 significant digits)."""
    if type(fidelity) is FidelityPoint:
        key: tuple[tuple[str, float], ...] | None
        try:
            key = fidelity._key
        except AttributeError:  # made without __init__ (a copy or an unpickled one)
            key = None
        if key is None:
            key = fidelity._key = _fidelity_key(fidelity)
        return key
    return _fidelity_key(fidelity)


def _fidelity_key(fidelity: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    items: tuple[Any, ...] | None = tuple(fidelity.items())
    try:
        hit = _FKEYS.get(items)  # type: ignore[arg-type]
    except TypeError:  # an unhashable value: no memo
        hit, items = None, None
    if hit is not None:
        return hit
    key = tuple(sorted((str(k), float(f"{float(v):.10g}")) for k, v in fidelity.items()))
    if items is not None:  # a history has a handful of distinct fidelities; the memo saves the formatting
        if len(_FKEYS) > 4096:
            _FKEYS.clear()
        _FKEYS[items] = key
    return key


def _check_finite_mapping(field: str, data: Any) -> None:
    """NaN, infinities and integers beyond a float's range are refused anywhere in ``params``."""
    stack: list[tuple[str, Any]] = [(field, data)]
    while stack:
        at, x = stack.pop()
        items = x.items() if isinstance(x, Mapping) else enumerate(x) if isinstance(x, (list, tuple)) else None
        if items is not None:
            for k, v in items:
                tv = type(v)
                if tv is str or tv is bool:  # the common case, without the checks below
                    continue
                sub = f"{at}.{k}" if isinstance(x, Mapping) else f"{at}[{k}]"
                if tv is int:
                    if v.bit_length() > 1000:
                        raise ValueError(f"field {short_repr(sub, 120)}: an integer of {v.bit_length()} bits is too large for a number")
                elif isinstance(v, float):
                    if not math.isfinite(v):
                        raise ValueError(f"field {short_repr(sub, 120)}: {v!r} is not allowed (NaN and infinite values are refused)")
                elif isinstance(v, (Mapping, list, tuple)):
                    stack.append((sub, v))


class Trial(BaseModel):
    """One run of one configuration at one fidelity."""

    model_config = ConfigDict(extra="forbid")

    id: Annotated[int, Strict()] | Annotated[str, Strict()]
    params: dict[str, Any]
    fidelity: dict[str, Number] = Field(default_factory=dict)
    value: Number | None = None
    state: TrialState = "complete"
    cost: Number | None = None
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
                raise ValueError(f"field {short_repr('fidelity.' + k, 120)}: {x!r}; a fidelity must be a finite number")
        return v

    @field_validator("cost")
    @classmethod
    def _cost_ok(cls, v: float | None) -> float | None:
        if v is not None and (not math.isfinite(v) or v < 0):
            raise ValueError(f"field 'cost': {v!r}; a cost must be a finite number >= 0")
        return v

    @model_validator(mode="after")
    def _value_matches_state(self) -> Trial:
        # the one rule of every frontend: a NaN or infinite value means the run failed
        if self.value is not None and not math.isfinite(self.value):
            self.value = None
            if self.state == "complete":
                self.state = "failed"
        if self.state == "complete" and self.value is None:
            raise ValueError(
                "field 'value': missing; a complete trial needs a value (or give its state: 'failed', 'pruned' or "
                "'running')"
            )
        return self

    @classmethod
    def parse(cls, data: Mapping[str, Any], *, where: str = "trial") -> Trial:
        """Validate plain data into a trial; errors name ``where``, the field and the value (bounded)."""
        if not isinstance(data, Mapping):
            raise InvalidTrialError(f"{where}: a trial must be an object, got {short_repr(data)}")
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise InvalidTrialError(_trial_error(where, exc)) from None

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
        """Append a trial, checking id uniqueness and fidelity axes; a mapping without ``"id"`` gets
        :meth:`next_id`."""
        if not isinstance(trial, Trial) and isinstance(trial, Mapping) and "id" not in trial:
            trial = {**trial, "id": self.next_id()}
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
    def from_json(cls, text: str, *, source: str = "<history>") -> History:
        """Parse the :meth:`to_json` form: ``{"fidelity_axes": [...], "trials": [...]}``.

        Raises:
            TypeError: when ``text`` is a file path (read a file with :meth:`load`).
        """
        _refuse_path("from_json", text)
        try:
            data = loads_json(text)
        except JSONInputError as exc:
            line = f", line {exc.lineno}" if exc.lineno else ""
            raise InvalidHistoryError(f"{source}{line}: {exc.msg}") from None
        if not isinstance(data, Mapping) or not isinstance(data.get("trials"), list):
            raise InvalidHistoryError(f"{source}: history JSON must be an object with a 'trials' list")
        axes = data.get("fidelity_axes", ())
        if not isinstance(axes, (list, tuple)) or not all(isinstance(a, str) for a in axes):
            raise InvalidHistoryError(f"{source}, field 'fidelity_axes': expected a list of names, got {short_repr(axes)}")
        return cls.from_records(((f"trials[{i}]", t) for i, t in enumerate(data["trials"])),
                                source=source, fidelity_axes=tuple(axes))

    def to_jsonl(self) -> str:
        return "".join(t.model_dump_json() + "\n" for t in self.trials)

    @classmethod
    def from_jsonl(cls, text: str, *, source: str = "<history>") -> History:
        """Parse one trial per line: the reading of :func:`read_history` (and so of the CLI) for a JSONL file.

        Lines end at ``\n``, ``\r\n`` or ``\r`` (universal newlines, as a file read as text gives them)
        and nowhere else, so a JSON string may hold U+2028 or U+0085; a leading byte-order mark is skipped
        and blank lines are ignored. A missing ``id`` becomes the trial's index (0-based).

        Raises:
            TypeError: when ``text`` is a file path (read a file with :meth:`load`).
        """
        _refuse_path("from_jsonl", text)
        return cls.from_records(_jsonl_records(text, source), source=source)

    @classmethod
    def from_records(
        cls,
        records: Iterable[tuple[int | str, Any]],
        *,
        source: str = "<history>",
        fidelity_axes: tuple[str, ...] = (),
    ) -> History:
        """Build a history from ``(line, record)`` pairs; errors name ``source``, the line and the field.

        ``line`` is a line number or a label such as ``"trials[3]"``.
        """
        return _build(records, source, fidelity_axes)[0]

    @classmethod
    def from_csv(cls, source: str | os.PathLike[str] | io.TextIOBase | Any) -> History:
        """Read a CSV history from a path or an open text file.

        Columns: ``param:<name>`` (or a bare name that is not reserved), ``fidelity:<axis>``, ``value``,
        ``state``, ``cost``, ``id``. A mixture takes one column per component, ``param:<name>.<component>``
        (a dot in a column name always separates a component). Cells are read by :func:`parse_csv_value`;
        an empty cell is a missing field. Every row must have as many fields as the header.

        Raises:
            TypeError: when ``source`` is neither a path nor a text file (CSV text: wrap it in ``io.StringIO``).
            InvalidHistoryError / InvalidTrialError: naming the file, the line and the field.
        """
        return _read_csv(source)[0]

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> History:
        """Read a ``.jsonl``, ``.json`` or ``.csv`` history file (UTF-8); see :func:`read_history`."""
        return read_history(path)[0]

    def save(self, path: str | os.PathLike[str]) -> None:
        p = Path(path)
        p.write_text(self.to_json() if p.suffix.lower() == ".json" else self.to_jsonl(), encoding="utf-8")


def _refuse_path(method: str, text: Any) -> None:
    """``History.from_jsonl("runs.jsonl")`` parses text, not a file: say so instead of "line 1: not valid JSON"."""
    if isinstance(text, os.PathLike):
        raise TypeError(f"History.{method} parses text, not a file; to read the file {short_repr(os.fspath(text), 200)} "
                        "use History.load(path)")
    stripped = text.strip() if isinstance(text, str) else ""
    if (stripped and "\n" not in stripped and stripped[0] not in "{[" and
            (stripped.lower().endswith((".jsonl", ".json", ".ndjson", ".csv", ".txt")) or os.path.isfile(stripped))):
        raise TypeError(f"History.{method} parses text, not a file, and {short_repr(stripped, 200)} looks like a file "
                        f"path: to read the file use History.load({short_repr(stripped, 200)})")


def _trial_error(where: str, exc: ValidationError) -> str:
    """``where, field 'x': problem (got ...)`` for the first problems of a trial, bounded in size."""
    errors = exc.errors(include_url=False)
    parts: list[str] = []
    seen: set[str] = set()
    for err in errors:
        msg = str(err.get("msg", "invalid"))
        msg = msg[len("Value error, "):] if msg.startswith("Value error, ") else msg
        if msg.startswith("field "):  # our validators name the field themselves
            part = msg
        else:
            locs = err.get("loc", ())
            loc = "id" if locs[:1] == ("id",) else ".".join(str(x) for x in locs)
            if loc in seen:  # the branches of a union say the same thing twice
                continue
            seen.add(loc)
            if loc == "id":
                msg = "an id must be an integer or a string"
            got = f" (got {short_repr(err.get('input'))})" if err.get("type") != "missing" else ""
            part = f"field {short_repr(loc, 120)}: {msg}{got}" if loc else f"{msg}{got}"
        parts.append(part)
    if len(parts) > 3:
        parts = parts[:3] + [f"and {len(parts) - 3} more"]
    return f"{where}, " + "; ".join(parts)


def _build(
    records: Iterable[tuple[int | str, Any]], source: str, fidelity_axes: tuple[str, ...] = ()
) -> tuple[History, list[str]]:
    h = History(fidelity_axes=fidelity_axes)
    wheres: list[str] = []
    for n, (line, rec) in enumerate(records):
        where = f"{source}, line {line}" if isinstance(line, int) else f"{source}, {line}"
        if not isinstance(rec, Mapping):
            raise InvalidHistoryError(f"{where}: expected a JSON object, got {short_repr(rec)}")
        rec = dict(rec)
        rec.setdefault("id", n)
        t = Trial.parse(rec, where=where)
        try:
            h.add(t)
        except InvalidHistoryError as exc:
            raise InvalidHistoryError(f"{where}: {exc}") from None
        wheres.append(where)
    return h, wheres


def read_history(path: str | os.PathLike[str]) -> tuple[History, list[str]]:
    """Read a history file and say where each trial came from (``"runs.jsonl, line 3"``).

    The file must be UTF-8 text. By suffix: ``.csv`` (see :meth:`History.from_csv`), ``.json`` (the
    :meth:`History.to_json` form), anything else JSON lines. An empty file is an empty history.

    Raises:
        InvalidHistoryError / InvalidTrialError: naming the file, the line and the field.
    """
    p, name = Path(path), path_name(path)
    suffix = p.suffix.lower()
    if suffix == ".csv":
        return _read_csv(p)
    text = read_text_file(p, InvalidHistoryError, "history")
    if suffix == ".json":
        if not text.strip():
            return History(), []
        h = History.from_json(text, source=name)
        return h, [f"{name}, trials[{i}]" for i in range(len(h))]
    return _build(_jsonl_records(text, name), name)


def _jsonl_records(text: str, source: str) -> Iterator[tuple[int, Any]]:
    """The one JSONL reading: :meth:`History.from_jsonl` and :func:`read_history` (the CLI, ``History.load``,
    the searcher's and ask/tell's ``history=path``) both call it, so a file is read like its text.

    Universal newlines, as :func:`~autollm_sampler._io.read_text_file` gives a file's text (applying them
    twice changes nothing); never str.splitlines(), which also splits at U+0085, U+2028 ..., characters a
    JSON string may hold raw. A raw carriage return cannot stand inside a JSON string (JSON escapes it); one
    between the tokens of a record ends the line, as it does in any file read as text.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rec = loads_json(line)
        except JSONInputError as exc:
            raise InvalidHistoryError(f"{source}, line {line_no}: {exc.msg}") from None
        if not isinstance(rec, Mapping):
            raise InvalidHistoryError(f"{source}, line {line_no}: expected a JSON object, got {short_repr(rec)}")
        yield line_no, rec


_RESERVED = ("id", "value", "state", "cost")


def _read_csv(source: Any) -> tuple[History, list[str]]:
    if isinstance(source, (str, os.PathLike)):
        name = path_name(source)
        if isinstance(source, str) and "\n" in source and not os.path.exists(source):
            raise TypeError("History.from_csv takes a path or an open text file; this looks like CSV text: pass io.StringIO(text)")
        text = read_text_file(source, InvalidHistoryError, "history")
    elif hasattr(source, "read") and callable(source.read):
        name = str(getattr(source, "name", "<history>"))
        text = source.read()
        if isinstance(text, (bytes, bytearray)):
            raw = bytes(text)
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                line = raw.count(b"\n", 0, exc.start) + 1
                raise InvalidHistoryError(f"{name}, line {line}: the history file is not UTF-8 text; save it as UTF-8") from None
        if not isinstance(text, str):
            raise TypeError(f"from_csv: read() of the file returned {type(text).__name__}, not text")
        if text.startswith("\ufeff"):  # a file saved with a BOM and opened as plain "utf-8": not part of a column name
            text = text[1:]
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    else:
        raise TypeError(
            f"History.from_csv takes a path (str or os.PathLike) or an open text file, got {type(source).__name__}; "
            "to read CSV text, pass io.StringIO(text)"
        )
    return _build(_csv_records(text, name), name)


def _csv_records(text: str, source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text))
    try:
        header: list[str] | None = None
        for row in reader:
            line = reader.line_num - sum(f.count("\n") for f in row)  # first line of the row
            if not any(f.strip() for f in row):  # a blank line, or a row of empty fields: no data to lose
                continue
            if header is None:
                header = [c.strip() for c in row]
                columns = _csv_columns(header, source)
                continue
            if len(row) != len(header):
                raise InvalidHistoryError(
                    f"{source}, line {line}: the row has {len(row)} fields and the header {len(header)}; "
                    "every row needs one field per column"
                )
            yield line, _csv_row(row, columns, source, line)
    except csv.Error as exc:
        raise InvalidHistoryError(f"{source}, line {reader.line_num}: not valid CSV ({short_repr(str(exc), 120)})") from None


def _csv_columns(header: list[str], source: str) -> list[tuple[str, str, str | None] | None]:
    """Per column: (kind, name, component) with kind in param / fidelity / value / cost / state / id."""
    seen: set[str] = set()
    out: list[tuple[str, str, str | None] | None] = []
    for i, col in enumerate(header):
        if col in seen:
            raise InvalidHistoryError(f"{source}, line 1: column {short_repr(col)} appears twice in the header")
        seen.add(col)
        if not col:
            out.append(None)  # a nameless column must stay empty (checked per row)
        elif col.startswith("fidelity:"):
            out.append(("fidelity", col[9:], None))
        elif col in _RESERVED:
            out.append((col, col, None))
        else:
            name = col[6:] if col.startswith("param:") else col
            base, dot, comp = name.partition(".")
            if not base or (dot and not comp):
                raise InvalidHistoryError(f"{source}, line 1: column {i + 1} ({short_repr(col)}) names no parameter")
            out.append(("param", base, comp if dot else None))
    flat = {c[1] for c in out if c is not None and c[0] == "param" and c[2] is None}
    mixed = sorted({c[1] for c in out if c is not None and c[0] == "param" and c[2] is not None} & flat)
    if mixed:
        raise InvalidHistoryError(
            f"{source}, line 1: parameter {short_repr(mixed[0])} has both a column of its own and component columns "
            f"({mixed[0]}.<component>); keep one form"
        )
    return out


def _csv_row(row: list[str], columns: list[tuple[str, str, str | None] | None], source: str, line: int) -> dict[str, Any]:
    rec: dict[str, Any] = {"params": {}, "fidelity": {}}
    for i, (col, raw) in enumerate(zip(columns, row, strict=True)):
        if not raw.strip():
            continue
        if col is None:
            raise InvalidHistoryError(f"{source}, line {line}: column {i + 1} has no name in the header but holds {short_repr(raw)}")
        kind, name, comp = col
        if kind == "fidelity":
            rec["fidelity"][name] = raw.strip()  # read as a number by Trial (one number parser)
        elif kind in ("value", "cost", "state", "id"):
            rec[kind] = raw.strip()
        elif comp is None:
            rec["params"][name] = parse_csv_value(raw)
        else:
            rec["params"].setdefault(name, {})[comp] = parse_csv_value(raw)
    return rec


def _field(name: str) -> str:
    return short_repr(f"params.{name}", 120)


def check_params(space: SearchSpace, params: Mapping[str, Any], *, at_target: bool) -> None:
    """The one rule every trial of a history meets before the agent reads it (every frontend, every trial).

    * Every name is a parameter of ``space``.
    * Every value can be read as that parameter: a finite number (never a bool or text) for a float, an
      int or a categorical of numbers; one of the choices for any other categorical; for a simplex a
      ``{component: weight}`` mapping of known components with finite weights in [0, 1] summing to one
      within :data:`~autollm_sampler.space.SIMPLEX_TOL` (missing components weigh 0).
    * A trial at the target (``at_target``) also names every parameter, and its values fit the space: in
      range, integers for an int, on the ``step`` grid (``low + k * step``), one of the choices.
      A cheaper trial may hold other numbers (they are carried over by value) and may leave parameters out.

    Raises:
        InvalidTrialError: ``field 'params.NAME': ...``, bounded in size (the caller adds file and line).
    """
    for name, v in params.items():
        p = space.params.get(name)
        if p is None:
            raise InvalidTrialError(
                f"field {_field(str(name))}: unknown parameter; the space has {short_repr(sorted(space.params), 200)}"
            )
        try:
            _check_value(name, p, v, at_target)
        except InvalidTrialError as exc:
            raise InvalidTrialError(f"field {_field(name)}: {exc}") from None
    if at_target:
        for name in space.params:
            if name not in params:
                raise InvalidTrialError(f"field {_field(name)}: missing (a target trial needs every parameter)")


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _number(name: str, v: Any, what: str = "a number") -> float:
    if not _is_num(v):
        hint = "; write it without quotes" if isinstance(v, str) and parse_number(v) is not None else ""
        raise InvalidTrialError(f"parameter {short_repr(name)}: expected {what}, got {short_repr(v)}{hint}")
    try:
        x = float(v)
    except OverflowError:
        raise InvalidTrialError(f"parameter {short_repr(name)}: the integer {short_repr(v)} is too large for a number") from None
    if not math.isfinite(x):
        raise InvalidTrialError(f"parameter {short_repr(name)}: {x!r} is not allowed; give a finite number")
    return x


def _check_value(name: str, p: Any, v: Any, at_target: bool) -> None:
    if isinstance(p, (FloatParam, IntParam)):
        x = _number(name, v)
        if at_target:
            p.validate_value(name, x if isinstance(p, FloatParam) else v)
            step = p.step if isinstance(p, FloatParam) else (p.step if p.step != 1 else None)
            if step is not None:
                k = (x - p.low) / step
                if abs(k - round(k)) > 1e-6 * max(1.0, abs(k)):
                    raise InvalidTrialError(
                        f"parameter {short_repr(name)}: value {v!r} is not on the step grid {p.low!r} + k * {step!r}"
                    )
        return
    if isinstance(p, CategoricalParam):
        if p.numeric and _is_num(v):
            _number(name, v)
            if at_target:
                p.validate_value(name, v)
            return
        if isinstance(v, float) and not math.isfinite(v):
            raise InvalidTrialError(f"parameter {short_repr(name)}: {v!r} is not allowed; give one of the choices")
        try:
            ok = isinstance(v, (bool, int, float, str, np.generic)) and p.index_of(name, v) is not None
        except InvalidTrialError:
            ok = False
        if not ok:
            kind = "a number or one of the choices" if p.numeric else "one of the choices"
            raise InvalidTrialError(
                f"parameter {short_repr(name)}: expected {kind} {short_repr(list(p.choices), 200)}, got {short_repr(v)}"
            )
        return
    if isinstance(p, SimplexParam):
        if not isinstance(v, Mapping):
            hint = (" (in a CSV give one column per component: param:NAME.COMPONENT)" if isinstance(v, str) else "")
            raise InvalidTrialError(
                f"parameter {short_repr(name)}: a mixture must be a {{component: weight}} mapping{hint}, got {short_repr(v)}"
            )
        unknown = [c for c in v if c not in p.components]
        if unknown:
            raise InvalidTrialError(
                f"parameter {short_repr(name)}: unknown component {short_repr(unknown[0])}; the components are "
                f"{short_repr(list(p.components), 200)}"
            )
        total = 0.0
        for c, w in v.items():
            x = _number(f"{name}.{c}", w, "a weight (a number)")
            if not 0.0 <= x <= 1.0:
                raise InvalidTrialError(f"parameter {short_repr(name)}: weight of {c!r} is {x!r}, outside [0, 1]")
            total += x
        if abs(total - 1.0) > SIMPLEX_TOL:
            raise InvalidTrialError(
                f"parameter {short_repr(name)}: weights sum to {total:.6g}, not 1 (tolerance {SIMPLEX_TOL}, the same "
                "for every trial); normalise them"
            )
        return
    p.validate_value(name, v)  # a parameter type added later: its own check
