"""AutoLLMSearcher: Tune space conversion, the Searcher callbacks, save/restore, and a real Ray Tune run."""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest
from ray import tune
from ray.tune.search import ConcurrencyLimiter, Searcher

from autollm_sampler.exceptions import CheckpointError, InvalidSpaceError
from autollm_sampler.integrations.ray import AutoLLMSearcher, convert_tune_space
from autollm_sampler.space import CategoricalParam, FloatParam, IntParam

TARGET = {"n_tokens": 2e10}
CHEAP = {"n_tokens": 1e9}
SPACE = {"lr": tune.choice([1e-4, 3e-4, 1e-3, 3e-3, 1e-2]), "bs": tune.choice([32, 64, 128])}


def loss(lr: float, bs: int) -> float:
    return 2.0 + (math.log10(lr) + 2.5) ** 2 + 0.05 * abs(math.log2(bs / 64))


def cheap_history() -> list[dict[str, Any]]:
    return [
        {"params": {"lr": lr, "bs": bs}, "fidelity": CHEAP, "value": 1.2 * loss(lr, bs)}
        for lr in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
        for bs in (32, 64, 128)
    ]


def make(**kw: Any) -> AutoLLMSearcher:
    args: dict[str, Any] = {"metric": "loss", "mode": "min", "fidelity": ("n_tokens",), "target": TARGET,
                            "agent": "classical", "seed": 0, "history": cheap_history()}
    args.update(kw)
    s = AutoLLMSearcher(**args)
    s.set_search_properties(None, None, dict(SPACE))
    return s


# --------------------------------------------------------------------------- conversion
def test_convert_tune_space_covers_the_common_domains() -> None:
    space, quantize, constants = convert_tune_space({
        "opt": {"lr": tune.loguniform(1e-5, 1e-1), "wd": tune.uniform(0.0, 0.3), "clip": tune.quniform(0.0, 2.0, 0.5)},
        "layers": tune.randint(2, 12), "width": tune.lograndint(64, 1024), "heads": tune.qrandint(2, 16, 2),
        "warmup": tune.qloguniform(10, 1000, 10), "act": tune.choice(["gelu", "relu"]), "seed": 3,
    })
    p = space.params
    assert p["opt/lr"] == FloatParam(low=1e-5, high=1e-1, log=True)
    assert p["opt/wd"] == FloatParam(low=0.0, high=0.3)
    assert p["opt/clip"] == FloatParam(low=0.0, high=2.0, step=0.5)
    assert p["layers"] == IntParam(low=2, high=11)  # randint's upper bound is exclusive
    assert p["width"] == IntParam(low=64, high=1023, log=True)
    assert p["heads"] == IntParam(low=2, high=16, step=2)  # qrandint's upper bound is inclusive
    assert p["warmup"] == FloatParam(low=10, high=1000, log=True) and quantize == {"warmup": 10.0}
    assert isinstance(p["act"], CategoricalParam) and constants == {"seed": 3}


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"x": tune.grid_search([1, 2])}, "grid_search is not supported"),
        ({"x": tune.randn(0, 1)}, "Normal is not supported"),
        ({"x": tune.sample_from(lambda _: 1)}, "not supported"),
    ],
)
def test_unsupported_tune_domains_are_named(config: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidSpaceError, match=match):
        convert_tune_space(config)


# --------------------------------------------------------------------------- callbacks
def test_suggest_transfers_and_writes_the_fidelity_keys() -> None:
    s = make()
    cfg = s.suggest("t1")
    assert cfg == {"lr": 3e-3, "bs": 64, "n_tokens": 2e10}


def test_pending_trials_are_not_proposed_again_and_states_are_recorded() -> None:
    s = make()
    cfgs = {tid: s.suggest(tid) for tid in ("a", "b", "c", "d", "e")}
    keys = {(c["lr"], c["bs"]) for c in cfgs.values()}
    assert len(keys) == 5
    s.on_trial_result("a", {"loss": 3.0, "training_iteration": 1})
    s.on_pause("a")
    s.on_unpause("a")
    s.on_trial_complete("a", {"loss": 2.1, "training_iteration": 2})
    s.on_trial_complete("b", None, error=True)
    s.on_trial_complete("c", result=None)
    s.on_trial_complete("d", {"loss": float("nan"), "training_iteration": 2})
    s.on_trial_complete("e", {"loss": 2.5, "training_iteration": 1})  # stopped early (ASHA-style)
    s.on_trial_complete("unknown", {"loss": 1.0})  # never suggested: ignored
    target = [t for t in s.history.trials if t.fidelity == TARGET]
    assert [t.state for t in target] == ["complete", "failed", "failed", "failed", "pruned"]
    assert target[0].value == 2.1 and target[-1].value == 2.5
    assert target[0].attrs["rationale"].startswith("Transferred")
    # failed and pruned configurations count as tried
    nxt = s.suggest("f")
    assert (nxt["lr"], nxt["bs"]) not in keys


def test_add_evaluated_point_reads_fidelity_keys() -> None:
    s = AutoLLMSearcher(metric="loss", mode="max", fidelity=("n_tokens",), target=TARGET, agent="classical", seed=0)
    s.set_search_properties(None, None, dict(SPACE))
    s.add_evaluated_point({"lr": 1e-3, "bs": 32, "n_tokens": 1e9}, 5.0)
    s.add_evaluated_point({"lr": 1e-2, "bs": 32, "n_tokens": 1e9}, 7.0)
    s.add_evaluated_point({"lr": 1e-4, "bs": 32}, 0.0, error=True)
    assert [(t.fidelity, t.state) for t in s.history.trials] == [(CHEAP, "complete"), (CHEAP, "complete"), (TARGET, "failed")]
    assert s.suggest("x")["lr"] == 1e-2  # mode="max": the highest cheap value is transferred


def test_save_restore_and_pickle_continue_identically(tmp_path: Path) -> None:
    s = make()
    for tid in ("a", "b"):
        s.suggest(tid)
    s.on_trial_complete("a", {"loss": 2.2})
    path = str(tmp_path / "searcher.pkl")
    s.save(path)
    saved = json.loads(Path(path).read_text())  # the state file is plain JSON, not a pickle
    assert saved["state"]["live"]["b"]["fidelity"] == TARGET
    restored = AutoLLMSearcher(agent="classical")
    restored.restore(path)
    clone = pickle.loads(pickle.dumps(s))
    expected = s.suggest("c")
    assert restored.suggest("c") == expected
    assert clone.suggest("c") == expected
    assert restored.metric == "loss" and restored.mode == "min"
    assert len(restored.history) == len(s.history)


def test_cost_aware_state_round_trips_through_json(tmp_path: Path) -> None:
    levels = [{"n_tokens": 1e9, "cost": 1.0}, {"n_tokens": 2e10, "cost": 10.0}]
    s = AutoLLMSearcher(metric="loss", mode="min", fidelity=("n_tokens",), target=TARGET, agent="classical",
                        seed=0, fidelity_levels=levels, budget=30.0)
    s.set_search_properties(None, None, {**SPACE, "warmup": tune.qloguniform(10, 1000, 10)})
    for i in range(3):
        s.suggest(str(i))
    s.on_trial_complete("0", {"loss": 2.5})
    path = tmp_path / "state.json"
    s.save(str(path))
    r = AutoLLMSearcher(agent="classical")
    r.restore(str(path))
    assert r.budget_spent() == s.budget_spent() == pytest.approx(3.0)
    for i in range(3, 20):
        assert r.suggest(str(i)) == s.suggest(str(i))


def _pickled_state(tmp_path: Path) -> Path:
    p = tmp_path / "old.pkl"
    p.write_bytes(pickle.dumps({"version": 1, "history": ""}))
    return p


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (_pickled_state, "is a pickle file.*unpickling can run arbitrary code"),
        (b"\xff\xfe not text", "not valid JSON"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not an AutoLLMSearcher state"),
        (b'{"format": "something-else", "state": {}}', "not an AutoLLMSearcher state"),
        (b'{"format": "autollm-sampler/ray-searcher-state", "state": {"version": 1}}', "version 1 is not 2"),
        (b'{"format": "autollm-sampler/ray-searcher-state", "state": {"version": 2}}', "lacks field"),
        (None, "cannot read searcher state"),
    ],
)
def test_restore_refuses_pickles_and_malformed_files(tmp_path: Path, content: Any, match: str) -> None:
    path = tmp_path / "state.pkl"
    if callable(content):
        path = content(tmp_path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        AutoLLMSearcher(agent="classical").restore(str(path))


def test_restore_names_a_malformed_field_and_leaves_the_searcher_unchanged(tmp_path: Path) -> None:
    s = make()
    s.suggest("a")
    state = s.get_state()
    for field, bad in [("history", 5), ("live", {"a": {"params": 1}}), ("target", "x"), ("n_suggested", "many"),
                       ("space", {"params": {"lr": {"type": "nope"}}})]:
        path = tmp_path / f"{field}.json"
        path.write_text(json.dumps({"format": "autollm-sampler/ray-searcher-state", "state": {**state, field: bad}}))
        fresh = make()
        with pytest.raises(CheckpointError, match=f"field '{field}' is malformed"):
            fresh.restore(str(path))
        assert fresh.history.trials == make().history.trials and fresh.suggest("b") == make().suggest("b")


def test_a_restored_pickle_payload_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"

    class Hostile:
        def __reduce__(self) -> Any:
            return (Path.touch, (marker,))

    path = tmp_path / "searcher-state-x.pkl"
    path.write_bytes(pickle.dumps({"state": Hostile()}, protocol=0))  # protocol 0: no \x80 header
    with pytest.raises(CheckpointError):
        AutoLLMSearcher(agent="classical").restore(str(path))
    assert not marker.exists()


def test_history_path_and_tune_space_arguments(tmp_path: Path) -> None:
    from autollm_sampler.history import History

    jsonl = tmp_path / "cheap_runs.jsonl"
    h = History()
    for item in cheap_history():
        h.add({"id": h.next_id(), **item})
    h.save(jsonl)
    csv_path = tmp_path / "cheap_runs.csv"
    csv_path.write_text("lr,bs,fidelity:n_tokens,value\n" + "".join(
        f"{t.params['lr']},{t.params['bs']},{t.fidelity['n_tokens']},{t.value}\n" for t in h.trials))
    for src in (str(jsonl), jsonl, csv_path):
        s = make(history=src)
        assert len(s.history) == 15 and s.suggest("t")["lr"] == 3e-3, src
    for bad, match in [({"params": {}}, "got dict"), (42, "got int"), ([("lr", 1)], r"history\[0\] is a tuple")]:
        with pytest.raises(TypeError, match=match):
            AutoLLMSearcher(history=bad, agent="classical")
    # a Tune dict as space=, top level or under "params"
    for space in ({"lr": tune.loguniform(1e-4, 1e-1), "opt": {"bs": tune.choice([32, 64])}},
                  {"params": {"lr": tune.loguniform(1e-4, 1e-1), "bs": {"type": "int", "low": 1, "high": 4}}}):
        s = AutoLLMSearcher(space, metric="loss", mode="min", agent="classical", seed=0)
        assert s.space is not None and s.space.params["lr"] == FloatParam(low=1e-4, high=1e-1, log=True)
        cfg = s.suggest("t")
        assert 1e-4 <= cfg["lr"] <= 1e-1
    for space, match in [({"x": tune.randn(0, 1)}, "parameter 'x': Tune sampler _?Normal"),
                         ({"params": {"y": tune.sample_from(lambda _: 1)}}, "parameter 'y'"),
                         ({"z": tune.grid_search([1, 2])}, "grid_search")]:
        with pytest.raises(InvalidSpaceError, match=match):
            AutoLLMSearcher(space, agent="classical")


def test_shorter_trials_are_pruned_when_the_longest_ends_in_nan() -> None:
    s = make()
    for tid in ("long", "short", "full"):
        s.suggest(tid)
    s.on_trial_complete("short", {"loss": 2.4, "training_iteration": 1, "done": True})
    s.on_trial_complete("long", {"loss": float("nan"), "training_iteration": 3, "done": True})
    states = {t.attrs["trial_id"]: t.state for t in s.history.trials if "trial_id" in t.attrs}
    assert states == {"short": "pruned", "long": "failed"}
    s.on_trial_complete("full", {"loss": 2.2, "training_iteration": 3, "done": True})
    assert [t.state for t in s.history.trials if t.attrs.get("trial_id") == "full"] == ["complete"]


def test_cost_aware_searcher_finishes_when_the_budget_is_spent() -> None:
    levels = [{"n_tokens": 1e9, "cost": 1.0}, {"n_tokens": 2e10, "cost": 10.0}]
    s = AutoLLMSearcher(metric="loss", mode="min", fidelity=("n_tokens",), target=TARGET, agent="classical",
                        seed=0, fidelity_levels=levels, budget=30.0)
    s.set_search_properties(None, None, dict(SPACE))
    fids = []
    for i in range(50):
        cfg = s.suggest(str(i))
        if cfg == Searcher.FINISHED:
            break
        fids.append(cfg["n_tokens"])
        s.on_trial_complete(str(i), {"loss": loss(cfg["lr"], cfg["bs"]) * (1.2 if cfg["n_tokens"] < 2e10 else 1.0)})
    # two target runs (60% of 30, whole runs) are kept; the one cheap level runs until it stagnates (no better
    # value in its last 4 runs, after at least 8) or the 10 the target runs leave are spent; the rest is unspent
    n_cheap = fids.count(1e9)
    assert fids == [1e9] * n_cheap + [2e10] * 2 and 8 <= n_cheap <= 10
    assert s.budget_spent() == pytest.approx(n_cheap + 20.0)
    assert s.recommend().source == "observed"


def test_explicit_space_and_errors() -> None:
    with pytest.raises(ValueError, match="use 'min' or 'max'"):
        AutoLLMSearcher(mode="best")
    s = AutoLLMSearcher({"params": {"mix": {"type": "simplex", "components": ["a", "b"]}}}, metric="m", mode="min",
                        agent="classical", seed=0)
    w = s.suggest("t")["mix"]
    assert set(w) == {"a", "b"} and sum(w.values()) == pytest.approx(1.0)
    assert s.set_search_properties("m", "min", {"x": tune.uniform(0, 1)}) is False  # already has a space
    with pytest.raises(RuntimeError, match="no search space"):
        AutoLLMSearcher(agent="classical").suggest("t")


# --------------------------------------------------------------------------- a real Ray Tune run
@pytest.fixture(scope="module")
def ray_runtime() -> Any:
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    # Ray's workers cannot import this test module by name: ship its functions by value
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()


def _trainable(config: dict[str, Any]) -> None:
    if config["bs"] == 32 and config["lr"] == 1e-2:
        raise RuntimeError("diverged")  # a crashing run: Tune reports it with error=True
    for i in range(3):
        tune.report({"loss": loss(config["lr"], config["bs"]) + 0.3 / (i + 1), "n_tokens": config["n_tokens"]})


def test_real_ray_tune_run_with_concurrency_limiter_and_asha(ray_runtime: Any, tmp_path: Path) -> None:
    from ray.tune.schedulers import ASHAScheduler

    history = cheap_history()
    history[-1] = {"params": {"lr": 1e-2, "bs": 32}, "fidelity": CHEAP, "value": 1.0}  # lure the agent to the crash
    searcher = AutoLLMSearcher(fidelity=("n_tokens",), target=TARGET, agent="classical", seed=0, history=history)
    tuner = tune.Tuner(
        _trainable,
        param_space=dict(SPACE),
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=2),
            scheduler=ASHAScheduler(max_t=3, grace_period=1, reduction_factor=2),
            num_samples=8, metric="loss", mode="min", reuse_actors=True,
        ),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="exp", verbose=0),
    )
    results = tuner.fit()
    assert len(results) == 8
    assert all(r.config["n_tokens"] == 2e10 for r in results)
    assert len(results.errors) == 1
    target = [t for t in searcher.history.trials if t.fidelity == TARGET]
    assert len(target) == 8
    failed = [t for t in target if t.state == "failed"]
    # the transferred cheap optimum was proposed, crashed, and was recorded as failed (error=True)
    assert len(failed) == 1 and failed[0].params == {"lr": 1e-2, "bs": 32}
    assert len({(t.params["lr"], t.params["bs"]) for t in target}) == 8  # no configuration twice
    full = [t for t in target if t.state == "complete"]
    assert full and all(t.attrs["iterations"] == 3 for t in full)
    assert all(t.attrs["iterations"] < 3 for t in target if t.state == "pruned")
    # Tune checkpointed the searcher through save(); it restores
    ckpts = glob.glob(str(tmp_path / "exp" / "searcher-state-*.pkl"))
    assert ckpts
    assert json.loads(Path(ckpts[0]).read_text())["format"] == "autollm-sampler/ray-searcher-state"  # JSON, no pickle
    again = AutoLLMSearcher(agent="classical")
    again.restore_from_dir(str(tmp_path / "exp"))
    assert len(again.history) == len(searcher.history)
