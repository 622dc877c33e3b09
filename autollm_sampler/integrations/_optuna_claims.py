"""Claims: how parallel workers of one study avoid proposing the same configuration twice.

Threads (``n_jobs > 1``) share the sampler's lock. Processes sharing RDB or journal storage see each
other's proposals as soon as they are written: a proposal is written as a system attribute (its *claim*)
before the trial's params exist, with the time its write completed. To close the race between reading the
study and writing a proposal, the sampler claims its proposal, checks with :func:`_claimed_elsewhere`
whether a trial unseen at read time claimed the same configuration earlier, and if so re-reads the study and
proposes again (up to ``_CLAIM_ATTEMPTS`` times). A claim costs two writes: the proposal, then its time
with the rest of the proposal's attributes. :func:`_pick` applies the same reading to the values a
partial ``enqueue_trial`` fixed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import optuna
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from autollm_sampler.agent import Proposal
from autollm_sampler.integrations._common import finite_or_none, same_fidelity
from autollm_sampler.integrations._optuna_fidelity import _PENDING, ATTR_PREFIX, FidelityBook

_PROPOSAL = ATTR_PREFIX + "proposal"  # system attr: the proposal, visible to other workers at once
_READ_AT = ATTR_PREFIX + "read_at"  # system attr: when the history for this proposal was read
_PROPOSED_AT = ATTR_PREFIX + "proposed_at"  # system attr: when the proposal was written
_ATTEMPTS = ATTR_PREFIX + "claim_attempts"  # system attr: proposals made before one was kept
logger = logging.getLogger(__name__)

_FIXED_ASK = 16  # proposals asked for when enqueue_trial fixed some values (one is kept)
_CLAIM_ATTEMPTS = 8  # proposals per trial at most while other workers claim the same configuration first


def shared_storage(study: Study) -> bool:
    """Whether other processes may write to the study's storage (anything but in-memory storage)."""
    storage = study._storage
    return not isinstance(getattr(storage, "_backend", storage), optuna.storages.InMemoryStorage)


def _rdb_batch(storage: Any) -> Callable[[int, Mapping[str, Any], Mapping[str, Any]], None] | None:
    """A writer of several trial attributes in one transaction, for Optuna's RDB storage; ``None`` for any
    other storage (or an Optuna whose RDB internals differ), which then gets one public call per attribute.

    Each ``set_trial_user_attr`` / ``set_trial_system_attr`` call on RDB storage is its own transaction, and
    on SQLite each commit waits for the disk (10-20 ms): one commit for all of a proposal's attributes is
    most of what the sampler costs per trial there.
    """
    backend = getattr(storage, "_backend", storage)
    if not isinstance(backend, optuna.storages.RDBStorage):
        return None
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session
    except ImportError:
        return None
    write_one = getattr(backend, "_set_trial_attr_without_commit", None)
    scoped = getattr(backend, "scoped_session", None)
    user_model = getattr(models, "TrialUserAttributeModel", None)
    system_model = getattr(models, "TrialSystemAttributeModel", None)
    if write_one is None or scoped is None or user_model is None or system_model is None:
        return None

    def write(trial_id: int, user: Mapping[str, Any], system: Mapping[str, Any]) -> None:
        with _create_scoped_session(scoped, True) as session:
            for model, attrs in ((system_model, system), (user_model, user)):
                for k, v in attrs.items():
                    write_one(session, model, trial_id, k, v)

    return write


_BATCH_WARNED: list[bool] = []  # the batched write's failure is warned about once per process


def write_attrs(
    study: Study, trial: FrozenTrial, *, user: Mapping[str, Any] | None = None, system: Mapping[str, Any] | None = None
) -> None:
    """Write ``user`` and ``system`` attributes of ``trial``: in one transaction on RDB storage (all or none),
    else one storage call each; ``trial.user_attrs`` is updated too (as Optuna's ``Trial.set_user_attr`` does)."""
    user = user or {}
    system = system or {}
    storage = study._storage
    batch = _rdb_batch(storage) if len(user) + len(system) > 1 else None
    done = False
    if batch is not None:
        try:
            batch(trial._trial_id, user, system)
            done = True
        except (AttributeError, TypeError) as exc:  # an Optuna whose internals changed: nothing was committed
            # the one-by-one writes below store the same attributes (only slower), so this is said, not raised
            if not _BATCH_WARNED:
                _BATCH_WARNED.append(True)
                logger.warning("writing a trial's attributes in one transaction failed (%s: %s; Optuna's RDB "
                               "internals may have changed); writing them one by one instead, the same attributes, slower "
                               "on SQLite (warned once)", type(exc).__name__, exc)
    if not done:
        for k, v in system.items():
            storage.set_trial_system_attr(trial._trial_id, k, v)
        for k, v in user.items():
            storage.set_trial_user_attr(trial._trial_id, k, v)
    trial.user_attrs.update(user)


def claim(
    study: Study, trial: FrozenTrial, params: Mapping[str, Any], read_at: float, attempt: int, *,
    user: Mapping[str, Any] | None = None, system: Mapping[str, Any] | None = None,
) -> float:
    """Write ``params`` as ``trial``'s claim: the proposal first (its own write, so that other workers see it
    as soon as possible), then, in one more write, the time that first write completed (returned) with when
    the study was read, the attempt's number and the ``user`` and ``system`` attributes that go with the
    proposal. A claim lost to another worker is claimed again by the next attempt, whose write replaces
    every one of these (the same keys), so the attributes need no third write once the claim is kept.

    The time must be taken after the proposal's write has completed: a worker that read the study before
    this claim was visible then always has the earlier time (see :func:`_claimed_elsewhere`)."""
    study._storage.set_trial_system_attr(trial._trial_id, _PROPOSAL, params)
    proposed_at = time.time()
    write_attrs(study, trial, user=user, system={**(system or {}), _PROPOSED_AT: proposed_at, _READ_AT: read_at,
                                                 _ATTEMPTS: attempt + 1})
    return proposed_at


def _claimed_params(t: FrozenTrial) -> dict[str, Any]:
    """The trial's claim with the params it has so far put in."""
    other = t.system_attrs.get(_PROPOSAL)
    return {**(other if isinstance(other, Mapping) else {}), **t.params}


def _claimed_elsewhere(
    study: Study,
    trial: FrozenTrial,
    params: Mapping[str, Any],
    proposed_at: float,
    fid_now: Mapping[str, float],
    known: Mapping[int, Mapping[str, Any]],
    fidelity: FidelityBook,
) -> tuple[int, dict[str, Any]] | None:
    """A trial, unknown when we read the study, that claimed ``params`` at this fidelity before us.

    A claim whose time is not written yet counts as earlier. Whatever the interleaving of two
    processes' writes and reads, at least one of them sees the other's claim as earlier and yields.
    """
    for t in study.get_trials(deepcopy=False):
        if t.number == trial.number:
            continue
        seen = known.get(t.number)
        if seen is not None and all(k in seen and seen[k] == v for k, v in params.items()):
            continue  # this claim was already in the history or pending when we proposed
        merged = _claimed_params(t)
        if not all(k in merged and merged[k] == v for k, v in params.items()):
            continue
        other_at = finite_or_none(t.system_attrs.get(_PROPOSED_AT))
        if other_at is not None and (other_at, t.number) > (proposed_at, trial.number):
            continue
        f = fidelity.of(t)
        if f is not None and same_fidelity(f, fid_now):
            return t.number, merged
    return None


def _pick(
    props: Sequence[Proposal],
    fixed: Mapping[str, Any],
    names: Sequence[str],
    to_optuna: Callable[[Mapping[str, Any]], dict[str, Any]],
    study: Study,
    trial: FrozenTrial,
    fid_now: Mapping[str, float],
    fidelity: FidelityBook,
) -> tuple[Proposal, dict[str, Any]]:
    """The first proposal whose Optuna values (``to_optuna(params)``), with ``fixed`` put in, were not run
    or claimed at this fidelity (the first proposal when every one was, or when nothing is fixed); ``names``
    are the parameters that make a configuration."""
    first = (props[0], to_optuna(props[0].params))
    if not fixed or len(props) == 1:
        return first
    order = sorted(names)

    def key(values: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(repr(values.get(k)) for k in order)

    taken = set()
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, *_PENDING)):
        if t.number == trial.number:
            continue
        f = fidelity.of(t)
        if f is None or not same_fidelity(f, fid_now):
            continue
        taken.add(key(_claimed_params(t)))
    for p in props:
        params = first[1] if p is props[0] else to_optuna(p.params)
        if key({**params, **fixed}) not in taken:
            return p, params
    return first
