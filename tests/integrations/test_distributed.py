"""Several worker processes share one study through RDB storage (SQLite, and a real PostgreSQL server).

Every worker is a separate Python process running ``study.optimize`` with its own AutoLLMSampler. The
test checks that every trial is recorded, that no worker crashes, and that no configuration is proposed
twice beyond what pending handling allows: with shared storage the sampler writes its proposal to the
trial, re-reads the study, and proposes again if another process claimed the same configuration first,
so a repeat is only kept once all its re-proposals were claimed too.
"""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from autollm_sampler.integrations.optuna import _CLAIM_ATTEMPTS as CLAIM_ATTEMPTS

LRS = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]
BSS = [32, 64, 128, 256, 512]
N_WORKERS, N_PER_WORKER = 3, 5

WORKER = textwrap.dedent(
    """
    import math, sys, time
    import optuna
    from autollm_sampler.integrations.optuna import AutoLLMSampler

    url, name, n, worker = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {})
    sampler = AutoLLMSampler(fidelity=("n_params",), target={"n_params": 1e9}, agent="classical", seed=worker)
    study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)

    def objective(trial):
        lr = trial.suggest_categorical("lr", %(lrs)r)
        bs = trial.suggest_categorical("bs", %(bss)r)
        time.sleep(0.02 + 0.02 * worker)
        return 2.0 + (math.log10(lr) + 2.5) ** 2 + 0.05 * abs(math.log2(bs / 128))

    study.optimize(objective, n_trials=n, catch=())
    print("done", worker)
    """
) % {"lrs": LRS, "bss": BSS}


def _run_workers(url: str, tmp_path: Path) -> int:
    name = "shared"
    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(study_name=name, storage=storage)
    dists = {"lr": CategoricalDistribution(LRS), "bs": CategoricalDistribution(BSS)}
    cheap = [
        create_trial(params={"lr": lr, "bs": bs}, distributions=dists,
                     value=1.3 * (2.0 + (math.log10(lr) + 2.2) ** 2 + 0.05 * abs(math.log2(bs / 64))),
                     user_attrs={"fidelity": {"n_params": 1e8}})
        for lr in LRS for bs in BSS
    ]
    study.add_trials(cheap)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    procs = [
        subprocess.Popen([sys.executable, str(script), url, name, str(N_PER_WORKER), str(w)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for w in range(N_WORKERS)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert out.startswith("done")

    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    target = [t for t in trials if "fidelity" not in t.user_attrs]
    assert len(trials) == len(cheap) + N_WORKERS * N_PER_WORKER
    assert len(target) == N_WORKERS * N_PER_WORKER
    assert all(t.state == TrialState.COMPLETE for t in target)
    assert all("autollm:rationale" in t.user_attrs for t in target)
    by_config: dict[tuple[float, int], list[optuna.trial.FrozenTrial]] = {}
    for t in target:
        by_config.setdefault((t.params["lr"], t.params["bs"]), []).append(t)
    for config, group in by_config.items():
        group.sort(key=lambda t: t.system_attrs["autollm:proposed_at"])
        for first, second in zip(group, group[1:], strict=False):
            # claim-then-verify: a configuration claimed by another process first is only kept after the
            # sampler ran out of alternatives (every re-proposal was claimed too)
            assert second.system_attrs["autollm:claim_attempts"] == CLAIM_ATTEMPTS, (
                f"{config} proposed again by trial {second.number} after trial {first.number} had claimed it"
            )
    return len(target) - len(by_config)


def test_worker_processes_share_a_sqlite_study(tmp_path: Path) -> None:
    _run_workers(f"sqlite:///{tmp_path / 'study.db'}", tmp_path)


@pytest.mark.postgres
def test_worker_processes_share_a_postgresql_study(postgres_url: str, tmp_path: Path) -> None:
    _run_workers(postgres_url, tmp_path)
