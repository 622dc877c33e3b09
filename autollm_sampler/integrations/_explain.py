"""Plain-words summaries of a history and of the agent's proposals (``explain`` in every integration).

Every ``explain`` (the Optuna sampler's, the Ray searcher's, ask/tell's) returns an :class:`Explanation` and
prints nothing: a ``str`` that a notebook or the interactive prompt shows as the text itself, once; in a
script, ``print(...)`` it. Rationales that share sentences (the evidence part is the same for proposals
made from the same history) are shown once: later ones say which earlier entry they share with and add
only what differs (:func:`rationale_lines`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from autollm_sampler.agent import Proposal
from autollm_sampler.agent._rationale import ordered_names
from autollm_sampler.history import History, Trial, fidelity_key
from autollm_sampler.space import SearchSpace, SimplexParam

__all__ = ["Explanation", "describe_history", "describe_proposals", "describe_roles", "fmt_fidelity", "fmt_params", "fmt_prediction", "fmt_value",
           "rationale_lines"]


class Explanation(str):
    """The text of an ``explain`` call: a plain ``str`` (``print`` it, write it to a file, search it) whose
    ``repr`` is the text itself, so that ``sampler.explain(study)`` at the end of a notebook cell or at the
    interactive prompt shows it readably, once, instead of a quoted string with ``\\n`` escapes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython / Jupyter
        p.text(str(self))


def fmt_value(x: Any) -> str:
    """A number to 5 significant digits, ``"n/a"`` for missing or non-finite values."""
    if x is None or isinstance(x, bool):
        return "n/a"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return str(x)
    return f"{v:.5g}" if math.isfinite(v) else "n/a"


def fmt_fidelity(fid: Mapping[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in fid.items()) if fid else "target (no fidelity given)"


def fmt_params(params: Mapping[str, Any]) -> str:
    parts = []
    for k, v in params.items():
        if isinstance(v, Mapping):
            inner = ", ".join(f"{c}: {float(w):.3f}" for c, w in v.items())
            parts.append(f"{k}={{{inner}}}")
        elif isinstance(v, float):
            parts.append(f"{k}={v:.4g}")
        else:
            parts.append(f"{k}={v}")
    return ", ".join(parts)


def _scale(fid: Mapping[str, float]) -> float:
    """A scalar size of a fidelity point: the sum of the log axes (the log of their product)."""
    return float(sum(math.log(v) if v > 0 else v for v in fid.values()))


def _best(trials: Sequence[Trial], sign: float) -> Trial | None:
    done = [t for t in trials if t.is_complete]
    return min(done, key=lambda t: sign * float(t.value)) if done else None  # type: ignore[arg-type]


def describe_history(history: History, space: SearchSpace, target: Mapping[str, float]) -> list[str]:
    """Lines describing the evidence: each fidelity cell's runs and best result, then the trends.

    Trends compare, for every numeric parameter, the best configuration's value across cells ordered by
    size, which is what a transfer across scales rests on.
    """
    sign = space.sign
    tkey = fidelity_key(target)
    cells = history.cells()
    if not history.trials:
        return ["No history: the first proposals can only be informed guesses.", describe_roles(space)]
    lines = [f"History: {_n(len(history), 'trial')} in {_n(len(cells), 'fidelity cell')}; direction {space.direction}.",
             describe_roles(space)]
    ordered = sorted(cells.items(), key=lambda kv: _scale(dict(kv[0])))
    bests: list[tuple[dict[str, float], Trial]] = []
    for key, trials in ordered:
        fid = dict(key)
        n_done = sum(t.is_complete for t in trials)
        n_fail = sum(t.state == "failed" for t in trials)
        n_pruned = sum(t.state == "pruned" for t in trials)
        n_run = sum(t.state == "running" for t in trials)
        is_target = key == tkey or not fid
        head = f"  {'[target] ' if is_target else ''}{fmt_fidelity(fid)}: {_n(len(trials), 'run')} ({n_done} complete"
        head += f", {n_fail} failed" if n_fail else ""
        head += f", {n_pruned} pruned" if n_pruned else ""
        head += f", {n_run} running" if n_run else ""
        head += ")"
        b = _best(trials, sign)
        if b is not None:
            head += f"; best {fmt_value(b.value)} at {fmt_params(b.params)}"
            if not is_target:
                bests.append((fid, b))
        lines.append(head)
    lines.extend(_trends(bests, space))
    return lines


def describe_roles(space: SearchSpace) -> str:
    """One line: what the agent takes each parameter to be (its role), and whether the space said so or the
    role was read from the name; a wrong reading is fixed with ``"role": ...`` in the space."""
    parts = []
    for name, p in space.params.items():
        how = "given" if p.role else "from the name"
        parts.append(f"{name} -> {space.role_of(name)} ({how})")
    return "Parameter roles: " + "; ".join(parts) + "."


def _n(k: int, word: str) -> str:
    return f"{k} {word}" if k == 1 else f"{k} {word}s"


def _trends(bests: Sequence[tuple[dict[str, float], Trial]], space: SearchSpace) -> list[str]:
    """How the best run's parameters move from the smallest to the largest cheaper cell, by role (lr first)."""
    if len(bests) < 2:
        return []
    out = []
    for name in ordered_names(space):
        p = space.params[name]
        vals = [b.params.get(name) for _, b in bests]
        if isinstance(p, SimplexParam):
            mixes = [v for v in vals if isinstance(v, Mapping)]
            if len(mixes) != len(vals):
                continue
            comp = max(p.components, key=lambda c: abs(float(mixes[-1].get(c, 0.0)) - float(mixes[0].get(c, 0.0))))
            first, last = float(mixes[0].get(comp, 0.0)), float(mixes[-1].get(comp, 0.0))
            out.append(f"  Trend: the best {name} {_verb(first, last)} on {comp} (the component that moves most) "
                       "from the smallest to the largest cheaper cell.")
            continue
        nums = [float(v) for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(nums) != len(vals) or len(nums) < 2:
            continue
        out.append(f"  Trend: the best {name} {_verb(nums[0], nums[-1])} from the smallest to the largest cheaper cell.")
    return out


def _verb(first: float, last: float) -> str:
    if math.isclose(first, last, rel_tol=1e-6):
        return f"stays at {first:.4g}"
    return f"{'falls' if last < first else 'rises'} from {first:.4g} to {last:.4g}"


def fmt_prediction(value: Any, std: Any, source: str) -> str:
    """``"predicted 2.41 +/- 0.02 (model)"``, or that there is no prediction for the target."""
    if fmt_value(value) == "n/a":
        return f"no prediction for the target ({source})"
    return f"predicted {fmt_value(value)} +/- {fmt_value(std)} ({source})"


_SENTENCE = re.compile(r"(?<=\.)\s+")


def rationale_lines(items: Sequence[tuple[str, str]], indent: str = "     ") -> dict[str, str]:
    """``label -> "why: ..."`` for ``(label, rationale)`` pairs, each sentence shown once.

    A sentence already shown under an earlier label is left out; the line then starts with how many were
    left out and where they are, e.g. ``why: (4 sentences as for trial 3) ...``.
    """
    first_seen: dict[str, str] = {}
    out: dict[str, str] = {}
    for label, text in items:
        sentences = [x for x in _SENTENCE.split(str(text).strip()) if x]
        kept, left, where = [], 0, None
        for sent in sentences:
            if sent in first_seen:
                left += 1
                where = where or first_seen[sent]
            else:
                first_seen[sent] = label
                kept.append(sent)
        head = f"({_n(left, 'sentence')} as for {where}) " if left else ""
        out[label] = f"{indent}why: {head}{' '.join(kept)}".rstrip()
    return out


def describe_proposals(proposals: Sequence[Proposal], target: Mapping[str, float]) -> list[str]:
    """Lines describing each proposal: configuration, prediction and rationale (shared sentences once)."""
    lines = [f"Proposals for {fmt_fidelity(dict(target))}:"]
    whys = rationale_lines([(f"proposal {i}", p.rationale) for i, p in enumerate(proposals, 1)])
    for i, p in enumerate(proposals, 1):
        lines.append(f"  {i}. {fmt_params(p.params)}")
        lines.append(f"     {fmt_prediction(p.predicted_value, p.predicted_std, p.source)}")
        lines.append(whys[f"proposal {i}"])
    return lines
