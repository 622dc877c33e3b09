"""Small helpers shared by the recipes."""

from __future__ import annotations

import math


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
