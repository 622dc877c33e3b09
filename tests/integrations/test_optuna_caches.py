"""The Optuna sampler's caches change nothing but the time a proposal takes.

``AutoLLMSampler`` remembers each study's finished prefix, the trials it converted, their fidelities and the
spaces it built (``integrations/_optuna_ledger.py``); the agent's rationale reads the history in one pass;
``SearchSpace.to_unit_many`` inlines its categorical lookups; histories carry ``FidelityPoint`` fidelities.
Every test here compares with the uncached reading (caches cleared before every call, the ledger disabled)
or with the reference implementation the speed-up replaced, on real Optuna studies (in memory and SQLite),
with trials that change state between calls, enqueued and added trials, a finished trial replaced in storage
and a study shared by two sampler instances. Nothing here is timed.
"""

from __future__ import annotations

import copy
import gc
import logging
import math
import pickle
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState, create_trial

from autollm_sampler.agent import _rationale
from autollm_sampler.history import FidelityPoint, History, Trial, fidelity_key
from autollm_sampler.integrations.optuna import AutoLLMSampler
from autollm_sampler.space import CategoricalParam, FloatParam, IntParam, SearchSpace

optuna.logging.set_verbosity(optuna.logging.ERROR)

TARGET = {"n_params": 1e9}
DISTS: dict[str, BaseDistribution] = {
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "layers": IntDistribution(2, 48),
    "bs": CategoricalDistribution([32, 64, 128]),
}
DROPOUT = FloatDistribution(0.0, 0.5)
WIDE = {**DISTS, "layers": IntDistribution(2, 64)}  # a cheap run added with a wider range: the latest complete trial
_STORED = ("autollm:predicted_value", "autollm:predicted_std", "autollm:rationale", "autollm:source")


def reference_infer(sampler: AutoLLMSampler, study: Study, fid: Mapping[str, float], exclude: int | None) -> dict[str, BaseDistribution]:
    """The relative search space as ``SpaceReader.infer`` read it before the ledger (every trial, every call)."""
    from autollm_sampler.integrations._optuna_space import _is_unit_float, _to_param, same_fidelity

    reader, fidelity = sampler._spaces, sampler._fidelity
    finished = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
                if t.params and t.number != exclude]
    if not finished:
        return {}
    complete = [t for t in finished if t.state == TrialState.COMPLETE]
    here = [t for t in complete if (f := fidelity.of(t)) is not None and same_fidelity(f, fid)]
    ref = here or complete or finished
    names = set(ref[0].distributions)
    for t in ref[1:]:
        names &= set(t.distributions)
    latest = max(ref, key=lambda t: t.number)
    space: dict[str, BaseDistribution] = {}
    for name in sorted(names, key=lambda n: list(latest.distributions).index(n)):
        dist = latest.distributions[name]
        if dist.single():
            continue
        group = reader.component_of.get(name)
        if group is not None:
            if _is_unit_float(dist):
                space[name] = dist
            continue
        if _to_param(dist, None) is not None:
            space[name] = dist
    for group, comps in reader.mixtures.items():
        names_g = [f"{group}.{c}" for c in comps]
        if not all(n in space for n in names_g):
            for n in names_g:
                space.pop(n, None)
    return space


class Uncached(AutoLLMSampler):
    """The sampler reading every study from nothing at every call: caches cleared, the ledger disabled (every
    trial converted again, no finished prefix), and the search space inferred by the reference reading."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._ledger.enabled = False

    def _infer_space(self, study: Study, fid: Mapping[str, float], exclude: int | None) -> dict[str, BaseDistribution]:
        cached = super()._infer_space(study, fid, exclude)
        reference = reference_infer(self, study, fid, exclude)
        assert list(cached.items()) == list(reference.items())
        return reference

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        self._clear_caches()
        return super().infer_relative_search_space(study, trial)

    def sample_relative(self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        self._clear_caches()
        return super().sample_relative(study, trial, search_space)


def make(cls: type[AutoLLMSampler], agent: str, **kwargs: Any) -> AutoLLMSampler:
    return cls(fidelity=("n_params",), target=TARGET, agent=agent, seed=7, **kwargs)


def value(p: Mapping[str, Any]) -> float:
    return (math.log10(p["lr"]) + 3) ** 2 + p["layers"] / 100 + (p["bs"] == 64) * 0.05


def suggest(t: optuna.Trial) -> dict[str, Any]:
    return {"lr": t.suggest_float("lr", 1e-5, 1e-1, log=True), "layers": t.suggest_int("layers", 2, 48),
            "bs": t.suggest_categorical("bs", [32, 64, 128])}


def seed_history(study: Study, n: int = 24) -> None:
    """Cheap runs at two fidelities, with a pruned, a failed and a fidelity-less (target) trial among them."""
    rng = np.random.default_rng(0)
    for i in range(n):
        p = {"lr": float(10 ** rng.uniform(-5, -1)), "layers": int(rng.integers(2, 49)), "bs": int(rng.choice([32, 64, 128]))}
        attrs: dict[str, Any] = {"fidelity": {"n_params": 1e8 if i % 2 else 3e8}}
        if i % 3 == 0:  # a parameter some cheap runs have: not in the space, as not every trial has it
            study.add_trial(create_trial(params={**p, "dropout": 0.1}, distributions={**DISTS, "dropout": DROPOUT},
                                         value=value(p), user_attrs=attrs))
        elif i == 5:
            study.add_trial(create_trial(params=p, distributions=DISTS, state=TrialState.PRUNED,
                                         intermediate_values={0: value(p) + 1}, user_attrs=attrs))
        elif i == 9:
            study.add_trial(create_trial(params=p, distributions=DISTS, state=TrialState.FAIL, user_attrs=attrs))
        elif i == 13:
            study.add_trial(create_trial(params=p, distributions=DISTS, value=value(p)))  # no fidelity: target
        else:
            study.add_trial(create_trial(params=p, distributions=DISTS, value=value(p), user_attrs=attrs))


def record(study: Study, t: optuna.Trial, params: Mapping[str, Any]) -> tuple[Any, ...]:
    attrs = study._storage.get_trial(t._trial_id).user_attrs
    return (t.number, dict(params), tuple(attrs.get(k) for k in _STORED))


def scenario(studies: list[Study]) -> list[tuple[Any, ...]]:
    """Ask/tell rounds over ``studies`` (views of one study, taken in turn): trials left running and told
    later (COMPLETE or FAIL), a failed one, an enqueued partial configuration, runs added mid-study (cheap and
    at the target) after running trials, and one more ask while two trials are still running."""
    out: list[tuple[Any, ...]] = []
    running: list[tuple[optuna.Trial, float]] = []
    for step in range(12):
        study = studies[step % len(studies)]
        if step == 4:
            study.enqueue_trial({"bs": 128})
        t = study.ask()
        p = suggest(t)
        out.append(record(study, t, p))
        if step % 4 == 1:
            running.append((t, value(p)))  # left RUNNING: pending for the next proposals
        elif step % 4 == 2:
            study.tell(t, state=TrialState.FAIL)
        else:
            study.tell(t, value(p))
        if step % 4 == 3 and running:
            rt, rv = running.pop(0)  # RUNNING -> COMPLETE, or -> FAIL, between two calls
            if step % 8 == 3:
                study.tell(rt, rv)
            else:
                study.tell(rt, state=TrialState.FAIL)
        if step == 6:
            q = {"lr": 2e-3, "layers": 20, "bs": 64}
            study.add_trial(create_trial(params=q, distributions=DISTS, value=value(q) + 0.5, user_attrs={"fidelity": TARGET}))
            study.add_trial(create_trial(params=q, distributions=WIDE, value=value(q), user_attrs={"fidelity": {"n_params": 1e8}}))
    for rt, rv in running:
        study.tell(rt, rv)
    return out


@pytest.fixture(autouse=True)
def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="autollm_sampler")


AGENTS = ["classical", "default"]


def _storage(kind: str, path: Path) -> Any:
    if kind == "memory":
        return None
    if kind == "sqlite":
        return f"sqlite:///{path}.db"
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(f"{path}.log"))


@pytest.mark.parametrize("agent", AGENTS)
@pytest.mark.parametrize("storage", ["memory", "sqlite", "journal"])
def test_cached_proposals_equal_uncached(agent: str, storage: str, tmp_path: Path) -> None:
    results = []
    for cls in (AutoLLMSampler, Uncached):
        study = optuna.create_study(sampler=make(cls, agent), storage=_storage(storage, tmp_path / cls.__name__))
        seed_history(study)
        results.append(scenario([study]))
    cached, uncached = results
    assert len(cached) == 12
    assert cached == uncached
    assert all(r[2][3] is not None for r in cached)  # every trial was proposed by the sampler, and recorded


@pytest.mark.parametrize("agent", AGENTS)
@pytest.mark.parametrize("storage", ["memory", "sqlite"])
def test_study_shared_by_two_samplers(agent: str, storage: str, tmp_path: Path) -> None:
    """Two sampler instances take turns on one study (two Study objects on one storage): each sees the other's
    trials, running and finished, exactly as when neither caches anything."""
    results = []
    for cls in (AutoLLMSampler, Uncached):
        if storage == "memory":
            store: Any = optuna.storages.InMemoryStorage()
        else:
            store = f"sqlite:///{tmp_path / (cls.__name__ + '.db')}"
        first = optuna.create_study(sampler=make(cls, agent), storage=store, study_name="shared")
        seed_history(first)
        second = optuna.load_study(study_name="shared", storage=store, sampler=make(cls, agent))
        results.append(scenario([first, second]))
    assert results[0] == results[1]


@pytest.mark.parametrize("agent", AGENTS)
def test_replaced_finished_trial_is_read_again(agent: str) -> None:
    """A finished trial whose stored object is replaced (storage edited behind Optuna's back, or a storage
    that hands out copies) is read again: the history and the proposal are those of a fresh reading."""
    results = []
    for cls in (AutoLLMSampler, Uncached):
        sampler = make(cls, agent)
        study = optuna.create_study(sampler=sampler)
        seed_history(study)
        for _ in range(3):
            t = study.ask()
            study.tell(t, value(suggest(t)))
        storage = study._storage
        for number in (2, 4):  # much better values, now at the target
            old = study.trials[number]
            new = copy.deepcopy(old)
            new.value = -10.0 - number
            new.user_attrs = {"fidelity": dict(TARGET)}
            storage._set_trial(old._trial_id, new)  # type: ignore[attr-defined]
        search = sampler._infer_space(study, TARGET, exclude=None)
        space, slots = sampler._build_space(search, study)
        history, _ = sampler._collect(study, None, space, slots, TARGET)
        seen = {t.id: (t.value, dict(t.fidelity)) for t in history.trials}
        assert seen[2] == (-12.0, TARGET) and seen[4] == (-14.0, TARGET)
        t = study.ask()
        results.append(record(study, t, suggest(t)))
    assert results[0] == results[1]


def test_caches_are_used_and_kept_apart_per_storage() -> None:
    """The ledger holds the finished prefix and reuses conversions; a new storage (even at a reused address)
    starts from nothing: a sampler moved to a new study proposes what a fresh one does."""
    sampler = make(AutoLLMSampler, "classical")
    study = optuna.create_study(sampler=sampler)
    seed_history(study)
    t = study.ask()
    study.tell(t, value(suggest(t)))
    book = sampler._ledger.book(study)
    assert len(book.prefix) == len(study.trials) - 1  # as read for the last proposal
    search = sampler._infer_space(study, TARGET, exclude=None)
    assert len(book.prefix) == len(study.trials)
    space, slots = sampler._build_space(search, study)
    h1, _ = sampler._collect(study, None, space, slots, TARGET)
    h2, _ = sampler._collect(study, None, space, slots, TARGET)
    assert [a is b for a, b in zip(h1.trials, h2.trials, strict=True)] == [True] * len(h1.trials)
    assert all(type(x.fidelity) is FidelityPoint for x in h1.trials)
    del book
    for _ in range(5):  # drop studies and storages, so that addresses are reused
        del study
        gc.collect()
        study = optuna.create_study(sampler=sampler)
        q = {"lr": 1e-4, "layers": 3, "bs": 32}
        study.add_trial(create_trial(params=q, distributions=DISTS, value=1.0, user_attrs={"fidelity": {"n_params": 1e8}}))
        other = optuna.create_study(sampler=make(Uncached, "classical"))
        other.add_trial(create_trial(params=q, distributions=DISTS, value=1.0, user_attrs={"fidelity": {"n_params": 1e8}}))
        a, b = study.ask(), other.ask()
        assert suggest(a) == suggest(b)
    clone = pickle.loads(pickle.dumps(sampler))
    assert clone._ledger.enabled and clone._ledger.book(study).prefix == []


def test_explain_and_recommend_unchanged_by_caches() -> None:
    outs = []
    for cls in (AutoLLMSampler, Uncached):
        sampler = make(cls, "classical")
        study = optuna.create_study(sampler=sampler)
        seed_history(study)
        scenario([study])
        if cls is Uncached:
            sampler._clear_caches()
        rec = sampler.recommend(study)
        outs.append((str(sampler.explain(study)), rec.params, rec.source, sampler.describe_space(study)))
    assert outs[0] == outs[1]


# ---------------------------------------------------------------------- the pieces the speed-up rewrote
def test_fidelity_point_key_follows_every_change() -> None:
    f = FidelityPoint({"n_params": 1e8, "n_tokens": 2e9})
    assert fidelity_key(f) == fidelity_key(dict(f))
    changes: list[Callable[[FidelityPoint], Any]] = [
        lambda d: d.__setitem__("n_params", 2e8), lambda d: d.update(n_tokens=3e9), lambda d: d.pop("n_tokens"),
        lambda d: d.setdefault("x", 1.0), lambda d: d.__ior__({"y": 2.0}), lambda d: d.__delitem__("x"),
        lambda d: d.popitem(), lambda d: d.clear(),
    ]
    for change in changes:
        fidelity_key(f)
        change(f)
        assert fidelity_key(f) == fidelity_key(dict(f))
    g = FidelityPoint({"a": 1.0})
    fidelity_key(g)
    for h in (copy.copy(g), copy.deepcopy(g), pickle.loads(pickle.dumps(g))):
        assert fidelity_key(h) == (("a", 1.0),)
        h["a"] = 5.0
        assert fidelity_key(h) == (("a", 5.0),) and fidelity_key(g) == (("a", 1.0),)
    t = Trial.model_construct(id=1, params={}, fidelity=FidelityPoint({"n": 1e8}), value=1.0, state="complete", cost=None, attrs={})
    u = Trial(id=1, params={}, fidelity={"n": 1e8}, value=1.0)
    assert t.model_dump() == u.model_dump() and t.model_dump_json() == u.model_dump_json()


def test_to_unit_many_equals_rows() -> None:
    rng = np.random.default_rng(3)
    choices = (True, 1, 2.5, "1", "b", False, 7)
    space = SearchSpace(params={"c": CategoricalParam(choices=choices), "x": FloatParam(low=1e-4, high=1.0, log=True),
                                "k": IntParam(low=1, high=9)})
    values: list[Any] = [True, 1, 1.0, np.int64(1), np.float64(2.5), 2.5, "1", "b", False, np.bool_(False), 7, 7.0, np.int32(7)]
    configs = [{"c": values[i % len(values)], "x": float(rng.uniform(1e-4, 1)), "k": int(rng.integers(1, 10))}
               for i in range(40)]
    many = space.to_unit_many(configs)
    rows = np.stack([space.to_unit(c) for c in configs])
    assert np.array_equal(many, rows)
    assert space.to_unit_many([]).shape == (0, space.width)
    for bad in ({"c": "zzz", "x": 0.5, "k": 2}, {"c": None, "x": 0.5, "k": 2}, {"x": 0.5, "k": 2}):
        with pytest.raises(Exception) as many_err:
            space.to_unit_many([configs[0], bad])
        with pytest.raises(Exception) as row_err:
            space.to_unit(bad)
        assert type(many_err.value) is type(row_err.value)


def _reference_cells(history: History, sign: float, target: Mapping[str, float]) -> list[tuple[dict[str, float], int, Trial]]:
    """The cheap cells as the rationale read them before its one-pass summary."""
    tkey = fidelity_key(target)
    out = []
    for key, trials in history.cells().items():
        if key == tkey or not key:
            continue
        done = [t for t in trials if t.is_complete and t.value is not None]
        if not done:
            continue
        best = min(done, key=lambda t: sign * float(t.value))  # type: ignore[arg-type]
        out.append((dict(key), len(done), best))
    return sorted(out, key=lambda c: _rationale._scale(c[0]))


def _reference_target(history: History, sign: float, target: Mapping[str, float]) -> tuple[Any, ...]:
    tkey = fidelity_key(target)
    tt = [t for t in history.trials if (not t.fidelity or fidelity_key(t.fidelity) == tkey) and tkey]
    done = [t for t in tt if t.is_complete and t.value is not None]
    best = min(done, key=lambda t: sign * float(t.value)) if done else None  # type: ignore[arg-type]
    mine = [t for t in history.trials if not t.fidelity or fidelity_key(t.fidelity) == tkey]
    step = (sum(t.state == "complete" and t.value is not None for t in mine), sum(t.state == "failed" for t in mine))
    return len(done), sum(t.state == "failed" for t in tt), best, step


@pytest.mark.parametrize("seed", range(25))
def test_rationale_summary_equals_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    target = {"n_params": 1e9} if seed % 5 else {}
    fids = [{"n_params": 1e8}, {"n_params": 3e8}, {"n_params": 1e9}, {"n_params": 1e9 * (1 + 1e-12)}, {}]
    trials = []
    for i in range(int(rng.integers(0, 40))):
        state = str(rng.choice(["complete", "complete", "failed", "pruned", "running"]))
        v = None if state in ("failed", "running") or rng.random() < 0.1 else float(rng.choice([1.0, 2.0, 0.5, -1.0]))
        fid = fids[int(rng.integers(0, len(fids)))] if target else {}
        fid_obj = FidelityPoint(fid) if rng.random() < 0.5 else dict(fid)
        trials.append(Trial.model_construct(id=i, params={"lr": 1e-3}, fidelity=fid_obj, value=v, state=state, cost=None, attrs={}))
    history = History.model_construct(trials=trials, fidelity_axes=tuple(target))
    for sign in (1.0, -1.0):
        s = _rationale._Summary(history, target, sign)
        got = [(c[0], c[1], c[2]) for c in sorted(
            ((dict(k), n, b) for k, (n, b, _) in s.cells.items() if b is not None), key=lambda c: _rationale._scale(c[0]))]
        want = _reference_cells(history, sign, target)
        assert [(f, n, b.id) for f, n, b in got] == [(f, n, b.id) for f, n, b in want]
        n_done, n_failed, best, step = _reference_target(history, sign, target)
        if target:
            assert (s.target_done, s.target_failed) == (n_done, n_failed)
            assert (s.target_best.id if s.target_best is not None else None) == (best.id if best is not None else None)
        assert (s.target_done, s.target_failed) == step or not target


def test_overhead_benchmark_reports_the_agents_share(capsys: pytest.CaptureFixture[str]) -> None:
    from autollm_sampler.benchmark import overhead as bench_overhead
    from autollm_sampler.integrations.optuna import measure_overhead

    (row,) = measure_overhead((4,), n_measured=2, agent="classical")
    assert set(row) == {"n_completed", "autollm_ms", "tpe_ms", "ratio", "propose_ms", "agent"}
    assert 0 < row["propose_ms"] <= row["autollm_ms"]
    assert bench_overhead.main(["--sizes", "4", "--measured", "1", "--agent", "classical", "--conditions", "alone"]) == 0
    out = capsys.readouterr().out
    assert "of which agent.propose" in out and "# agent: classical" in out
