"""Small helpers shared by the recipes."""

from __future__ import annotations

import math

from autollm_sampler.exceptions import ConfigError


def human(x: float) -> str:
    """Format a count the way papers do: 214663680 -> '215M', 1.07e9 -> '1.07B', 4e9 -> '4B'."""
    for scale, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(x) >= scale:
            v = x / scale
            return f"{v:.3g}{suffix}"
    return f"{x:.3g}"


def round_sig(x: float, digits: int = 3) -> float:
    """Round to ``digits`` significant digits (Step Law's lr values are rounded inconsistently)."""
    if x == 0 or not math.isfinite(x):
        return x
    return float(f"{x:.{digits - 1}e}")


def check_counts(task_id: str, n_rows: int, n_cells: int, rows: int, cells: int) -> None:
    """Raise if a built task does not reproduce the row and cell counts of gym_data/README.md."""
    if n_rows != rows or n_cells != cells:
        raise ValueError(
            f"{task_id}: built {n_rows} rows in {n_cells} cells, expected {rows} rows in {cells} cells "
            "(gym_data/README.md); the raw files are not the pinned versions"
        )


def pick_column(what: str, name: str, available: list[str]) -> str:
    """Return ``name`` if it is one of ``available``, else raise :class:`ConfigError` naming the closest."""
    if name in available:
        return name
    import difflib

    close = [c for c in available if name.lower() in c.lower()][:3]
    close = close or difflib.get_close_matches(name, available, n=3, cutoff=0.4)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"unknown {what} {name!r}{hint} Choose one of {available}")
