"""Strict mode: internal errors raise instead of falling back (the tests and the benchmark run with it on).

It lives in the core layer so that every layer reads the same switch: the agents (``Agent.strict``), the
gym's snapping of off-table proposals, the text backend's prompt building.
"""

from __future__ import annotations

import os

__all__ = ["STRICT_ENV", "strict_default"]

#: Environment variable that turns strict mode on for every agent that has not set ``strict`` itself
#: (``1``/``true``/``yes``); the test suite and the benchmark run with it on.
STRICT_ENV = "AUTOLLM_STRICT"


def strict_default() -> bool:
    """Whether strict mode is on where nothing else decided (the :data:`STRICT_ENV` variable)."""
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes", "on")
