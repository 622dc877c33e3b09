"""What :class:`~autollm_sampler.integrations.optuna.AutoLLMSampler` remembers of a study between calls.

Every proposal reads the whole study twice (the search space, then the history). Finished trials never
change in Optuna storage (it refuses to update them), so a study's trials ``0 .. k-1``, once all finished,
read the same at every later call: the sampler keeps that *finished prefix*, and what each reading made of
it, and reads only the trials after it again. Per call, the prefix is checked to be the very same trial
objects the storage returned last time (one C-level pass); a storage that hands out copies, or a prefix
trial replaced in any way, starts the prefix again from nothing. Trials after the prefix (running, waiting,
or finished after an unfinished one) are read at every call, with each finished trial's conversion cached
by trial id and checked against its number, state, value, params and attributes.

The memory is kept per storage object (weakly: a storage that is dropped takes its entries with it, so a
new storage at a reused address never sees them) and per study id; it is not pickled. ``enabled = False``
(or :meth:`StudyLedger.clear` before each call) gives the uncached reading the tests compare against.
"""

from __future__ import annotations

import operator
import weakref
from collections.abc import Mapping
from typing import Any

from optuna.study import Study
from optuna.trial import FrozenTrial

from autollm_sampler.integrations._optuna_fidelity import _FINISHED

_DERIVED_LIMIT = 64  # readings of one prefix kept (spaces x fidelities); more and they are all dropped


def same_finished(a: FrozenTrial, b: FrozenTrial) -> bool:
    """Whether two finished trial objects say the same (the sampler reads nothing else of a trial)."""
    return a is b or (
        a.number == b.number
        and a.state == b.state
        and a._values == b._values
        and a.params == b.params
        and a.distributions == b.distributions
        and a.user_attrs == b.user_attrs
        and a.system_attrs == b.system_attrs
        and a.intermediate_values == b.intermediate_values
    )


def fid_token(fid: Mapping[str, float]) -> tuple[tuple[str, float], ...]:
    """An exact, hashable token of a fidelity point (for cache keys only: no rounding)."""
    return tuple(sorted(fid.items()))


class StudyBook:
    """One study's finished prefix, the readings made of it, and per-trial conversions."""

    __slots__ = ("prefix", "derived", "trials", "plain")

    def __init__(self, plain: bool = False) -> None:
        self.plain = plain  # no prefix: every call reads every trial (the reading the caches must equal)
        self.prefix: list[FrozenTrial] = []  # trials 0 .. k-1, all finished, as the storage last returned them
        self.derived: dict[Any, Any] = {}  # what a reading made of the prefix, by what it was read for
        self.trials: dict[int, Any] = {}  # per-trial memos by trial id: (trial object, key, result)

    def read(self, study: Study) -> tuple[list[FrozenTrial], int]:
        """All trials of ``study`` (by number) and the length of their finished prefix, checked as above."""
        trials = study.get_trials(deepcopy=False)
        if self.plain:
            return trials, 0
        old = self.prefix
        k = len(old)
        if k and (k > len(trials) or not all(map(operator.is_, old, trials))):
            self.prefix, self.derived, k = [], {}, 0
        n = len(trials)
        start = k
        while k < n and trials[k].state in _FINISHED:
            k += 1
        if k != start:
            self.prefix = trials[:k]
        return trials, k

    def derive(self, key: Any) -> Any:
        return self.derived.get(key)

    def keep(self, key: Any, value: Any) -> None:
        if key not in self.derived and len(self.derived) >= _DERIVED_LIMIT:
            self.derived.clear()
        self.derived[key] = value

    def memo(self, t: FrozenTrial, key: Any) -> Any:
        """The entry memoised for finished trial ``t`` under ``key`` (the same object, compared by identity:
        a space), or ``None`` if there is none or it is stale."""
        hit = self.trials.get(t._trial_id)
        if hit is None or hit[1] is not key or not same_finished(hit[0], t):
            return None
        return hit

    def remember(self, t: FrozenTrial, key: Any, result: Any) -> tuple[FrozenTrial, Any, Any]:
        entry = self.trials[t._trial_id] = (t, key, result)
        return entry


class StudyLedger:
    """The sampler's :class:`StudyBook` per (storage, study id); see the module's docstring."""

    def __init__(self) -> None:
        self.enabled = True
        self.clear()

    def clear(self) -> None:
        """Forget everything (the next call reads every study from nothing)."""
        self._books: weakref.WeakKeyDictionary[Any, dict[int, StudyBook]] = weakref.WeakKeyDictionary()

    def book(self, study: Study) -> StudyBook:
        """The book of ``study``; a fresh one (remembering nothing) when the storage has no weakref, and a plain
        one (no prefix: every trial read as if for the first time) when disabled."""
        if not self.enabled:
            return StudyBook(plain=True)
        storage = study._storage
        try:
            books = self._books.get(storage)
            if books is None:
                books = self._books[storage] = {}
        except TypeError:  # a storage that cannot be weakly referenced (or hashed): no memory across calls
            return StudyBook()
        sid = study._study_id
        b = books.get(sid)
        if b is None:
            b = books[sid] = StudyBook()
        return b

    def __getstate__(self) -> dict[str, Any]:
        return {"enabled": self.enabled}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.enabled = bool(state.get("enabled", True))
        self.clear()
