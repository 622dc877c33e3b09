"""Text I/O of the text-LLM backend: the prompt a language model reads and the repair parser of its answers.

Pure Python and numpy (no torch), so the prompt and the parser are usable and testable on their own.

The prompt states the objective, the target fidelity, the search space, the fidelity ladder (each cheaper
cell with its best runs, nearest to the target first), the extrapolated optimum that the default backend's
serializer computes, and the target runs so far. Long histories are summarised the same way the default
backend summarises them: per cell, its size, its best runs and its optimum.

The model answers with one JSON object::

    {"params": {"lr": 0.00195, "batch_size": 256}, "predicted": 2.4131, "reason": "..."}

:func:`parse_action` turns any answer into a valid configuration in three stages, and says which one
was needed:

``strict``
    the whole answer is that JSON object and every value is valid;
``lenient``
    the object had to be extracted from prose, closed after truncation, cleaned of single quotes, trailing
    commas or Python literals, or a parameter name had to be matched to the nearest valid name;
``snap``
    values were out of range or not among the choices and were moved to the nearest valid value, or a
    missing parameter was filled in from the fallback configuration;
``failed``
    nothing usable: the fallback configuration is returned.

Example:
    >>> from autollm_sampler import SearchSpace
    >>> space = SearchSpace.from_dict({"params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}})
    >>> a = parse_action('Sure! {"params": {"LR": 0.5}, "reason": "big steps', space)
    >>> a.level, a.params["lr"]
    ('snap', 0.1)
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autollm_sampler.history import History, Trial, fidelity_key
from autollm_sampler.space import CategoricalParam, FloatParam, IntParam, SearchSpace, SimplexParam

__all__ = [
    "PromptSettings",
    "ParsedAction",
    "RepairStats",
    "LEVELS",
    "render_prompt",
    "render_answer",
    "read_prompt_runs",
    "parse_action",
    "fmt_number",
    "balanced_object",
]

#: Repair levels, from clean to unusable.
LEVELS = ("strict", "lenient", "snap", "failed")

SYSTEM_PROMPT = (
    "You are a research agent that configures expensive LLM experiments from cheap evidence. "
    "Read the runs and answer with one JSON object."
)


@dataclass
class PromptSettings:
    """How much of the history the prompt shows.

    Attributes:
        top_k: best runs shown per cheaper cell (every run when the cell has no more than this).
        max_cells: cheaper cells shown, nearest to the target first.
        max_target_runs: target runs shown, best first.
        digits: significant digits of parameter values.
        value_digits: significant digits of outcomes (losses differ in the fourth digit).
        hint: show the extrapolated optimum of the default backend's serializer.
    """

    top_k: int = 3
    max_cells: int = 6
    max_target_runs: int = 6
    digits: int = 3
    value_digits: int = 5
    hint: bool = True

    def __post_init__(self) -> None:
        if min(self.top_k, self.max_cells, self.max_target_runs) < 0 or min(self.digits, self.value_digits) < 1:
            raise ValueError(f"prompt settings must be non-negative with at least one digit, got {self}")


# ----------------------------------------------------------------------------------------- rendering
def fmt_number(v: Any, digits: int = 3) -> str:
    """A compact JSON-compatible number: ints as they are, floats with ``digits`` significant digits."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    x = float(v)
    if not math.isfinite(x):
        return "null"
    s = f"{x:.{digits}g}"
    if "e" in s:
        mant, exp = s.split("e")
        s = f"{mant}e{int(exp)}"
    return s


def _fmt_weight(w: Any) -> str:
    s = f"{float(w):.3f}".rstrip("0").rstrip(".")
    return s if s not in ("", "-0") else "0"


def _fmt_value(v: Any, digits: int) -> str:
    if isinstance(v, Mapping):  # mixture weights: a list in the space's component order (half the tokens)
        return "[" + ", ".join(_fmt_weight(x) for x in v.values()) + "]"
    if isinstance(v, (bool, int, float, np.integer, np.floating)):
        return fmt_number(v, digits)
    return json.dumps(v)


def config_json(params: Mapping[str, Any], space: SearchSpace | None = None, digits: int = 3) -> str:
    """``params`` as a compact JSON object, in the space's parameter order when a space is given."""
    names = [n for n in space.names if n in params] if space is not None else list(params)
    names += [n for n in params if n not in names]
    return "{" + ", ".join(f"{json.dumps(n)}: {_fmt_value(params[n], digits)}" for n in names) + "}"


def _fid(f: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={fmt_number(v)}" for k, v in sorted(f.items())) or "(none)"


def _describe(name: str, p: Any) -> str:
    if isinstance(p, FloatParam):
        extra = ", log scale" if p.log else ""
        extra += f", step {fmt_number(p.step)}" if p.step else ""
        return f"- {name}: float in [{fmt_number(p.low)}, {fmt_number(p.high)}]{extra}"
    if isinstance(p, IntParam):
        extra = ", log scale" if p.log else ""
        extra += f", step {p.step}" if p.step != 1 else ""
        return f"- {name}: int in [{p.low}, {p.high}]{extra}"
    if isinstance(p, CategoricalParam):
        return f"- {name}: one of [{', '.join(_fmt_value(c, 6) for c in p.choices)}]"
    if isinstance(p, SimplexParam):
        return f"- {name}: list of weights for [{', '.join(p.components)}], summing to 1"
    return f"- {name}: {type(p).__name__}"


def _cells(history: History, target: Mapping[str, float]) -> tuple[list[tuple[dict[str, float], list[Trial]]], list[Trial]]:
    """Completed trials grouped by cheaper cell (nearest to the target first) and the target's own trials."""
    tkey = fidelity_key(target)
    cheap: dict[Any, list[Trial]] = {}
    tgt: list[Trial] = []
    for t in history.trials:
        if t.state != "complete" or t.value is None:
            continue
        if not t.fidelity or fidelity_key(t.fidelity) == tkey:
            tgt.append(t)
        else:
            cheap.setdefault(fidelity_key(t.fidelity), []).append(t)

    def dist(key: Any) -> float:
        f = dict(key)
        return sum(abs(math.log(max(f.get(a, v), 1e-30) / max(v, 1e-30))) for a, v in target.items() if v > 0)

    order = sorted(cheap, key=dist)
    return [(dict(k), cheap[k]) for k in order], tgt


def render_prompt(
    history: History,
    space: SearchSpace,
    target: Mapping[str, float],
    *,
    task: str | None = None,
    settings: PromptSettings | None = None,
    hint: Mapping[str, Any] | None = None,
    pending: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The user message for one proposal (see the module docstring)."""
    s = settings or PromptSettings()
    sign = space.sign
    better = "lower" if space.direction == "minimize" else "higher"
    lines = [
        f"Task: {task or 'LLM experiment'}. Propose the next configuration to run at the target fidelity; {better} is better.",
        f"Target fidelity: {_fid(target)}",
        "Search space:",
        *(_describe(n, space.params[n]) for n in space.names),
    ]
    cells, tgt = _cells(history, target)
    if cells:
        shown = cells[: s.max_cells]
        lines.append(f"Cheaper runs ({len(cells)} cells, nearest first{'; ' + str(len(shown)) + ' shown' if len(shown) < len(cells) else ''}):")
        for fid, trials in shown:
            best = sorted(trials, key=lambda t: sign * float(t.value))  # type: ignore[arg-type]
            lines.append(f"* {_fid(fid)}: {len(trials)} runs{', best ' + str(s.top_k) if len(trials) > s.top_k else ''}")
            lines += [f"  {fmt_number(t.value, s.value_digits)} {config_json(t.params, space, s.digits)}" for t in best[: s.top_k]]
    else:
        lines.append("Cheaper runs: none.")
    if s.hint and hint is not None:
        lines.append(f"Extrapolated optimum: {config_json(hint, space, s.digits)}")
    if tgt:
        best = sorted(tgt, key=lambda t: sign * float(t.value))  # type: ignore[arg-type]
        more = f", best {s.max_target_runs}" if len(tgt) > s.max_target_runs else ""
        lines.append(f"Target runs ({len(tgt)}{more}):")
        lines += [f"  {fmt_number(t.value, s.value_digits)} {config_json(t.params, space, s.digits)}" for t in best[: s.max_target_runs]]
    else:
        lines.append("Target runs: none yet.")
    if pending:
        lines.append(f"Running or already chosen ({len(pending)}), do not repeat:")
        lines += [f"  {config_json(p, space, s.digits)}" for p in list(pending)[-s.max_target_runs:]]
    lines.append('Answer: {"params": {...}, "predicted": <outcome>, "reason": "<why>"}')
    return "\n".join(lines)


def render_answer(params: Mapping[str, Any], space: SearchSpace, *, predicted: float | None = None, reason: str = "", digits: int = 3) -> str:
    """The answer the model is trained to give (the parser reads it back at the ``strict`` level)."""
    out = '{"params": ' + config_json(params, space, digits)
    if predicted is not None and math.isfinite(predicted):
        out += f', "predicted": {fmt_number(predicted, 5)}'
    out += f', "reason": {json.dumps(reason)}' + "}"
    return out


_RUN = re.compile(r"^\s+(\S+) (\{.*\})$")
_CELL = re.compile(r"^\* (.*): \d+ runs")


def read_prompt_runs(prompt: str, space: SearchSpace | None = None) -> list[dict[str, Any]]:
    """The runs a prompt shows, read back: ``{"fidelity": {...} or None (target), "value", "params"}``.

    The inverse of the history part of :func:`render_prompt`, to the displayed precision. With ``space``,
    mixture weight lists are turned back into ``{component: weight}``.
    """
    out: list[dict[str, Any]] = []
    fid: dict[str, float] | None = None
    section = ""
    for line in prompt.splitlines():
        if line.startswith("Cheaper runs"):
            section = "cheap"
        elif line.startswith("Target runs"):
            section, fid = "target", None
        elif line.startswith(("Running", "Extrapolated", "Answer")):
            section = ""
        m = _CELL.match(line)
        if m and section == "cheap":
            fid = {k: float(v) for k, v in (kv.split("=") for kv in m.group(1).split(", "))}
            continue
        m = _RUN.match(line)
        if m and section in ("cheap", "target"):
            params = json.loads(m.group(2))
            if space is not None:
                for k, v in params.items():
                    p = space.params.get(k)
                    if isinstance(p, SimplexParam) and isinstance(v, list):
                        params[k] = dict(zip(p.components, v, strict=False))
            out.append({"fidelity": fid, "value": float(m.group(1)), "params": params})
    return out


# ----------------------------------------------------------------------------------------- parsing
@dataclass
class ParsedAction:
    """A configuration read from a model's answer, with what it took to get it.

    Attributes:
        params: a valid configuration of the space.
        level: ``strict``, ``lenient``, ``snap`` or ``failed`` (see the module docstring).
        repairs: one line per repair made.
        reason: the answer's ``reason`` text (the proposal's rationale), or ``""``.
        predicted: the answer's ``predicted`` outcome, when it gave a finite number.
    """

    params: dict[str, Any]
    level: str
    repairs: list[str] = field(default_factory=list)
    reason: str = ""
    predicted: float | None = None


@dataclass
class RepairStats:
    """Counts of answers per repair level; ``repair_rate`` is the share that was not ``strict``.

    ``too_long`` counts proposals for which the prompt did not fit the model's context, so no answer was
    generated and the classical strategy proposed instead.
    """

    counts: Counter[str] = field(default_factory=Counter)
    too_long: int = 0

    def add(self, level: str) -> None:
        self.counts[level] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def repair_rate(self) -> float:
        return 1.0 - self.counts["strict"] / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"answers": self.total, **{k: self.counts[k] for k in LEVELS}, "repair_rate": round(self.repair_rate, 4),
                "too_long": self.too_long}


_TRAILING_COMMA = re.compile(r",\s*([}\]])")
_DANGLING_KEY = re.compile(r'[,{]\s*"[^"]*"\s*:?\s*$')
_PAIR = re.compile(r"""["']?([A-Za-z_][\w.\[\]-]*)["']?\s*[:=]\s*("[^"]*"|'[^']*'|-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|true|false|True|False)""")


def _structure(text: str, start: int = 0) -> tuple[list[tuple[int, str]], bool]:
    """The characters of ``text[start:]`` outside JSON strings (with their index), and whether it ends inside one."""
    out: list[tuple[int, str]] = []
    in_str = esc = False
    for i in range(start, len(text)):
        ch = text[i]
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        else:
            out.append((i, ch))
    return out, in_str


def _close(text: str) -> str:
    """Close a truncated JSON object: finish an open string, drop a dangling key, add the missing brackets."""
    stack: list[str] = []
    chars, in_str = _structure(text)
    for _, ch in chars:
        if ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    out = text + ('"' if in_str else "")
    out = out.rstrip().rstrip(",")
    while True:  # a key with no value, or a value cut inside a number such as "1e-"
        cut = _DANGLING_KEY.search(out)
        if cut is None:
            break
        out = out[: cut.start() + 1] if out[cut.start()] == "{" else out[: cut.start()]
    cut_num = re.search(r'[,{]\s*"[^"]*"\s*:\s*-?[\d.]*[eE][-+]?$', out)  # "1e-": the value is unknown
    if cut_num is not None:
        out = out[: cut_num.start() + 1] if out[cut_num.start()] == "{" else out[: cut_num.start()]
    out = re.sub(r"[-+.]+$", "", out)
    return out + "".join(reversed(stack))


def balanced_object(text: str, start: int) -> str | None:
    """The balanced ``{...}`` starting at ``start``, or ``None`` when it never closes."""
    depth = 0
    for i, ch in _structure(text, start)[0]:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return None


def _loads_lenient(text: str) -> Any:
    fixed = _TRAILING_COMMA.sub(r"\1", text)
    fixed = re.sub(r"\bTrue\b", "true", re.sub(r"\bFalse\b", "false", re.sub(r"\bNone\b", "null", fixed)))
    fixed = re.sub(r"\b(nan|NaN|inf|Infinity)\b", "null", fixed)
    if "'" in fixed and '"' not in fixed:
        fixed = fixed.replace("'", '"')
    return json.loads(fixed)


def _extract(text: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The answer object: strict JSON first, then the first object in prose, then key-value pairs."""
    notes: list[str] = []
    stripped = text.strip()
    try:
        obj = json.loads(stripped)
        if isinstance(obj, dict):
            return obj, notes
    except ValueError:
        pass
    start = stripped.find("{")
    if start >= 0:
        chunk = balanced_object(stripped, start)
        if start > 0 or (chunk is not None and chunk != stripped):
            notes.append("extracted the JSON object from surrounding text")
        if chunk is None:
            chunk = _close(stripped[start:])
            notes.append("closed a truncated JSON object")
        for j, candidate in enumerate((chunk, _close(chunk))):
            try:
                obj = _loads_lenient(candidate)
            except ValueError:
                continue
            if isinstance(obj, dict):
                if not notes or j:
                    notes.append("fixed the JSON syntax")
                return obj, notes
    pairs = {m.group(1): m.group(2) for m in _PAIR.finditer(stripped)}
    if pairs:
        notes.append("read key-value pairs from malformed text")
        out: dict[str, Any] = {}
        for k, v in pairs.items():
            v = v.strip("'\"") if v[0] in "'\"" else v
            try:
                out[k] = json.loads(v.lower()) if v.lower() in ("true", "false") else float(v) if re.fullmatch(r"-?[\d.eE+-]+", v) else v
            except ValueError:
                out[k] = v
        return out, notes
    return None, notes


def _match_name(key: str, names: Sequence[str]) -> str | None:
    if key in names:
        return key
    low = {n.lower(): n for n in names}
    if key.lower() in low:
        return low[key.lower()]
    norm = {re.sub(r"[\W_]", "", n.lower()): n for n in names}
    k = re.sub(r"[\W_]", "", key.lower())
    if k in norm:
        return norm[k]
    close = difflib.get_close_matches(key.lower(), list(low), n=1, cutoff=0.75)
    return low[close[0]] if close else None


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float, np.integer, np.floating)):
        x = float(v)
        return x if math.isfinite(x) else None
    if isinstance(v, str):
        try:
            x = float(v.strip())
            return x if math.isfinite(x) else None
        except ValueError:
            return None
    return None


def _display_close(x: float, y: float) -> bool:
    """Whether ``x`` and ``y`` differ by no more than rounding to 3 significant digits explains."""
    return abs(x - y) <= 5.01e-3 * max(abs(x), abs(y)) + 1e-12


def _snap_value(name: str, p: Any, v: Any, notes: list[str]) -> Any:
    """A valid value of ``p`` for the raw ``v`` (``None`` when there is no sensible one)."""
    if isinstance(p, (FloatParam, IntParam)):
        x = _number(v)
        if x is None:
            return None
        lo, hi = float(p.low), float(p.high)
        y = min(max(x, lo), hi)
        if isinstance(p, IntParam):
            y = float(int(round((y - p.low) / p.step)) * p.step + p.low)
            y = min(max(y, lo), hi)
        elif p.step:
            y = min(max(round((y - lo) / p.step) * p.step + lo, lo), hi)
        if y != x and not _display_close(x, y):  # a value rounded for display is not a repair
            notes.append(f"moved {name} from {fmt_number(x, 6)} to {fmt_number(y, 6)} (range [{fmt_number(lo, 6)}, {fmt_number(hi, 6)}])")
        return int(y) if isinstance(p, IntParam) else float(y)
    if isinstance(p, CategoricalParam):
        for c in p.choices:
            if c == v and type(c) is not bool or c is v:
                return c
        if isinstance(v, str):
            for c in p.choices:
                if str(c).lower() == v.strip().lower():
                    notes.append(f"read {name}={v!r} as {c!r}")
                    return c
        x = _number(v)
        nums = [c for c in p.choices if _number(c) is not None and not isinstance(c, str)]
        if x is not None and nums:
            xv: float = x
            logish = xv > 0 and all(float(c) > 0 for c in nums)
            best = min(nums, key=lambda c: abs(math.log(float(c) / xv)) if logish else abs(float(c) - xv))
            if not _display_close(xv, float(best)):
                notes.append(f"moved {name} from {v!r} to the nearest choice {best!r}")
            elif isinstance(best, bool) != isinstance(v, bool):
                notes.append(f"read {name}={v!r} as {best!r}")
            return best
        if isinstance(v, str):
            close = difflib.get_close_matches(v, [str(c) for c in p.choices], n=1, cutoff=0.6)
            if close:
                c = next(c for c in p.choices if str(c) == close[0])
                notes.append(f"read {name}={v!r} as the closest choice {c!r}")
                return c
        return None
    if isinstance(p, SimplexParam):
        if isinstance(v, (list, tuple)):
            if len(v) != len(p.components):
                notes.append(f"{name} had {len(v)} weights for {len(p.components)} components")
            v = dict(zip(p.components, v, strict=False))
            if len(v) < len(p.components):
                v.update(dict.fromkeys(p.components[len(v):], 0.0))
        if not isinstance(v, Mapping):
            return None
        weights = dict.fromkeys(p.components, 0.0)
        for k, x in v.items():
            comp = _match_name(str(k), p.components)
            num = _number(x)
            if comp is None or num is None:
                notes.append(f"dropped {name}[{k}]")
                continue
            if comp != k:
                notes.append(f"read {name}[{k}] as {name}[{comp}]")
            if num < 0:
                notes.append(f"set the negative weight {name}[{comp}]={fmt_number(num, 4)} to 0")
            weights[comp] = max(num, 0.0)
        missing = [c for c in p.components if not any(_match_name(str(k), p.components) == c for k in v)]
        if missing and len(missing) < len(p.components):
            notes.append(f"set {len(missing)} missing weight(s) of {name} to 0")
        total = sum(weights.values())
        if total <= 0:
            return None
        if abs(total - 1.0) > 5e-4 * len(p.components) + 1e-9:  # weights shown with 3 decimals may sum to 0.999
            notes.append(f"renormalised {name} (weights summed to {fmt_number(total, 4)})")
        return {c: w / total for c, w in weights.items()}
    return None


def parse_action(
    text: str,
    space: SearchSpace,
    *,
    fallback: Mapping[str, Any] | None = None,
) -> ParsedAction:
    """Read a configuration from a model's answer, repairing it as needed (see the module docstring).

    Args:
        text: the generated answer.
        space: the search space the configuration must be valid in.
        fallback: where missing parameters (or, when nothing is readable, all of them) come from; the
            space's centre when not given.
    """
    fb = dict(fallback) if fallback is not None else space.from_unit(np.full(space.width, 0.5))
    obj, notes = _extract(text)
    if obj is None:
        return ParsedAction(dict(fb), "failed", ["no JSON object or key-value pairs in the answer"])
    level = "lenient" if notes else "strict"
    reason = obj.get("reason", "") if isinstance(obj.get("reason", ""), str) else str(obj.get("reason"))
    predicted = _number(obj.get("predicted"))
    raw = obj.get("params")
    if not isinstance(raw, Mapping):
        raw = {k: v for k, v in obj.items() if k not in ("params", "predicted", "reason")}
        if raw:
            notes.append("read parameters from the top level (no 'params' object)")
            level = "lenient"
        else:
            raw = {}
    # names -> space parameters (simplex components may also appear flat or as name[component])
    values: dict[str, Any] = {}
    simplex_parts: dict[str, dict[str, Any]] = {}
    for key, v in raw.items():
        key = str(key)
        name = _match_name(key, space.names)
        if name is None:
            m = re.fullmatch(r"(.+?)[\[.](.+?)\]?", key)
            owner = _match_name(m.group(1), space.names) if m else None
            if owner is not None and isinstance(space.params[owner], SimplexParam):
                simplex_parts.setdefault(owner, {})[m.group(2)] = v  # type: ignore[union-attr]
                continue
            owner = next((n for n, p in space.params.items() if isinstance(p, SimplexParam) and _match_name(key, p.components)), None)
            if owner is not None:
                simplex_parts.setdefault(owner, {})[key] = v
                continue
            notes.append(f"ignored unknown parameter {key!r}")
            level = "lenient"
            continue
        if name != key:
            notes.append(f"read parameter {key!r} as {name!r}")
            level = "lenient"
        values[name] = v
    for owner, parts in simplex_parts.items():
        if owner not in values:
            values[owner] = parts
            notes.append(f"gathered the weights of {owner} from flat keys")
            level = "lenient"
    out: dict[str, Any] = {}
    snapped = False
    for name in space.names:
        p = space.params[name]
        if name not in values:
            out[name] = fb[name]
            notes.append(f"filled missing {name} from the fallback")
            snapped = True
            continue
        sub: list[str] = []
        v = _snap_value(name, p, values[name], sub)
        if v is None:
            out[name] = fb[name]
            notes.append(f"replaced unreadable {name}={values[name]!r} with the fallback")
            snapped = True
            continue
        if sub:
            notes.extend(sub)
            if all(n.startswith("read ") for n in sub):  # only a name or spelling was matched
                level = "lenient" if level == "strict" else level
            else:
                snapped = True
        out[name] = v
    if snapped:
        level = "snap"
    if not values:
        return ParsedAction(dict(fb), "failed", [*notes, "no parameter of the space in the answer"], reason, predicted)
    return ParsedAction(space.validate_params(out), level, notes, reason, predicted)
