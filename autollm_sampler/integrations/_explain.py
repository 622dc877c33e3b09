"""Plain-words summaries of a history and of the agent's proposals (``explain`` in every integration)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from autollm_sampler.agent import Proposal
from autollm_sampler.history import History, Trial, fidelity_key
from autollm_sampler.space import SearchSpace, SimplexParam

__all__ = ["describe_history", "describe_proposals", "fmt_fidelity", "fmt_params", "fmt_value"]


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
        return ["No history: the first proposals can only be informed guesses."]
    lines = [f"History: {len(history)} trials in {len(cells)} fidelity cell(s); direction {space.direction}."]
    ordered = sorted(cells.items(), key=lambda kv: _scale(dict(kv[0])))
    bests: list[tuple[dict[str, float], Trial]] = []
    for key, trials in ordered:
        fid = dict(key)
        n_done = sum(t.is_complete for t in trials)
        n_fail = sum(t.state == "failed" for t in trials)
        n_pruned = sum(t.state == "pruned" for t in trials)
        n_run = sum(t.state == "running" for t in trials)
        is_target = key == tkey or not fid
        head = f"  {'[target] ' if is_target else ''}{fmt_fidelity(fid)}: {len(trials)} runs ({n_done} complete"
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


def _trends(bests: Sequence[tuple[dict[str, float], Trial]], space: SearchSpace) -> list[str]:
    if len(bests) < 2:
        return []
    out = []
    for name, p in space.params.items():
        if isinstance(p, SimplexParam):
            continue
        vals = [b.params.get(name) for _, b in bests]
        nums = [float(v) for v in vals if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(nums) != len(vals) or len(nums) < 2:
            continue
        first, last = nums[0], nums[-1]
        if math.isclose(first, last, rel_tol=1e-6):
            verb = f"stays at {first:.4g}"
        elif last < first:
            verb = f"falls from {first:.4g} to {last:.4g}"
        else:
            verb = f"rises from {first:.4g} to {last:.4g}"
        out.append(f"  Trend: the best {name} {verb} from the smallest to the largest cheaper cell.")
    return out


def describe_proposals(proposals: Sequence[Proposal], target: Mapping[str, float]) -> list[str]:
    """Lines describing each proposal: configuration, prediction and rationale."""
    lines = [f"Proposals for {fmt_fidelity(dict(target))}:"]
    for i, p in enumerate(proposals, 1):
        pred = fmt_value(p.predicted_value)
        std = fmt_value(p.predicted_std)
        lines.append(f"  {i}. {fmt_params(p.params)}")
        lines.append(f"     predicted {pred} +/- {std} ({p.source})")
        lines.append(f"     why: {p.rationale}")
    return lines
