"""Reading user text: UTF-8 files, JSON without surprises, CSV cells, and bounded reprs for error messages.

One place for the rules every reader follows (the history files, the CLI's space files, the gym's tables):

* :func:`read_text_file` reads UTF-8 (a byte-order mark is allowed) with universal newlines; anything else
  is an error naming the file and the line of the first bad byte.
* :func:`loads_json` is :func:`json.loads` that refuses a key given twice in one object, integer literals
  too large for a float (more than 300 digits) and nesting deeper than Python can follow, each with a
  bounded message. ``NaN`` and ``Infinity`` are read (the callers decide what they mean).
* :func:`parse_csv_value` reads one CSV cell: ``true``/``false`` -> bool, an integer literal -> int (a float
  when it is beyond 2**53), a decimal or exponent literal (or ``nan``/``inf``) -> float, anything else ->
  the stripped text. :func:`parse_number` is the same reading for a field that must be a number.
* :func:`short_repr` is ``repr`` cut to a length, for every message that quotes user input.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

__all__ = ["short_repr", "path_name", "read_text_file", "loads_json", "JSONInputError", "parse_csv_value", "parse_number"]

_INT = re.compile(r"[+-]?[0-9]+\Z")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
_SPECIAL = re.compile(r"[+-]?(?:nan|inf|infinity)\Z", re.IGNORECASE)
#: JSON integer literals longer than this are refused (a float ends near 1.8e308).
MAX_INT_DIGITS = 300


def short_repr(x: Any, n: int = 80) -> str:
    """``repr(x)``, cut to ``n`` characters (with ``...``) so a message never quotes megabytes of input."""
    try:
        if isinstance(x, str) and len(x) > 4 * n:
            x = x[: 4 * n]  # repr of a cut string: cheap even for huge text
        r = repr(x)
    except RecursionError:
        r = f"<deeply nested {type(x).__name__}>"
    except Exception:  # a repr that raises must not hide the real error
        r = f"<{type(x).__name__}>"
    return r if len(r) <= n else r[: n - 3] + "..."


def path_name(path: str | os.PathLike[str]) -> str:
    """A file's name for messages, cut to 200 characters."""
    name = str(path)
    return name if len(name) <= 200 else name[:197] + "..."


def read_text_file(path: str | os.PathLike[str], error: type[Exception], what: str) -> str:
    """The text of a UTF-8 file with ``\\r\\n`` and ``\\r`` turned into ``\\n``.

    Raises:
        error: when the file cannot be read or is not UTF-8, naming the file (and the line of the bad byte).
    """
    p, name = Path(path), path_name(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise error(f"{name}: cannot read the {what} file ({exc.strerror or type(exc).__name__})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise error(
            f"{name}, line {line}: the {what} file is not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset "
            f"{exc.start}); save it as UTF-8"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


class JSONInputError(ValueError):
    """JSON that :func:`loads_json` refuses; ``msg`` says why, ``lineno`` where (1-based, or ``None``)."""

    def __init__(self, msg: str, lineno: int | None = None) -> None:
        super().__init__(msg)
        self.msg, self.lineno = msg, lineno


class _BigInt:
    """Stands in for an integer literal too long to read, so that its field can be named."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


class _TooLong(Exception):
    pass


def _parse_int(s: str) -> int:
    if len(s) - (s[0] == "-") > MAX_INT_DIGITS:
        raise _TooLong
    return int(s)


def _mark_int(s: str) -> int | _BigInt:
    digits = len(s) - (s[0] == "-")
    return _BigInt(digits) if digits > MAX_INT_DIGITS else int(s)


def _find_big(x: Any) -> tuple[str, int] | None:
    stack: list[tuple[Any, str]] = [(x, "")]
    while stack:
        v, at = stack.pop()
        if isinstance(v, _BigInt):
            return at or "(top level)", v.digits
        if isinstance(v, dict):
            stack.extend((w, f"{at}.{k}" if at else str(k)) for k, w in reversed(list(v.items())))
        elif isinstance(v, list):
            stack.extend((w, f"{at}[{i}]") for i, w in reversed(list(enumerate(v))))
    return None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise JSONInputError(f"key {short_repr(k)} appears twice in one object; give each field once")
            seen.add(k)
    return out


def loads_json(text: str) -> Any:
    """:func:`json.loads` with the refusals listed in the module docstring.

    Raises:
        JSONInputError: with a bounded ``msg`` (naming the field of a too long integer) and the line when known.
    """
    try:
        return json.loads(text, parse_int=_parse_int, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as exc:
        raise JSONInputError(f"not valid JSON ({exc.msg})", exc.lineno) from None
    except RecursionError:
        raise JSONInputError("not readable: the JSON is nested too deeply") from None
    except JSONInputError:
        raise
    except _TooLong:
        found = _find_big(json.loads(text, parse_int=_mark_int, object_pairs_hook=_no_duplicates))
        at, digits = found if found is not None else ("(unknown)", MAX_INT_DIGITS + 1)
        raise JSONInputError(
            f"field {short_repr(at, 120)}: an integer literal of {digits} digits is too large for a number"
        ) from None
    except ValueError as exc:  # anything else json refuses
        raise JSONInputError(f"not readable ({short_repr(str(exc), 120)})") from None


def parse_number(raw: str) -> float | None:
    """A number written as text (``"3"``, ``"-1.5e-3"``, ``"nan"``, ``"inf"``), else ``None``.

    Only ASCII digits; no underscores, no booleans, no hex.
    """
    s = raw.strip()
    if _FLOAT.match(s) or _SPECIAL.match(s):
        return float(s)
    return None


def parse_csv_value(raw: str) -> Any:
    """One CSV cell as a value: bool, int, float, or the stripped text (see the module docstring)."""
    s = raw.strip()
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    if _INT.match(s):
        if len(s) <= 17:
            iv = int(s)
            if abs(iv) < 2**53:
                return iv
        return float(s)
    if _FLOAT.match(s) or _SPECIAL.match(s):
        return float(s)
    return s


def sha256_of(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file, read in 1 MiB chunks (raw tables, checkpoints, agent folders)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
