"""Several worker processes share one study through RDB storage (SQLite, and a real PostgreSQL server).

Every worker is a separate Python process running ``study.optimize`` with its own AutoLLMSampler. With
shared storage the sampler writes its proposal to the trial (a *claim*), re-reads the study, and proposes
again, with every claim visible at the re-read as pending, when another process claimed the same
configuration first. The tests check that every trial is recorded, that no worker crashes, that trial
numbers are unique, and that no configuration runs twice while untried ones remain.

The fast tests run four workers x 25 trials once per backend on a 792-point discrete space; the slow one
(``-m slow``) repeats that ten times per backend and prints the duplicate counts.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

LRS = [1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 2e-2, 3e-2, 5e-2]
BSS = [16, 32, 64, 128, 256, 512, 1024, 2048]
LAYERS = (2, 10)
GRID = len(LRS) * len(BSS) * (LAYERS[1] - LAYERS[0] + 1)  # 792 configurations
N_WORKERS, N_PER_WORKER, N_CHEAP = 4, 25, 40

WORKER = textwrap.dedent(
    """
    import json, math, random, sys, time
    import optuna
    from autollm_sampler.integrations.optuna import AutoLLMSampler

    url, name, n, worker = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {})
    sampler = AutoLLMSampler(fidelity=("n_params",), target={"n_params": 1e9}, agent="classical", seed=worker)
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
    pause = random.Random(worker)

    def objective(trial):
        lr = trial.suggest_categorical("lr", %(lrs)r)
        bs = trial.suggest_categorical("bs", %(bss)r)
        layers = trial.suggest_int("layers", %(lo)d, %(hi)d)
        time.sleep(pause.uniform(0.0, 0.02))
        return 2.0 + (math.log10(lr) + 2.5) ** 2 + 0.05 * abs(math.log2(bs / 128)) + 0.01 * abs(layers - 6)

    study.optimize(objective, n_trials=n, catch=())
    print("done", json.dumps(dict(sampler.fallback_counts)))
    """
) % {"lrs": LRS, "bss": BSS, "lo": LAYERS[0], "hi": LAYERS[1]}


def _cheap_runs(seed: int) -> list[optuna.trial.FrozenTrial]:
    dists = {"lr": CategoricalDistribution(LRS), "bs": CategoricalDistribution(BSS), "layers": IntDistribution(*LAYERS)}
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(N_CHEAP):
        lr, bs, layers = LRS[int(rng.integers(len(LRS)))], BSS[int(rng.integers(len(BSS)))], int(rng.integers(LAYERS[0], LAYERS[1] + 1))
        value = 1.3 * (2.0 + (math.log10(lr) + 2.2) ** 2 + 0.05 * abs(math.log2(bs / 64)) + 0.01 * abs(layers - 5))
        out.append(create_trial(params={"lr": lr, "bs": bs, "layers": layers}, distributions=dists, value=value,
                                user_attrs={"fidelity": {"n_params": 1e8}}))
    return out


def run_shared_study(url: str, tmp_path: Path, name: str, seed: int = 0) -> dict[str, Any]:
    """Run ``N_WORKERS`` processes x ``N_PER_WORKER`` trials on one study; check it and return its figures."""
    storage = optuna.storages.RDBStorage(url)
    optuna.create_study(study_name=name, storage=storage).add_trials(_cheap_runs(seed))
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [
        subprocess.Popen([sys.executable, str(script), url, name, str(N_PER_WORKER), str(seed * 100 + w)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in range(N_WORKERS)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    counts: dict[str, int] = {}
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert out.startswith("done"), out[-500:]
        for k, v in json.loads(out.split(" ", 1)[1]).items():
            counts[k] = counts.get(k, 0) + int(v)

    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    target = [t for t in trials if "fidelity" not in t.user_attrs]
    assert len(trials) == N_CHEAP + N_WORKERS * N_PER_WORKER  # no trial lost
    assert len({t.number for t in trials}) == len(trials)  # no number given twice
    assert len(target) == N_WORKERS * N_PER_WORKER
    assert all(t.state == TrialState.COMPLETE for t in target)
    assert all("autollm:rationale" in t.user_attrs for t in target)
    configs = {(t.params["lr"], t.params["bs"], t.params["layers"]) for t in target}
    attempts = [int(t.system_attrs["autollm:claim_attempts"]) for t in target]
    return {
        "duplicates": len(target) - len(configs),
        "reproposed": sum(a > 1 for a in attempts),
        "max_attempts": max(attempts),
        "fallback_counts": counts,
    }


def _check(stats: dict[str, Any]) -> None:
    assert GRID > N_WORKERS * N_PER_WORKER  # untried configurations remain throughout
    assert stats["duplicates"] == 0, stats
    assert stats["fallback_counts"] == {}, stats  # nothing proposed independently, no claim race lost


def test_worker_processes_share_a_sqlite_study(tmp_path: Path) -> None:
    _check(run_shared_study(f"sqlite:///{tmp_path / 'study.db'}", tmp_path, "shared"))


@pytest.mark.postgres
def test_worker_processes_share_a_postgresql_study(postgres_url: str, tmp_path: Path) -> None:
    _check(run_shared_study(postgres_url, tmp_path, "shared"))


@pytest.mark.slow
@pytest.mark.postgres
def test_ten_repeats_on_sqlite_and_postgresql_never_repeat_a_configuration(postgres_url: str, tmp_path: Path) -> None:
    rows = []
    for backend in ("sqlite", "postgresql"):
        for rep in range(10):
            url = f"sqlite:///{tmp_path / f'study{rep}.db'}" if backend == "sqlite" else postgres_url
            stats = run_shared_study(url, tmp_path, f"repeat{rep}", seed=rep + 1)
            rows.append((backend, rep, stats))
            print(f"{backend} run {rep}: {stats}")
    total = {b: sum(s["duplicates"] for bb, _, s in rows if bb == b) for b in ("sqlite", "postgresql")}
    print(f"duplicate configurations over 10 runs of {N_WORKERS} workers x {N_PER_WORKER} trials: {total}")
    for _, _, stats in rows:
        _check(stats)
