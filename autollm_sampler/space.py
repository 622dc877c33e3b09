"""Search spaces: typed parameters, parameter roles and the unit-cube mapping.

A :class:`SearchSpace` maps parameter names to one of four parameter types:

* :class:`FloatParam` and :class:`IntParam`: bounded numbers, optionally on a log scale or a step grid;
* :class:`CategoricalParam`: a finite list of choices. Numeric choices are treated as *ordered* values
  (positioned on a log axis when they are positive and span a wide range or have a log-scale role);
* :class:`SimplexParam`: mixture weights over named components that sum to one. Its value is a
  ``{component: weight}`` dict.

Every parameter maps to and from the unit cube ``[0, 1]^width``; the agent reads and writes configurations
in that cube, which is what makes it space-agnostic. Every parameter also carries a *role* (``lr``,
``batch_size``, ``mixture``, ``width`` ...), inferred from its name when not given.

Example:
    >>> space = SearchSpace.from_dict({
    ...     "direction": "minimize",
    ...     "params": {
    ...         "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    ...         "bs": {"type": "categorical", "choices": [64, 128, 256]},
    ...     },
    ... })
    >>> u = space.to_unit({"lr": 1e-3, "bs": 128})
    >>> [round(float(x), 3) for x in u]
    [0.5, 0.5]
    >>> space.from_unit(u)
    {'lr': 0.001, 'bs': 128}
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Annotated, Any, Literal, Union

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from autollm_sampler._io import JSONInputError, loads_json, short_repr
from autollm_sampler.exceptions import InvalidSpaceError, InvalidTrialError

__all__ = [
    "ROLES",
    "LOG_ROLES",
    "infer_role",
    "check_role",
    "FloatParam",
    "IntParam",
    "CategoricalParam",
    "SimplexParam",
    "Param",
    "SearchSpace",
    "SIMPLEX_TOL",
]

#: Parameter roles the agent knows. ``other`` is the catch-all.
ROLES: tuple[str, ...] = (
    "other",
    "lr",
    "batch_size",
    "weight_decay",
    "warmup",
    "width",
    "depth",
    "heads",
    "mlp_ratio",
    "mixture",
    "kl_coef",
    "temperature",
    "group_size",
    "dropout",
    "bias",
)
#: Roles whose numeric values live naturally on a log axis.
LOG_ROLES = frozenset({"lr", "batch_size", "weight_decay", "kl_coef", "width"})
#: Tolerance on the sum of simplex weights.
SIMPLEX_TOL = 1e-3

_LR = ("lr", "learning_rate", "learningrate")
#: Tokens that make an ``lr`` name a schedule setting rather than a learning rate (``lr_decay_iters``,
#: ``min_lr_ratio``, ``lr_scheduler_type``, ``muon_to_adam_lr``): such names get the role ``other``.
_LR_SETTING = (
    "schedule", "scheduler", "sched", "decay", "type", "style", "policy", "iters", "iter", "steps", "step",
    "epochs", "ratio", "frac", "fraction", "factor", "mult", "multiplier", "scale", "to", "cycle", "cooldown",
    "gamma", "patience", "power", "milestones", "restarts", "interval", "anneal", "annealing",
)

#: How :func:`infer_role` reads a name, first matching rule wins. Each rule is ``(role, keys, with_any,
#: unless_any)``: the name's tokens (split at ``_ - .``, spaces and camelCase, lower-cased) must contain one
#: of ``keys`` (a key ``"a_b"`` is the consecutive tokens ``a``, ``b``), and one of ``with_any`` when that is
#: given, and none of ``unless_any``.
_ROLE_PATTERNS: tuple[tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    ("dropout", ("dropout", "pdrop", "drop_path", "drop_rate", "drop_prob"), (), ()),
    ("warmup", ("warmup",), (), ()),
    ("weight_decay", ("weight_decay", "weights_decay", "weightdecay", "wd"), (), ()),
    ("other", _LR, _LR_SETTING, ()),
    ("lr", _LR, (), ()),
    ("batch_size", ("batch_size", "batchsize", "bs", "bsz", "batch"), (), ("norm",)),
    ("kl_coef", ("kl", "kl_coef", "beta"), (), ("adam", "adamw", "momentum", "optim", "optimizer")),
    ("temperature", ("temperature", "temp"), (), ()),
    ("group_size", ("group_size", "num_generations", "group"), (), ()),
    ("mlp_ratio", ("mlp_ratio", "ffn_ratio", "mlp", "ffn", "ff"), (), ("size", "dim", "hidden", "width", "d")),
    ("heads", ("heads", "n_head", "num_head", "nhead", "numh"), (), ()),
    ("depth", ("depth", "layers", "n_layer", "num_layer", "nlayers", "numl"), (), ()),
    (
        "width",
        ("width", "hidden", "embed", "embd", "d_model", "dmodel", "h", "dim", "d_ff", "intermediate",
         "embedding_dim", "embedding_size"),
        (),
        ("act", "activation"),
    ),
    ("mixture", ("mixture", "mix", "weights", "ratio"), (), ("decay", "cooldown", "anneal", "schedule", "scheduler")),
    ("bias", ("bias",), (), ()),
)

_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_SPLIT = re.compile(r"[^a-z0-9]+")


def _name_tokens(name: str) -> tuple[str, ...]:
    return tuple(t for t in _SPLIT.split(_CAMEL.sub(r"\1_\2", name).lower()) if t)


def _has_key(tokens: tuple[str, ...], key: str) -> bool:
    parts = key.split("_")
    n = len(parts)
    return any(list(tokens[i : i + n]) == parts for i in range(len(tokens) - n + 1))


@lru_cache(maxsize=4096)
def infer_role(name: str) -> str:
    """Guess a parameter's role from its name (``"peak_lr"`` -> ``"lr"``); ``"other"`` if unsure.

    The name is split into words at ``_``, ``-``, ``.``, spaces and camelCase, and read with the ordered
    rules of ``_ROLE_PATTERNS``: ``hidden_dropout_prob`` is ``dropout``, ``lr_warmup_steps`` ``warmup``,
    ``min_lr_ratio`` and ``lr_scheduler_type`` ``other`` (schedule settings, not learning rates),
    ``num_attention_heads`` ``heads``, ``n_embd`` ``width``. Pass ``role=`` to override the guess.

    Example:
        >>> [infer_role(n) for n in ("learning_rate", "per_device_train_batch_size", "embed_dropout", "n_layer")]
        ['lr', 'batch_size', 'dropout', 'depth']
    """
    tokens = _name_tokens(str(name))
    token_set = set(tokens)
    for role, keys, with_any, unless_any in _ROLE_PATTERNS:
        if with_any and token_set.isdisjoint(with_any):
            continue
        if unless_any and not token_set.isdisjoint(unless_any):
            continue
        if any(_has_key(tokens, k) for k in keys):
            return role
    return "other"


def check_role(role: str) -> str:
    """``role`` as a known role name; case and surrounding spaces are ignored (``" LR "`` -> ``"lr"``).

    Raises:
        ValueError: for an unknown role, listing the valid roles (and the likely one when the name says).
    """
    if not isinstance(role, str):
        raise ValueError(f"a role must be a string, one of {', '.join(ROLES)}; got {type(role).__name__}")
    norm = role.strip().lower()
    if norm in ROLES:
        return norm
    shown = role if len(role) <= 60 else role[:57] + "..."
    hint = infer_role(role)
    suggestion = f"; did you mean {hint!r}?" if hint != "other" else ""
    raise ValueError(f"unknown role {shown!r}: use one of {', '.join(ROLES)}{suggestion}")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _finite(name: str, value: Any) -> float:
    if not _is_number(value):
        raise InvalidTrialError(f"parameter {name!r}: expected a number, got {short_repr(value)}")
    try:
        v = float(value)
    except OverflowError:
        raise InvalidTrialError(f"parameter {name!r}: the integer {short_repr(value)} is too large for a number") from None
    if not math.isfinite(v):
        raise InvalidTrialError(f"parameter {name!r}: value {value!r} is not finite; use a real number")
    return v


class _ParamBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    role: str | None = None

    @field_validator("role")
    @classmethod
    def _known_role(cls, v: str | None) -> str | None:
        return None if v is None else check_role(v)

    def resolved_role(self, name: str) -> str:
        role = self.role or infer_role(name)
        return role if role in ROLES else "other"


class FloatParam(_ParamBase):
    """A float in ``[low, high]``, optionally log-scaled or on a ``step`` grid."""

    type: Literal["float"] = "float"
    low: float
    high: float
    log: bool = False
    step: float | None = None

    @model_validator(mode="after")
    def _check(self) -> FloatParam:
        for field in ("low", "high"):
            if not math.isfinite(getattr(self, field)):
                raise ValueError(f"{field}={getattr(self, field)!r} is not finite")
        if self.low > self.high:
            raise ValueError(f"low={self.low!r} is greater than high={self.high!r}; swap them")
        if self.log and self.low <= 0:
            raise ValueError(f"log=True needs low > 0, got low={self.low!r}")
        if self.log and self.step is not None:
            raise ValueError("log=True and step are exclusive; drop one of them")
        if self.step is not None and not (self.step > 0):
            raise ValueError(f"step must be > 0, got {self.step!r}")
        return self

    @property
    def width(self) -> int:
        return 1

    def validate_value(self, name: str, value: Any) -> float:
        v = _finite(name, value)
        tol = 1e-9 * max(1.0, abs(self.high), abs(self.low))
        if v < self.low - tol or v > self.high + tol:
            raise InvalidTrialError(
                f"parameter {name!r}: value {v!r} is outside [{self.low!r}, {self.high!r}]"
            )
        return min(max(v, self.low), self.high)

    def to_unit(self, value: Any) -> list[float]:
        v = float(value)
        if self.high == self.low or (self.log and math.log(self.high) == math.log(self.low)):
            return [0.5]
        if self.log:
            return [_clip01((math.log(v) - math.log(self.low)) / (math.log(self.high) - math.log(self.low)))]
        return [_clip01(_frac(v, self.low, self.high))]

    def to_unit_array(self, v: np.ndarray) -> np.ndarray | None:
        """:meth:`to_unit` of many values at once, or ``None`` where only the scalar path is exact
        (a value it cannot take, a range wider than the largest float)."""
        if self.high == self.low or (self.log and math.log(self.high) == math.log(self.low)):
            return np.full(len(v), 0.5)
        if self.log:
            return _log_unit_array(v, self.low, self.high)
        span = self.high - self.low
        if not math.isfinite(span) or not np.all(np.isfinite(v)):
            return None
        return np.clip((v - self.low) / span, 0.0, 1.0)

    def from_unit(self, u: Sequence[float] | np.ndarray) -> float:
        x = _clip01(float(u[0]))
        if self.log:
            v = math.exp(math.log(self.low) + x * (math.log(self.high) - math.log(self.low)))
        else:
            v = _lerp(self.low, self.high, x)
        if self.step is not None:
            n_max = self.n_steps()
            if n_max is not None:
                return self._grid_value(v, n_max)
        v = float(f"{v:.12g}")  # drop float noise from the exp/log round trip
        return float(min(max(v, self.low), self.high))

    def n_steps(self) -> int | None:
        """The index of the last point of the ``step`` grid (``None`` without a step, or when the grid is so
        fine that the count is not a finite float: then every float in the range is taken as on the grid)."""
        if self.step is None:
            return None
        k = _steps(self.high, self.low, self.step)
        if not math.isfinite(k) or k > 2.0**62:
            return None
        return int(math.floor(k + 1e-9))

    def on_grid(self, value: float) -> bool:
        """Whether ``value`` is in range and on the ``step`` grid, by the test Optuna applies
        (``(value - low) / step`` within ``1e-8`` of an integer)."""
        if not (self.low <= value <= self.high):
            return False
        if self.step is None:
            return True
        k = _steps(value, self.low, self.step)
        return math.isfinite(k) and abs(k - round(k)) < 1e-8

    def _grid_value(self, v: float, n_max: int) -> float:
        """The grid point nearest ``v`` that is exactly on the grid as a float.

        Far from ``low`` (``k = (v - low) / step`` in the trillions) most products ``low + k * step`` miss the
        grid by float rounding, so the nearest grid indices are tried in turn, each as written to 12
        significant digits (no float noise) and as computed.
        """
        n = min(max(round(_steps(v, self.low, self.step)), 0), n_max)  # type: ignore[arg-type]
        first: float | None = None
        for d in range(64):
            for m in ((n + d, n - d) if d else (n,)):
                if not 0 <= m <= n_max:
                    continue
                w = _lerp_steps(self.low, self.step, m)  # type: ignore[arg-type]
                w = min(max(w, self.low), self.high)
                if first is None:
                    first = w
                for c in (float(f"{w:.12g}"), w):
                    if self.on_grid(c) and abs(_steps(c, self.low, self.step) - m) < 0.5:  # type: ignore[arg-type]
                        return c
        return float(first if first is not None else self.low)

    def sample(self, rng: np.random.Generator) -> float:
        return self.from_unit([rng.random()])


class IntParam(_ParamBase):
    """An integer in ``[low, high]``, optionally log-scaled, on a ``step`` grid."""

    type: Literal["int"] = "int"
    low: int
    high: int
    log: bool = False
    step: int = 1

    @model_validator(mode="after")
    def _check(self) -> IntParam:
        if self.low > self.high:
            raise ValueError(f"low={self.low!r} is greater than high={self.high!r}; swap them")
        if self.log and self.low <= 0:
            raise ValueError(f"log=True needs low > 0, got low={self.low!r}")
        if self.step < 1:
            raise ValueError(f"step must be >= 1, got {self.step!r}")
        if self.log and self.step != 1:
            raise ValueError("log=True needs step=1; drop one of them")
        return self

    @property
    def width(self) -> int:
        return 1

    def validate_value(self, name: str, value: Any) -> int:
        v = _finite(name, value)
        if v != round(v):
            raise InvalidTrialError(f"parameter {name!r}: value {value!r} is not an integer")
        iv = int(round(v))
        if iv < self.low or iv > self.high:
            raise InvalidTrialError(f"parameter {name!r}: value {iv!r} is outside [{self.low!r}, {self.high!r}]")
        return iv

    def to_unit(self, value: Any) -> list[float]:
        if self.high == self.low:
            return [0.5]
        if self.log:
            v = float(value)
            return [_clip01((math.log(v) - math.log(self.low)) / (math.log(self.high) - math.log(self.low)))]
        # integers subtract exactly: floats lose the low digits of wide ranges (beyond 2**53)
        v = int(value) if isinstance(value, (int, np.integer)) else float(value)
        return [_clip01((v - self.low) / (self.high - self.low))]

    def to_unit_array(self, v: np.ndarray) -> np.ndarray | None:
        """:meth:`to_unit` of many values at once, or ``None`` where only the scalar path is exact
        (a value it cannot take, integers beyond 2**53)."""
        if self.high == self.low:
            return np.full(len(v), 0.5)
        if self.log:
            return _log_unit_array(v, self.low, self.high)
        if max(abs(self.low), abs(self.high)) >= 2**53 or not np.all(np.isfinite(v)):
            return None
        return np.clip((v - self.low) / (self.high - self.low), 0.0, 1.0)

    def from_unit(self, u: Sequence[float] | np.ndarray) -> int:
        x = _clip01(float(u[0]))
        n_max = (self.high - self.low) // self.step
        if self.log:
            v = math.exp(math.log(self.low) + x * (math.log(self.high) - math.log(self.low)))
            n = round((v - self.low) / self.step)
        else:
            n = round(x * (self.high - self.low) / self.step)  # without adding low: exact at huge bounds
        return int(self.low + min(max(n, 0), n_max) * self.step)

    def sample(self, rng: np.random.Generator) -> int:
        return self.from_unit([rng.random()])


def _log_unit_array(v: np.ndarray, low: float, high: float) -> np.ndarray | None:
    """Positions of ``v`` on the log axis ``[low, high]``, clipped to ``[0, 1]``; ``None`` when a value is not
    positive (the scalar path then raises, as ``math.log`` does)."""
    if not np.all(v > 0):
        return None
    lo, hi = math.log(low), math.log(high)
    return np.clip((np.log(v) - lo) / (hi - lo), 0.0, 1.0)  # type: ignore[no-any-return]


def _clip01(x: float) -> float:
    """``x`` clipped to ``[0, 1]`` (NaN stays NaN, as with ``np.clip``), without numpy's per-call cost."""
    return float(min(max(x, 0.0), 1.0)) if x == x else float("nan")


def _lerp(low: float, high: float, x: float) -> float:
    """``low + x * (high - low)``, also when ``high - low`` overflows (a range like ``[-1e308, 1e308]``)."""
    span = high - low
    if math.isfinite(span):
        return low + x * span
    return 2.0 * (low / 2.0 + x * (high / 2.0 - low / 2.0))


def _frac(v: float, low: float, high: float) -> float:
    """``(v - low) / (high - low)``, also when the differences overflow."""
    span = high - low
    if math.isfinite(span) and math.isfinite(v - low):
        return (v - low) / span
    return (v / 2.0 - low / 2.0) / (high / 2.0 - low / 2.0)


def _steps(v: float, low: float, step: float) -> float:
    """``(v - low) / step`` (how many steps ``v`` is above ``low``), also when ``v - low`` overflows."""
    d = v - low
    if math.isfinite(d):
        return d / step
    return (v / 2.0 - low / 2.0) / step * 2.0


def _lerp_steps(low: float, step: float, m: int) -> float:
    """``low + m * step``, also when ``m * step`` overflows on the way."""
    w = low + m * step
    if math.isfinite(w):
        return w
    return 2.0 * (low / 2.0 + m * (step / 2.0))


Choice = Union[bool, int, float, str]


class CategoricalParam(_ParamBase):
    """A finite list of choices. Numeric choices are positioned as ordered values in the unit cube."""

    type: Literal["categorical"] = "categorical"
    choices: tuple[Choice, ...]

    @model_validator(mode="after")
    def _check(self) -> CategoricalParam:
        if len(self.choices) == 0:
            raise ValueError("choices is empty; give at least one choice")
        for c in self.choices:
            if isinstance(c, float) and not math.isfinite(c):
                raise ValueError(f"choice {c!r} is not finite")
        keys = [_choice_key(c) for c in self.choices]
        if len(set(keys)) != len(keys):
            raise ValueError(f"choices contain duplicates: {list(self.choices)!r}")
        return self

    @property
    def width(self) -> int:
        return 1

    @property
    def numeric(self) -> bool:
        return all(_is_number(c) for c in self.choices)

    def _cache_key(self) -> tuple[tuple[Choice, ...], tuple[Any, ...]]:
        # the types keep True apart from 1 (they compare and hash equal)
        return self.choices, tuple(type(c) for c in self.choices)

    def positions(self, role: str = "other") -> np.ndarray:
        """Unit-cube position of each choice (ordered by value for numeric choices). Do not mutate it."""
        return _categorical_positions(self._cache_key(), role)

    def index_of(self, name: str, value: Any) -> int:
        idx = _categorical_lookup(self._cache_key()).get(_choice_key(value))
        if idx is not None:
            return idx
        if _is_number(value) and self.numeric:
            for i, c in enumerate(self.choices):
                if math.isclose(float(c), float(value), rel_tol=1e-9, abs_tol=1e-12):
                    return i
        raise InvalidTrialError(
            f"parameter {name!r}: value {value!r} is not one of the choices {list(self.choices)!r}"
        )

    def validate_value(self, name: str, value: Any) -> Choice:
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidTrialError(f"parameter {name!r}: value {value!r} is not finite")
        return self.choices[self.index_of(name, value)]

    def to_unit(self, value: Any, role: str = "other") -> list[float]:
        return [float(self.positions(role)[self.index_of("?", value)])]

    def from_unit(self, u: Sequence[float] | np.ndarray, role: str = "other") -> Choice:
        pos = self.positions(role)
        return self.choices[int(np.argmin(np.abs(pos - float(u[0]))))]

    def sample(self, rng: np.random.Generator) -> Choice:
        return self.choices[int(rng.integers(len(self.choices)))]


@lru_cache(maxsize=8192)
def _categorical_positions(key: tuple[tuple[Choice, ...], tuple[Any, ...]], role: str) -> np.ndarray:
    choices = key[0]
    n = len(choices)
    if n == 1:
        out = np.array([0.5])
    elif not all(_is_number(c) for c in choices):
        out = np.linspace(0.0, 1.0, n)
    else:
        vals = np.array([float(c) for c in choices])
        if vals.min() > 0 and (role in LOG_ROLES or vals.max() / vals.min() > 20):
            vals = np.log(vals)
        if not math.isfinite(float(vals.max()) - float(vals.min())):
            vals = vals / 2.0  # a range wider than the largest float: positions are scale-free
        lo, hi = vals.min(), vals.max()
        out = np.full(n, 0.5) if hi == lo else (vals - lo) / (hi - lo)
    out.setflags(write=False)
    return out


@lru_cache(maxsize=8192)
def _categorical_lookup(key: tuple[tuple[Choice, ...], tuple[Any, ...]]) -> dict[tuple[str, Any], int]:
    out: dict[tuple[str, Any], int] = {}
    for i, c in enumerate(key[0]):
        out.setdefault(_choice_key(c), i)
    return out


def _choice_key(c: Any) -> tuple[str, Any]:
    if isinstance(c, (bool, np.bool_)):
        return ("bool", bool(c))
    if _is_number(c):
        return ("num", float(c))
    return ("str", str(c))


class SimplexParam(_ParamBase):
    """Mixture weights over ``components``: each weight in ``[0, 1]``, summing to one.

    The value is a ``{component: weight}`` dict with every component present.
    """

    type: Literal["simplex"] = "simplex"
    components: tuple[str, ...]
    role: str | None = "mixture"

    @model_validator(mode="after")
    def _check(self) -> SimplexParam:
        if len(self.components) < 2:
            raise ValueError("a simplex needs at least two components")
        if len(set(self.components)) != len(self.components):
            raise ValueError(f"components contain duplicates: {list(self.components)!r}")
        return self

    @property
    def width(self) -> int:
        return len(self.components)

    def validate_value(self, name: str, value: Any) -> dict[str, float]:
        if not isinstance(value, Mapping):
            raise InvalidTrialError(
                f"parameter {name!r}: a simplex value must be a {{component: weight}} mapping, got {value!r}"
            )
        unknown = sorted(set(map(str, value)) - set(self.components))
        if unknown:
            raise InvalidTrialError(f"parameter {name!r}: unknown component(s) {unknown!r}")
        out: dict[str, float] = {}
        for comp in self.components:
            w = _finite(f"{name}.{comp}", value.get(comp, 0.0))
            if w < -1e-12 or w > 1 + 1e-12:
                raise InvalidTrialError(f"parameter {name!r}: weight of {comp!r} is {w!r}, outside [0, 1]")
            out[comp] = min(max(w, 0.0), 1.0)
        total = sum(out.values())
        if abs(total - 1.0) > SIMPLEX_TOL:
            raise InvalidTrialError(
                f"parameter {name!r}: weights sum to {total:.6g}, not 1 (tolerance {SIMPLEX_TOL}); "
                "normalise them before passing them in"
            )
        return out

    def to_unit(self, value: Mapping[str, float]) -> list[float]:
        return [float(value.get(c, 0.0)) for c in self.components]

    def from_unit(self, u: Sequence[float] | np.ndarray) -> dict[str, float]:
        w = np.clip(np.asarray(u, dtype=float)[: self.width], 0.0, None)
        total = float(w.sum())
        w = np.full(self.width, 1.0 / self.width) if total <= 0 else w / total
        return {c: float(x) for c, x in zip(self.components, w, strict=True)}

    def sample(self, rng: np.random.Generator) -> dict[str, float]:
        return self.from_unit(rng.dirichlet(np.ones(self.width)))


Param = Annotated[Union[FloatParam, IntParam, CategoricalParam, SimplexParam], Field(discriminator="type")]
_PARAM_ADAPTER: TypeAdapter[Any] = TypeAdapter(Param)


class SearchSpace(BaseModel):
    """An ordered mapping of parameter names to parameters, plus the optimisation direction.

    Example:
        >>> space = SearchSpace(params={"lr": FloatParam(low=1e-4, high=1e-1, log=True)})
        >>> space.width, space.roles()
        (1, ['lr'])
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    params: dict[str, Param]
    direction: Literal["minimize", "maximize"] = "minimize"

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        for name in self.params:
            if not isinstance(name, str) or not name:
                raise ValueError(f"parameter names must be non-empty strings, got {name!r}")
        return self

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        """Build a space from plain data (the CLI's YAML/JSON format), with readable, bounded errors."""
        if not isinstance(data, Mapping):
            raise InvalidSpaceError(
                f"a search space must be a mapping with 'params' (and 'direction'), got {type(data).__name__}"
            )
        check_plain_data(data)
        if "params" not in data:
            defs = [str(k) for k, v in data.items() if isinstance(v, Mapping) and "type" in v]
            if defs:
                raise InvalidSpaceError(
                    f"invalid search space: parameter definitions {short_repr(defs, 120)} are at the top level; put "
                    "them under 'params': {'params': {NAME: {'type': ...}, ...}, 'direction': 'minimize'}"
                )
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise InvalidSpaceError(_format_validation_error("search space", exc)) from None

    @classmethod
    def from_json(cls, text: str) -> SearchSpace:
        try:
            data = loads_json(text)
        except JSONInputError as exc:
            where = f", line {exc.lineno}" if exc.lineno else ""
            raise InvalidSpaceError(f"search space{where}: {exc.msg}") from None
        return cls.from_dict(data)

    def to_json(self) -> str:
        return self.model_dump_json()

    # ----------------------------------------------------------------- geometry
    @property
    def names(self) -> list[str]:
        return list(self.params)

    @property
    def width(self) -> int:
        """Number of unit-cube coordinates (a simplex takes one per component)."""
        return sum(p.width for p in self.params.values())

    @property
    def sign(self) -> float:
        """``+1`` for minimisation, ``-1`` for maximisation (multiply values to get a loss)."""
        return 1.0 if self.direction == "minimize" else -1.0

    def role_of(self, name: str) -> str:
        return self.params[name].resolved_role(name)

    def roles(self) -> list[str]:
        """The role of every unit-cube coordinate, in order."""
        out: list[str] = []
        for name, p in self.params.items():
            out.extend([p.resolved_role(name)] * p.width)
        return out

    def validate_params(self, params: Mapping[str, Any], *, partial: bool = False) -> dict[str, Any]:
        """Check a configuration against the space and return it normalised.

        Raises:
            InvalidTrialError: naming the unknown, missing or out-of-range parameter and its value.
        """
        if not isinstance(params, Mapping):
            raise InvalidTrialError(f"params must be a mapping of name to value, got {params!r}")
        unknown = sorted(set(params) - set(self.params))
        if unknown:
            raise InvalidTrialError(
                f"unknown parameter(s) {unknown!r}; the space has {sorted(self.params)!r}"
            )
        missing = [n for n in self.params if n not in params]
        if missing and not partial:
            raise InvalidTrialError(f"missing parameter(s) {missing!r}")
        return {n: p.validate_value(n, params[n]) for n, p in self.params.items() if n in params}

    def to_unit(self, params: Mapping[str, Any]) -> np.ndarray:
        """Map a (valid) configuration into ``[0, 1]^width``."""
        out: list[float] = []
        for name, p in self.params.items():
            if isinstance(p, CategoricalParam):
                out.extend(p.to_unit(params[name], p.resolved_role(name)))
            else:
                out.extend(p.to_unit(params[name]))
        return np.asarray(out, dtype=float)

    def to_unit_many(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Map many (valid) configurations at once; shape ``(len(configs), width)``.

        Same result as stacking :meth:`to_unit` row by row, but a categorical's lookup tables are built once
        per parameter instead of once per value, which matters for wide spaces with thousands of rows.
        """
        out = np.empty((len(configs), self.width), dtype=float)
        col = 0
        for name, p in self.params.items():
            if isinstance(p, CategoricalParam):
                pos = p.positions(p.resolved_role(name))
                get = _categorical_lookup(p._cache_key()).get
                idxs: list[int] = []
                for cfg in configs:
                    v = cfg[name]
                    tv = type(v)  # _choice_key inlined for the common types (same keys)
                    idx = get(("num", float(v)) if tv is float or tv is int else ("str", v) if tv is str else _choice_key(v))
                    idxs.append(idx if idx is not None else p.index_of(name, v))
                out[:, col] = pos[idxs] if idxs else 0.0
            elif isinstance(p, SimplexParam):
                for j, cfg in enumerate(configs):
                    out[j, col : col + p.width] = p.to_unit(cfg[name])
            else:
                vals = np.fromiter(map(itemgetter(name), configs), float, len(configs))
                fast = p.to_unit_array(vals)
                if fast is not None:
                    out[:, col] = fast
                else:  # the scalar path raises on a value it cannot read, or handles extreme ranges exactly
                    for j, cfg in enumerate(configs):
                        out[j, col] = p.to_unit(cfg[name])[0]
            col += p.width
        return out

    def snap_unit_many(self, u: np.ndarray) -> np.ndarray:
        """Snap many unit-cube points onto the space at once; shape ``(n, width)`` in and out.

        Row ``i`` of the result is, up to float rounding of continuous values, ``to_unit(from_unit(u[i]))``:
        integers, step grids and categorical choices land on their grid, a simplex is renormalised. It
        builds no configuration dicts, so the agent can snap and dedupe hundreds of candidates cheaply and
        convert only the ones it picks with :meth:`from_unit`.
        """
        arr = np.asarray(u, dtype=float)
        if arr.ndim != 2 or arr.shape[1] != self.width:
            raise InvalidTrialError(f"unit points have shape {arr.shape}, expected (n, {self.width})")
        out = np.clip(arr, 0.0, 1.0)
        col = 0
        for name, p in self.params.items():
            x = out[:, col]
            if isinstance(p, CategoricalParam):
                pos = p.positions(p.resolved_role(name))
                out[:, col] = pos[np.abs(x[:, None] - pos[None, :]).argmin(axis=1)]
            elif isinstance(p, SimplexParam):
                seg = out[:, col : col + p.width]
                tot = seg.sum(axis=1, keepdims=True)
                out[:, col : col + p.width] = np.where(tot > 0, seg / np.where(tot > 0, tot, 1.0), 1.0 / p.width)
            elif isinstance(p, IntParam):
                if p.high == p.low:
                    out[:, col] = 0.5
                else:
                    lo, hi = float(p.low), float(p.high)
                    v = np.exp(math.log(lo) + x * (math.log(hi) - math.log(lo))) if p.log else lo + x * (hi - lo)
                    k = np.clip(np.round((v - lo) / p.step), 0, (p.high - p.low) // p.step)
                    iv = lo + k * p.step
                    if p.log:
                        out[:, col] = np.clip((np.log(iv) - math.log(lo)) / (math.log(hi) - math.log(lo)), 0, 1)
                    else:
                        out[:, col] = np.clip((iv - lo) / (hi - lo), 0, 1)
            elif isinstance(p, FloatParam):
                if p.high == p.low or (p.log and math.log(p.high) == math.log(p.low)):
                    out[:, col] = 0.5
                elif p.step is not None and math.isfinite(p.high - p.low):
                    span = p.high - p.low
                    k_max = math.floor(span / p.step + 1e-9)
                    k = np.clip(np.round(x * span / p.step), 0, k_max)
                    out[:, col] = np.clip(k * p.step / span, 0, 1)
            col += p.width
        return out

    def from_unit(self, u: Sequence[float] | np.ndarray) -> dict[str, Any]:
        """Map a unit-cube point to the nearest valid configuration (snapping included)."""
        arr = np.asarray(u, dtype=float)
        if arr.shape != (self.width,):
            raise InvalidTrialError(f"unit vector has shape {arr.shape}, expected ({self.width},)")
        out: dict[str, Any] = {}
        i = 0
        for name, p in self.params.items():
            seg = arr[i : i + p.width]
            if isinstance(p, CategoricalParam):
                out[name] = p.from_unit(seg, p.resolved_role(name))
            else:
                out[name] = p.from_unit(seg)
            i += p.width
        return out

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        return {n: p.sample(rng) for n, p in self.params.items()}

    def config_key(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """A hashable key of a configuration (floats rounded to 10 significant digits)."""
        key: list[Any] = []
        for name, p in self.params.items():
            v = params[name]
            if isinstance(p, SimplexParam):
                key.append(tuple(round(float(v[c]), 6) for c in p.components))
            elif _is_number(v):
                key.append(float(f"{float(v):.10g}"))
            else:
                key.append(_choice_key(v))
        return tuple(key)

    def grid_size(self) -> int | None:
        """Number of distinct configurations if the space is finite, else ``None``."""
        total = 1
        for p in self.params.values():
            if isinstance(p, CategoricalParam):
                total *= len(p.choices)
            elif isinstance(p, IntParam):
                total *= (p.high - p.low) // p.step + 1
            elif isinstance(p, FloatParam) and p.step is not None:
                n_max = p.n_steps()
                if n_max is None:
                    return None
                total *= n_max + 1
            else:
                return None
        return total


#: At most this many problems are listed in one validation message (the count of the rest is given).
MAX_ERRORS_SHOWN = 5


_PARAM_TAGS = ("float", "int", "categorical", "simplex")


def _format_validation_error(what: str, exc: ValidationError) -> str:
    """One bounded line per problem (the first :data:`MAX_ERRORS_SHOWN`), quoting input with :func:`short_repr`."""
    errors = exc.errors(include_url=False)
    parts = []
    for err in errors[:MAX_ERRORS_SHOWN]:
        locs = list(err.get("loc", ()))
        # the tag pydantic adds for the branch of the parameter union ("params.lr.float.high") is the type
        # the user wrote, not a field of theirs: leave it out ("params.lr.high")
        tag_at = 2 if locs[:1] == ["params"] else 0
        if len(locs) > tag_at and locs[tag_at] in _PARAM_TAGS:
            del locs[tag_at]
        loc = ".".join(str(x) for x in locs)
        msg = str(err.get("msg", "invalid"))
        msg = msg[len("Value error, "):] if msg.startswith("Value error, ") else msg
        got = short_repr(err.get("input"))
        parts.append(f"{loc}: {msg} (got {got})" if loc else f"{msg} (got {got})")
    if len(errors) > MAX_ERRORS_SHOWN:
        parts.append(f"and {len(errors) - MAX_ERRORS_SHOWN} more")
    return f"invalid {what}: " + "; ".join(parts)


def check_plain_data(data: Any, where: str = "") -> None:
    """Refuse numbers plain data cannot hold: integers beyond a float's range (``10**400``).

    Raises:
        InvalidSpaceError: naming the field (``params.lr.high``).
    """
    stack: list[tuple[Any, str]] = [(data, where)]
    while stack:
        x, at = stack.pop()
        if isinstance(x, Mapping):
            stack.extend((v, f"{at}.{k}" if at else str(k)) for k, v in x.items())
        elif isinstance(x, (list, tuple)):
            stack.extend((v, f"{at}[{i}]") for i, v in enumerate(x))
        elif isinstance(x, int) and not isinstance(x, bool) and x.bit_length() > 1000:
            raise InvalidSpaceError(
                f"field {short_repr(at or '(top level)', 120)}: an integer of {x.bit_length()} bits is too large "
                "for a number (a float ends near 1.8e308)"
            )


def parse_param(data: Mapping[str, Any]) -> Param:
    """Validate one parameter definition (``{"type": "float", ...}``)."""
    try:
        return _PARAM_ADAPTER.validate_python(dict(data))  # type: ignore[no-any-return]
    except ValidationError as exc:
        raise InvalidSpaceError(_format_validation_error("parameter", exc)) from None


class Projector:
    """Fast, reusable :func:`project_unit` into one destination space (axis tables precomputed).

    A value it cannot place raises :class:`InvalidTrialError` naming the parameter: text or a bool for a
    number, a non-finite number, a simplex value that is not a mapping of finite weights >= 0 with a positive
    sum, anything but a bool, number or text for a categorical. Only a *missing* parameter is filled in (see
    :func:`project_unit`), and, with ``lenient_choices`` (the default, for histories whose cells have
    their own choice sets, as HW-GPT-Bench's do), a categorical value ``dst`` does not offer takes the
    centre 0.5; with ``lenient_choices=False`` it raises.
    """

    def __init__(self, dst: SearchSpace, lenient_choices: bool = True) -> None:
        self.dst = dst
        self.lenient_choices = lenient_choices
        self._axes: dict[str, tuple[np.ndarray, np.ndarray, bool] | None] = {}
        for name, p in dst.params.items():
            self._axes[name] = _numeric_axis(p, name)
        self._memo: dict[int, tuple[Any, np.ndarray]] = {}

    @classmethod
    def for_space(cls, dst: SearchSpace) -> Projector:
        """A shared projector per space object (its memo makes repeated histories cheap)."""
        hit = _PROJECTORS.get(id(dst))
        if hit is not None and hit[0] is dst:
            return hit[1]
        if len(_PROJECTORS) > 64:
            _PROJECTORS.clear()
        proj = cls(dst)
        _PROJECTORS[id(dst)] = (dst, proj)
        return proj

    def __call__(self, params: Mapping[str, Any]) -> np.ndarray:
        """Project ``params``; results are memoised per params object (treat them as read-only)."""
        hit = self._memo.get(id(params))
        if hit is not None and hit[0] is params:
            return hit[1]
        out = self._project(params)
        if len(self._memo) > 200_000:
            self._memo.clear()
        self._memo[id(params)] = (params, out)
        return out

    def _project(self, params: Mapping[str, Any]) -> np.ndarray:
        by_role: dict[str, list[float]] = {}
        carried: dict[str, list[float]] = {}
        dst = self.dst
        for name, p in dst.params.items():
            if name not in params:
                continue
            u = self._place(name, p, params[name])
            carried[name] = u
            by_role.setdefault(p.resolved_role(name), []).extend(u)
        out: list[float] = []
        for name, p in dst.params.items():
            if name in carried:
                out.extend(carried[name])
            elif isinstance(p, SimplexParam):
                out.extend([1.0 / p.width] * p.width)
            else:
                pool = by_role.get(p.resolved_role(name))
                out.append(float(np.mean(pool)) if pool else 0.5)
        return np.asarray(out, dtype=float)

    def _place(self, name: str, p: Any, v: Any) -> list[float]:
        """Unit coordinates of one value; a value that cannot be read raises (it is never guessed)."""
        if isinstance(p, SimplexParam):
            if not isinstance(v, Mapping):
                raise InvalidTrialError(
                    f"parameter {name!r}: a simplex value must be a {{component: weight}} mapping, got {short_repr(v)}"
                )
            ws = []
            for c in p.components:
                w = v.get(c, 0.0)
                if not _is_number(w) or not math.isfinite(float(w)) or float(w) < 0:
                    raise InvalidTrialError(
                        f"parameter {name!r}: weight of {short_repr(c)} is {short_repr(w)}; give a finite number >= 0"
                    )
                ws.append(float(w))
            total = sum(ws)
            if total <= 0:
                raise InvalidTrialError(
                    f"parameter {name!r}: the weights of {short_repr(list(p.components))} sum to 0; nothing to carry over"
                )
            return [w / total for w in ws]  # components matched by name; weights of other components are not ours
        axis = self._axes[name]
        if axis is not None and _is_number(v):
            x = float(v)
            if not math.isfinite(x):
                raise InvalidTrialError(f"parameter {name!r}: value {short_repr(v)} is not finite")
            vals, pos, use_log = axis
            if use_log:
                x = math.log(x) if x > 0 else -1e300
            return [float(np.interp(x, vals, pos))] if len(vals) > 1 else [float(pos[0])]
        if isinstance(p, CategoricalParam):
            if not _is_plain_choice(v):
                raise InvalidTrialError(
                    f"parameter {name!r}: value {short_repr(v)} is not a choice (a bool, number or text)"
                )
            idx = _categorical_lookup(p._cache_key()).get(_choice_key(v))
            if idx is None and self.lenient_choices:
                return [0.5]  # a choice of the run's own space that the destination does not offer
            if idx is None:
                raise InvalidTrialError(
                    f"parameter {name!r}: value {short_repr(v)} is not one of the choices "
                    f"{short_repr(list(p.choices), 200)}"
                )
            return [float(p.positions(p.resolved_role(name))[idx])]
        raise InvalidTrialError(f"parameter {name!r}: expected a number, got {short_repr(v)}")


def _is_plain_choice(v: Any) -> bool:
    return isinstance(v, (bool, int, float, str, np.integer, np.floating, np.bool_))


_PROJECTORS: dict[int, tuple[SearchSpace, Projector]] = {}


def _numeric_axis(p: Any, name: str) -> tuple[np.ndarray, np.ndarray, bool] | None:
    """(sorted axis values, their unit positions, log flag) of a numeric parameter, else ``None``."""
    if isinstance(p, (FloatParam, IntParam)):
        if p.high == p.low:
            return np.array([float(p.low)]), np.array([0.5]), False
        if p.log:
            return np.array([math.log(p.low), math.log(p.high)]), np.array([0.0, 1.0]), True
        return _finite_segments(np.array([float(p.low), float(p.high)]), np.array([0.0, 1.0])) + (False,)
    if isinstance(p, CategoricalParam) and p.numeric:
        vals = np.array([float(c) for c in p.choices])
        pos = p.positions(p.resolved_role(name))
        order = np.argsort(vals)
        vals, pos = vals[order], pos[order]
        use_log = bool(vals.min() > 0 and (p.resolved_role(name) in LOG_ROLES or vals.max() / vals.min() > 20))
        if use_log:
            return np.log(vals), pos, True
        return _finite_segments(vals, pos) + (False,)
    return None


def _finite_segments(vals: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split every axis segment wider than the largest float (``[-1e308, 1e308]``) at its midpoint, so that
    ``np.interp`` over the axis never divides by an infinite width (which maps every value to one end)."""
    with np.errstate(over="ignore"):
        if len(vals) < 2 or np.all(np.isfinite(np.diff(vals))):
            return vals, pos
    xs, ps = [float(vals[0])], [float(pos[0])]
    for a, b, pa, pb in zip(vals[:-1], vals[1:], pos[:-1], pos[1:], strict=True):
        if not math.isfinite(float(b) - float(a)):
            xs.append(float(a) / 2.0 + float(b) / 2.0)
            ps.append((float(pa) + float(pb)) / 2.0)
        xs.append(float(b))
        ps.append(float(pb))
    return np.array(xs), np.array(ps)


def project_unit(params: Mapping[str, Any], src: SearchSpace | None, dst: SearchSpace) -> np.ndarray:
    """Carry a configuration (possibly from another cell's space) into ``dst``'s unit cube.

    Numbers keep their *value* (an lr of 1e-3 stays 1e-3, clipped to ``dst``'s range), so a shifted grid
    is handled correctly. Choices present in ``dst`` keep their identity. Simplex weights are matched by
    component name. A ``dst`` parameter missing from ``params`` takes the mean position of the carried
    parameters with the same role, else the centre. This is how evidence moves between cells whose value
    sets differ (e.g. HW-GPT-Bench S -> L). ``src`` is accepted for symmetry and may be ``None``. Use
    :class:`Projector` to project many configurations into one space.

    Raises:
        InvalidTrialError: for a value that cannot be placed (see :class:`Projector`).
    """
    return Projector(dst)(params)
