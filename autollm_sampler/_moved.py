"""Old module paths of moved scripts: each stays importable and runnable, as a deprecated alias.

A moved module's old file holds only ``main, __getattr__ = forward(OLD, NEW)``: ``python -m OLD`` and
``OLD.main(argv)`` run ``NEW.main(argv)``, and any other name is read from ``NEW``; each use warns once
with a :class:`DeprecationWarning` that names the new path. The new module is imported by name, on use,
so the old file's layer does not import the layer the script moved to.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

__all__ = ["forward"]


def forward(old: str, new: str) -> tuple[Callable[..., int], Callable[[str], Any]]:
    """``main`` and a module ``__getattr__`` for the old module ``old`` that forward to ``new``."""

    def target() -> ModuleType:
        warnings.warn(f"{old} moved to {new} (run `python -m {new}`); the old path is a deprecated alias",
                      DeprecationWarning, stacklevel=3)
        return importlib.import_module(new)

    def main(argv: Sequence[str] | None = None) -> int:
        return int(target().main(argv))

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(f"module {old!r} has no attribute {name!r}")
        return getattr(target(), name)

    return main, __getattr__
