"""One exception hierarchy for the whole package.

Every error raised on bad user input derives from :class:`AutoLLMSamplerError` and says what
was wrong (the field and the value) and how to fix it.
"""

from __future__ import annotations

__all__ = [
    "AutoLLMSamplerError",
    "InvalidSpaceError",
    "InvalidTrialError",
    "InvalidHistoryError",
    "RawDataError",
    "UnknownTaskError",
    "CheckpointError",
    "ConfigError",
]


class AutoLLMSamplerError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidSpaceError(AutoLLMSamplerError, ValueError):
    """A search space definition is malformed (bad bounds, empty choices, ...)."""


class InvalidTrialError(AutoLLMSamplerError, ValueError):
    """A trial does not fit its search space or carries bad numbers."""


class InvalidHistoryError(AutoLLMSamplerError, ValueError):
    """A history file or object is malformed (duplicate ids, missing fidelity, ...)."""


class RawDataError(AutoLLMSamplerError, FileNotFoundError):
    """A raw data file of the gym is missing or does not match its pinned sha256."""


class UnknownTaskError(AutoLLMSamplerError, KeyError):
    """A gym task id is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class CheckpointError(AutoLLMSamplerError, RuntimeError):
    """An agent checkpoint is missing, corrupt or does not match its manifest."""


class ConfigError(AutoLLMSamplerError, ValueError):
    """A training or benchmark configuration is invalid."""
