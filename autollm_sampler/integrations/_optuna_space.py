"""Optuna distributions <-> the agent's :class:`~autollm_sampler.space.SearchSpace`, both ways.

:class:`SpaceReader` reads a study's distributions as the space the agent proposes in (float and int, with
log or step; categorical; mixture groups declared with ``mixtures=`` as one simplex), with a :class:`_Slot`
per agent parameter telling which Optuna parameters it stands for. :func:`agent_params` turns Optuna values
into the agent's configuration, :func:`to_optuna` the agent's proposal into valid Optuna values, and
:func:`_optuna_distributions` a :class:`SearchSpace` into Optuna distributions (for :func:`add_history`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState
from pydantic import ValidationError

from autollm_sampler.exceptions import AutoLLMSamplerError
from autollm_sampler.integrations._common import finite_or_none, same_fidelity, short_repr
from autollm_sampler.integrations._optuna_fidelity import _FINISHED, FidelityBook
from autollm_sampler.integrations._optuna_ledger import StudyBook, StudyLedger, fid_token
from autollm_sampler.space import (
    ROLES,
    CategoricalParam,
    FloatParam,
    IntParam,
    SearchSpace,
    SimplexParam,
    check_role,
)


def suggest_mixture(trial: optuna.trial.BaseTrial, name: str, components: Sequence[str]) -> dict[str, float]:
    """Suggest mixture weights as one ``<name>.<component>`` float in ``[0, 1]`` per component, normalised.

    Declare the same group on the sampler (``AutoLLMSampler(mixtures={name: components})``) so the agent
    proposes the weights jointly on the simplex; any other sampler still yields valid weights thanks to the
    normalisation here.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> w = suggest_mixture(study.ask(), "mix", ["web", "code"])
        >>> round(sum(w.values()), 9)
        1.0
    """
    if len(components) < 2:
        raise ValueError(f"suggest_mixture({name!r}): a mixture needs at least two components, got {list(components)!r}")
    raw = {c: float(trial.suggest_float(f"{name}.{c}", 0.0, 1.0)) for c in components}
    total = sum(raw.values())
    if total <= 0:
        return {c: 1.0 / len(components) for c in components}
    return {c: w / total for c, w in raw.items()}


@dataclass(frozen=True)
class _Slot:
    """How one parameter of the agent's space maps onto Optuna parameters."""

    optuna_names: tuple[str, ...]  # one name, or one per mixture component
    mixture: bool


_MISSING = object()


def _is_unit_float(dist: BaseDistribution) -> bool:
    return isinstance(dist, FloatDistribution) and not dist.log and dist.step is None and dist.low == 0.0 and dist.high == 1.0


def _to_param(dist: BaseDistribution, role: str | None) -> FloatParam | IntParam | CategoricalParam | None:
    """An Optuna distribution as an agent parameter, or ``None`` when the agent cannot read it."""
    try:
        if isinstance(dist, FloatDistribution):
            return FloatParam(low=dist.low, high=dist.high, log=dist.log, step=dist.step, role=role)
        if isinstance(dist, IntDistribution):
            float(dist.low), float(dist.high)  # OverflowError (not read) beyond the float range
            return IntParam(low=dist.low, high=dist.high, log=dist.log, step=dist.step, role=role)
        if isinstance(dist, CategoricalDistribution):
            choices = dist.choices
            for c in choices:
                if c is None or not isinstance(c, (bool, int, float, str)):
                    return None
                if isinstance(c, float) and not math.isfinite(c):
                    return None
            return CategoricalParam(choices=tuple(choices), role=role)  # type: ignore[arg-type]
    except (ValidationError, ValueError, OverflowError):
        return None
    return None


def _cast(dist: BaseDistribution, p: Any, name: str, value: Any) -> Any:
    """``value`` as a valid member of ``dist`` (Python types), or ``_MISSING``."""
    try:
        if isinstance(dist, CategoricalDistribution):
            if not isinstance(p, CategoricalParam):
                return _MISSING
            v: Any = dist.choices[p.index_of(name, value)]
        elif isinstance(dist, IntDistribution):
            f = finite_or_none(value)
            if f is None:
                return _MISSING
            iv = value if isinstance(value, (int, np.integer)) and not isinstance(value, bool) else round(f)
            q, r = divmod(int(iv) - dist.low, dist.step)  # onto the step grid, exactly (ints)
            v = dist.low + min(max(q + (2 * r >= dist.step), 0), (dist.high - dist.low) // dist.step) * dist.step
        elif isinstance(dist, FloatDistribution):
            f = finite_or_none(value)
            if f is None:
                return _MISSING
            v = float(min(max(f, dist.low), dist.high))
            if dist.step is not None and isinstance(p, FloatParam) and not dist._contains(v):
                n_max = p.n_steps()  # far from low, float rounding puts most products off Optuna's grid test
                if n_max is not None:
                    v = p._grid_value(v, n_max)
        else:
            return _MISSING
        return v if dist._contains(dist.to_internal_repr(v)) else _MISSING
    except (AutoLLMSamplerError, ValueError, TypeError, IndexError, ArithmeticError):
        return _MISSING


def _optuna_distributions(space: SearchSpace) -> dict[str, BaseDistribution]:
    """A :class:`SearchSpace` as Optuna distributions (a simplex as ``<name>.<component>`` floats in [0, 1])."""
    out: dict[str, BaseDistribution] = {}
    for name, p in space.params.items():
        if isinstance(p, FloatParam):
            out[name] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
        elif isinstance(p, IntParam):
            out[name] = IntDistribution(p.low, p.high, log=p.log, step=p.step)
        elif isinstance(p, CategoricalParam):
            out[name] = CategoricalDistribution(list(p.choices))
        elif isinstance(p, SimplexParam):
            for c in p.components:
                out[f"{name}.{c}"] = FloatDistribution(0.0, 1.0)
    return out


def _check_mixtures(mixtures: Mapping[str, Sequence[str]] | None) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for name, comps in (mixtures or {}).items():
        if isinstance(comps, str) or not isinstance(comps, Sequence):
            raise ValueError(f"mixtures[{name!r}] must be a list of component names, got {comps!r}")
        cs = tuple(str(c) for c in comps)
        if len(cs) < 2 or len(set(cs)) != len(cs):
            raise ValueError(f"mixtures[{name!r}] = {list(cs)!r}: give at least two distinct component names")
        out[str(name)] = cs
    return out


def _check_roles(roles: Mapping[str, str] | None) -> dict[str, str]:
    """``roles=`` with every role checked (an unknown one is a ``ValueError`` naming the parameter)."""
    if roles is None:
        return {}
    if not isinstance(roles, Mapping):
        raise ValueError(f"roles must be a mapping of parameter name to role, e.g. {{'peak_lr': 'lr'}}; got {short_repr(roles)}")
    out: dict[str, str] = {}
    for name, role in roles.items():
        try:
            out[str(name)] = check_role(role)
        except ValueError as exc:
            raise ValueError(f"roles[{short_repr(name)}]: {exc}") from None
    return out


class SpaceReader:
    """The sampler's ``mixtures=`` and ``roles=``, and the spaces read with them (cached, not pickled)."""

    def __init__(self, mixtures: Mapping[str, Sequence[str]] | None, roles: Mapping[str, str] | None) -> None:
        self.mixtures = _check_mixtures(mixtures)
        self.component_of: dict[str, str] = {f"{g}.{c}": g for g, comps in self.mixtures.items() for c in comps}
        self.roles = _check_roles(roles)
        self.reset()

    def reset(self) -> None:
        self._cache: dict[Any, tuple[SearchSpace, dict[str, _Slot]]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_cache", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.reset()

    def infer(
        self, study: Study, fid: Mapping[str, float], exclude: int | None, fidelity: FidelityBook,
        ledger: StudyLedger | None = None,
    ) -> dict[str, BaseDistribution]:
        """The relative search space: the parameters every finished trial at ``fid`` has (else every
        complete, else every finished trial), as the latest of them distributes them, when the agent reads them.

        ``ledger`` remembers what the study's finished prefix contributes, so a call reads only the trials
        after it."""
        book = ledger.book(study) if ledger is not None else StudyBook()
        trials, k = book.read(study)
        start = 0
        if k and not (exclude is not None and trials[0].number <= exclude <= trials[k - 1].number):
            key = ("infer", fid_token(fid))
            agg = book.derive(key)
            if agg is None:
                agg = _Pools()
                book.keep(key, agg)
            agg.add(study, islice(trials, agg.covered, k), fid, None, fidelity)
            agg.covered = k
            pools = agg.copy()
            start = k
        else:
            pools = _Pools()
        pools.add(study, (t for t in islice(trials, start, None) if t.state in _FINISHED), fid, exclude, fidelity)
        ref = next((i for i in range(3) if pools.latest[i] is not None), None)
        if ref is None:
            return {}
        names = pools.names[ref]
        latest = pools.latest[ref]
        assert names is not None and latest is not None
        order = list(latest.distributions)
        space: dict[str, BaseDistribution] = {}
        for name in sorted(names, key=order.index):
            dist = latest.distributions[name]
            if dist.single():
                continue
            group = self.component_of.get(name)
            if group is not None:
                if _is_unit_float(dist):
                    space[name] = dist
                continue
            if _to_param(dist, None) is not None:
                space[name] = dist
        # a mixture is used only when every component is present and is a plain [0, 1] float
        for group, comps in self.mixtures.items():
            names_g = [f"{group}.{c}" for c in comps]
            if not all(n in space for n in names_g):
                for n in names_g:
                    space.pop(n, None)
        return space

    def build(
        self, search_space: Mapping[str, BaseDistribution], direction: StudyDirection
    ) -> tuple[SearchSpace, dict[str, _Slot]]:
        """``search_space`` as the agent's space and its slots (the same objects while it does not change)."""
        key = (tuple((n, repr(d)) for n, d in search_space.items()), direction)
        hit = self._cache.get(key)
        if hit is None:
            if len(self._cache) > 1000:
                self._cache.clear()
            hit = self._cache[key] = self._make(search_space, direction)
        return hit

    def _make(
        self, search_space: Mapping[str, BaseDistribution], direction: StudyDirection
    ) -> tuple[SearchSpace, dict[str, _Slot]]:
        params: dict[str, Any] = {}
        slots: dict[str, _Slot] = {}
        seen_groups: set[str] = set()
        for name, dist in search_space.items():
            group = self.component_of.get(name)
            if group is not None:
                comps = self.mixtures[group]
                names_g = tuple(f"{group}.{c}" for c in comps)
                if group in seen_groups or not all(n in search_space and _is_unit_float(search_space[n]) for n in names_g):
                    continue
                seen_groups.add(group)
                params[group] = SimplexParam(components=comps, role=self.roles.get(group, "mixture"))
                slots[group] = _Slot(names_g, True)
                continue
            p = _to_param(dist, self.roles.get(name))
            if p is not None:
                params[name] = p
                slots[name] = _Slot((name,), False)
        if direction == StudyDirection.MAXIMIZE:
            return SearchSpace(params=params, direction="maximize"), slots
        return SearchSpace(params=params, direction="minimize"), slots

    def describe(
        self, space: SearchSpace, slots: Mapping[str, _Slot], trials: Sequence[FrozenTrial], target: str, fallback: str
    ) -> str:
        """The lines of :meth:`AutoLLMSampler.describe_space`: ``space`` with roles, then the parameters of
        the finished ``trials`` that no slot reads (sampled by the ``fallback`` sampler)."""
        lines = [f"Search space of the agent (target {target}):"]
        if not space.params:
            lines.append("  (no parameter yet: the space is read from the study's finished trials)")
        width = max((len(n) for n in space.params), default=0)
        for name, p in space.params.items():
            if isinstance(p, SimplexParam):
                source = "given in roles=" if name in self.roles else "mixtures="
            else:
                source = "given in roles=" if name in self.roles else "guessed from the name"
            lines.append(f"  {name:<{width}}  {_describe_param(p)}; role {space.role_of(name)} ({source})")
        used = {n for slot in slots.values() for n in slot.optuna_names}
        seen: list[str] = []
        for t in trials:
            seen.extend(n for n in t.distributions if n not in used and n not in seen)
        if seen:
            shown = ", ".join(seen[:20]) + (f" and {len(seen) - 20} more" if len(seen) > 20 else "")
            lines.append(f"Sampled by the fallback sampler ({fallback}): {shown}")
        lines.append(f"Valid roles for roles={{name: role}}: {', '.join(ROLES)}.")
        return "\n".join(lines)


class _Pools:
    """The three pools :meth:`SpaceReader.infer` chooses from (finished trials with params that completed at
    the fidelity, that completed, that finished): the parameter names all of a pool's trials have, and its
    latest trial (``None`` while the pool is empty)."""

    __slots__ = ("names", "latest", "covered")

    def __init__(self) -> None:
        self.names: list[set[str] | None] = [None, None, None]
        self.latest: list[FrozenTrial | None] = [None, None, None]
        self.covered = 0  # trials of the study's finished prefix read into these pools

    def copy(self) -> _Pools:
        out = _Pools()
        out.names = [None if s is None else set(s) for s in self.names]
        out.latest = list(self.latest)
        return out

    def add(
        self, study: Study, trials: Iterable[FrozenTrial], fid: Mapping[str, float], exclude: int | None,
        fidelity: FidelityBook,
    ) -> None:
        """Read finished ``trials`` into the pools (those without params, and trial ``exclude``, are left out)."""
        names, latest = self.names, self.latest
        for t in trials:
            if not t.params or t.number == exclude:
                continue
            if t.state == TrialState.COMPLETE:
                here = (f := fidelity.cached(study, t)) is not None and same_fidelity(f, fid)
                pools: tuple[int, ...] = (0, 1, 2) if here else (1, 2)
            else:
                pools = (2,)
            dists = t.distributions
            for i in pools:
                s = names[i]
                if s is None:
                    names[i] = set(dists)
                else:
                    s.intersection_update(dists)
                last = latest[i]
                if last is None or t.number > last.number:
                    latest[i] = t


def _describe_param(p: Any) -> str:
    if isinstance(p, FloatParam):
        extra = ", log" if p.log else (f", step {p.step:.4g}" if p.step is not None else "")
        return f"float in [{p.low:.4g}, {p.high:.4g}]{extra}"
    if isinstance(p, IntParam):
        extra = ", log" if p.log else (f", step {p.step}" if p.step != 1 else "")
        return f"int in [{p.low}, {p.high}]{extra}"
    if isinstance(p, CategoricalParam):
        shown = ", ".join(repr(c) for c in p.choices[:8]) + (", ..." if len(p.choices) > 8 else "")
        return f"categorical [{shown}]"
    if isinstance(p, SimplexParam):
        return f"mixture of {', '.join(p.components)}"
    return type(p).__name__


def agent_params(values: Mapping[str, Any], space: SearchSpace, slots: Mapping[str, _Slot]) -> dict[str, Any]:
    """Optuna parameter values -> the agent's configuration (only what the space reads)."""
    out: dict[str, Any] = {}
    for name, slot in slots.items():
        p = space.params[name]
        if slot.mixture:
            ws = [finite_or_none(values.get(n)) for n in slot.optuna_names]
            if any(w is None or w < 0 for w in ws):
                continue
            total = float(sum(ws))  # type: ignore[arg-type]
            if total <= 0:
                continue
            out[name] = {c: float(w) / total for c, w in zip(p.components, ws, strict=True)}  # type: ignore[union-attr, arg-type]
            continue
        if slot.optuna_names[0] not in values:
            continue
        v = values[slot.optuna_names[0]]
        if isinstance(p, CategoricalParam):
            try:
                out[name] = p.validate_value(name, v)
            except (AutoLLMSamplerError, ValueError):
                continue
        elif finite_or_none(v) is not None:
            out[name] = int(v) if isinstance(p, IntParam) and float(v).is_integer() else float(v)
    return out


def to_optuna(
    config: Mapping[str, Any],
    search_space: Mapping[str, BaseDistribution],
    space: SearchSpace,
    slots: Mapping[str, _Slot],
) -> dict[str, Any]:
    """The agent's configuration -> Optuna values; anything invalid is left to the fallback sampler."""
    out: dict[str, Any] = {}
    for name, slot in slots.items():
        if name not in config:
            continue
        p = space.params[name]
        if slot.mixture:
            value = config[name]
            if not isinstance(value, Mapping):
                continue
            for comp, oname in zip(p.components, slot.optuna_names, strict=True):  # type: ignore[union-attr]
                w = finite_or_none(value.get(comp))
                if w is not None:
                    cast = _cast(search_space[oname], p, oname, float(np.clip(w, 0.0, 1.0)))
                    if cast is not _MISSING:
                        out[oname] = cast
            continue
        oname = slot.optuna_names[0]
        cast = _cast(search_space[oname], p, name, config[name])
        if cast is not _MISSING:
            out[oname] = cast
    return out
