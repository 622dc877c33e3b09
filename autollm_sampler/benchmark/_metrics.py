"""The metrics of BENCHMARK.md, as pure functions of an episode's outcomes.

Every function here takes plain numbers (the target table's optimum and 90th percentile, the direction,
the outcomes in evaluation order), so the metrics can be checked on hand-made examples and recomputed
from the cached per-episode records without loading any task.

* :func:`relative_gap`: ``best/opt - 1`` (minimise) or ``1 - best/opt`` (maximise), in percent;
* :func:`normalised_regret`: ``(best - opt) / (p90 - opt)`` clipped to ``[0, 1]``, signs mirrored when
  maximising;
* :func:`best_so_far`, :func:`hit`, :func:`cost_to_target`;
* :func:`bootstrap_ci`: the mean (or median) with a 95% bootstrap interval, resampling within strata;
* :func:`average_ranks` and :func:`tied_with_best`: ranks with ties, and "tied where intervals overlap".

Example:
    >>> relative_gap(2.02, optimum=2.0, direction="minimize")
    1.0000000000000009
    >>> normalised_regret(2.02, optimum=2.0, p90=2.1, direction="minimize")
    0.2000000000000009
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "HIT_TOLERANCE_PCT",
    "COST_THRESHOLDS_PCT",
    "relative_gap",
    "normalised_regret",
    "best_so_far",
    "hit",
    "cost_to_target",
    "bootstrap_ci",
    "CI",
    "average_ranks",
    "rank_with_ties",
    "tied_with_best",
]

#: A best-so-far within this relative gap (in %) of the optimum is a hit.
HIT_TOLERANCE_PCT = 0.1
#: Gap thresholds (in %) of the cost-to-target metric.
COST_THRESHOLDS_PCT = (1.0, 0.25)


def _sign(direction: str) -> float:
    if direction not in ("minimize", "maximize"):
        raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}")
    return 1.0 if direction == "minimize" else -1.0


def relative_gap(value: float, *, optimum: float, direction: str) -> float:
    """Relative gap of ``value`` to the table's ``optimum``, in percent (0 at the optimum).

    Minimisation: ``value / optimum - 1``; maximisation: ``1 - value / optimum``. An optimum of exactly
    zero has no relative scale; the absolute difference (times 100) is returned instead.
    """
    _sign(direction)
    if optimum == 0:
        return float(abs(value - optimum) * 100.0)
    if direction == "minimize":
        return float((value / optimum - 1.0) * 100.0)
    return float((1.0 - value / optimum) * 100.0)


def normalised_regret(value: float, *, optimum: float, p90: float, direction: str) -> float:
    """``(value - optimum) / (p90 - optimum)`` on the loss scale, clipped to ``[0, 1]``.

    ``p90`` is the 90th-percentile outcome of the target table on its bad side (for maximisation, the
    10th percentile of the scores). A degenerate table (``p90 == optimum``) gives 0 at the optimum, else 1.
    """
    s = _sign(direction)
    opt, bad, v = s * optimum, s * p90, s * value
    if bad - opt <= 0:
        return 0.0 if v <= opt else 1.0
    return float(np.clip((v - opt) / (bad - opt), 0.0, 1.0))


def best_so_far(values: Sequence[float], direction: str) -> list[float]:
    """The best outcome after each evaluation (running min, or running max when maximising)."""
    s = _sign(direction)
    out: list[float] = []
    best = math.inf
    for v in values:
        best = min(best, s * float(v))
        out.append(s * best)
    return out


def hit(gap_pct: float, tolerance_pct: float = HIT_TOLERANCE_PCT) -> bool:
    """Whether a relative gap (in %) is within ``tolerance_pct`` of the optimum."""
    return bool(gap_pct <= tolerance_pct + 1e-12)


def cost_to_target(gaps_pct: Sequence[float], costs: Sequence[float], threshold_pct: float) -> float:
    """Cumulative cost at which the gap first falls to ``threshold_pct`` or below; ``inf`` if never.

    Args:
        gaps_pct: the gap (in %) of the best-so-far (or of the recommendation) after each step.
        costs: the cost of each step (same length); cumulated here.
        threshold_pct: the gap threshold in percent, e.g. ``1.0`` or ``0.25``.
    """
    if len(gaps_pct) != len(costs):
        raise ValueError(f"gaps_pct has {len(gaps_pct)} entries but costs has {len(costs)}; pass one per step")
    total = 0.0
    for g, c in zip(gaps_pct, costs, strict=True):
        total += float(c)
        if g <= threshold_pct + 1e-12:
            return total
    return math.inf


class CI(NamedTuple):
    """``(estimate, low, high)`` of a bootstrap interval."""

    estimate: float
    low: float
    high: float

    def overlaps(self, other: CI) -> bool:
        """Whether the two intervals share at least one point."""
        return not (self.high < other.low or other.high < self.low)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    *,
    strata: Sequence[Hashable] | None = None,
    stat: str = "mean",
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> CI:
    """The ``stat`` (``"mean"`` or ``"median"``) of ``values`` with a percentile bootstrap interval.

    Resampling happens *within* each stratum (the target cell of an episode), so every bootstrap sample
    keeps the benchmark's fixed set of targets and only the seeds vary. A stratum with a single value (a
    deterministic method, run once per target) therefore contributes no sampling noise. ``inf`` values
    (e.g. a cost-to-target never reached) are allowed with ``stat="median"``.

    Example:
        >>> ci = bootstrap_ci([1.0, 2.0, 3.0, 4.0], seed=0)
        >>> ci.estimate, ci.low <= 2.5 <= ci.high
        (2.5, True)
    """
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return CI(math.nan, math.nan, math.nan)
    if stat not in ("mean", "median"):
        raise ValueError(f"stat must be 'mean' or 'median', got {stat!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    func: Callable[..., np.ndarray] = np.mean if stat == "mean" else np.median
    labels = list(strata) if strata is not None else [0] * arr.size
    if len(labels) != arr.size:
        raise ValueError(f"strata has {len(labels)} labels for {arr.size} values; give one label per value")
    groups: dict[Hashable, list[int]] = {}
    for i, g in enumerate(labels):
        groups.setdefault(g, []).append(i)
    rng = np.random.default_rng(seed)
    parts = []
    for idx in groups.values():
        sub = arr[idx]
        parts.append(sub[rng.integers(0, len(sub), size=(n_boot, len(sub)))])
    samples = np.concatenate(parts, axis=1)
    with np.errstate(invalid="ignore"):
        boots = func(samples, axis=1)
        est = float(func(arr))
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(boots, [alpha, 1.0 - alpha], method="linear") if np.all(np.isfinite(boots)) else _inf_quantiles(boots, alpha)
    return CI(est, float(lo), float(hi))


def _inf_quantiles(boots: np.ndarray, alpha: float) -> tuple[float, float]:
    srt = np.sort(boots)
    n = len(srt)
    lo = srt[min(n - 1, int(math.floor(alpha * (n - 1))))]
    hi = srt[min(n - 1, int(math.ceil((1.0 - alpha) * (n - 1))))]
    return float(lo), float(hi)


def rank_with_ties(scores: Mapping[str, float], *, lower_is_better: bool = True) -> dict[str, float]:
    """Rank methods by score (1 = best); equal scores share the average of their ranks.

    Example:
        >>> rank_with_ties({"a": 0.1, "b": 0.3, "c": 0.1})
        {'a': 1.5, 'b': 3.0, 'c': 1.5}
    """
    sign = 1.0 if lower_is_better else -1.0
    items = sorted(scores.items(), key=lambda kv: sign * kv[1])
    out: dict[str, float] = {}
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and math.isclose(items[j + 1][1], items[i][1], rel_tol=1e-12, abs_tol=1e-15):
            j += 1
        avg = (i + 1 + j + 1) / 2.0
        for m, _ in items[i : j + 1]:
            out[m] = avg
        i = j + 1
    return {m: out[m] for m in scores}


def average_ranks(
    table: Mapping[Hashable, Mapping[str, float]], *, lower_is_better: bool = True
) -> dict[str, tuple[float, int]]:
    """Average rank of each method over the comparison units (e.g. every (family, target, k)).

    Args:
        table: ``{unit: {method: score}}``; a method missing from a unit is not ranked there.

    Returns:
        ``{method: (average rank, number of units it was ranked in)}``.
    """
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for scores in table.values():
        clean = {m: float(v) for m, v in scores.items() if v is not None and not math.isnan(float(v))}
        for m, r in rank_with_ties(clean, lower_is_better=lower_is_better).items():
            sums[m] = sums.get(m, 0.0) + r
            counts[m] = counts.get(m, 0) + 1
    return {m: (sums[m] / counts[m], counts[m]) for m in sums}


def tied_with_best(cis: Mapping[str, CI], *, lower_is_better: bool = True) -> set[str]:
    """The best method by estimate plus every method whose interval overlaps the best one's."""
    valid = {m: c for m, c in cis.items() if not math.isnan(c.estimate)}
    if not valid:
        return set()
    sign = 1.0 if lower_is_better else -1.0
    best = min(valid, key=lambda m: sign * valid[m].estimate)
    return {m for m, c in valid.items() if m == best or c.overlaps(valid[best])}
