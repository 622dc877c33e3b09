"""The OptunaHub package under examples/optunahub loads with optunahub and runs a real Optuna study."""

from __future__ import annotations

import math
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import create_trial

from autollm_sampler.integrations.optuna import AutoLLMSampler as LibrarySampler

optunahub = pytest.importorskip("optunahub")

ROOT = Path(__file__).resolve().parents[2]
REGISTRY = ROOT / "examples" / "optunahub"  # laid out like the registry's package/ folder
PACKAGE = "samplers/autollm"
TARGET = {"n_params": 1.07e9, "n_tokens": 2e10}
CHEAP = {"n_params": 1.2e8, "n_tokens": 2e9}
DISTS = {"lr": FloatDistribution(1e-4, 1e-2, log=True), "batch_size": CategoricalDistribution([64, 128, 256])}


def loss(lr: float, batch_size: int, n_params: float) -> float:
    best_lr = 3e-3 * (n_params / 1.2e8) ** -0.3
    return 2 + 30 / n_params**0.2 + 0.15 * math.log10(lr / best_lr) ** 2 + 0.01 * abs(math.log2(batch_size / 128))


@pytest.fixture(scope="module")
def hub_module():
    return optunahub.load_local_module(PACKAGE, registry_root=str(REGISTRY))


def study_with_cheap_runs(sampler: optuna.samplers.BaseSampler, storage: str) -> optuna.Study:
    study = optuna.create_study(sampler=sampler, storage=storage)
    study.add_trials([
        create_trial(params={"lr": lr, "batch_size": bs}, distributions=DISTS, value=loss(lr, bs, CHEAP["n_params"]),
                     user_attrs={"fidelity": CHEAP})
        for lr in (3e-4, 1e-3, 3e-3, 1e-2) for bs in (64, 128, 256)
    ])
    return study


def objective(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    bs = trial.suggest_categorical("batch_size", [64, 128, 256])
    return loss(lr, bs, TARGET["n_params"])


def test_registry_files_are_there_with_front_matter() -> None:
    pkg = REGISTRY / PACKAGE
    assert {"__init__.py", "README.md", "LICENSE", "example.py", "requirements.txt"} <= {p.name for p in pkg.iterdir()}
    front = re.match(r"---\n(.*?)\n---\n", (pkg / "README.md").read_text(), re.S)
    assert front is not None, "README.md must open with the registry's front matter"
    import yaml

    meta = yaml.safe_load(front.group(1))
    assert set(meta) == {"author", "title", "description", "tags", "optuna_versions", "license"}
    assert "sampler" in meta["tags"]  # the registry requires it for a package under samplers/
    assert all(isinstance(meta[k], str) and meta[k] for k in ("author", "title", "description", "license"))
    assert optuna.__version__ in [str(v) for v in meta["optuna_versions"]]
    reqs = [line.split("#")[0].strip() for line in (pkg / "requirements.txt").read_text().splitlines()]
    assert [r for r in reqs if r] and all(r.startswith("autollm-sampler") for r in reqs if r)
    assert "Apache License" in (pkg / "LICENSE").read_text()


def test_loaded_sampler_runs_a_real_study(hub_module, tmp_path: Path) -> None:
    assert hub_module.__name__ == "optunahub_registry.package.samplers.autollm"
    cls = hub_module.AutoLLMSampler
    assert issubclass(cls, LibrarySampler)
    sampler = cls(target=TARGET, seed=0)
    assert sampler.fidelity_axes == ("n_params", "n_tokens")  # taken from the target's keys
    study = study_with_cheap_runs(sampler, f"sqlite:///{tmp_path / 'hub.db'}")
    study.optimize(objective, n_trials=4)
    target_trials = study.trials[12:]
    assert len(target_trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in target_trials)
    # every target trial was proposed by the trained agent from the cheap evidence, with a prediction
    assert [t.user_attrs.get("autollm:source") for t in target_trials] == ["model"] * 4
    assert all(math.isfinite(t.user_attrs["autollm:predicted_value"]) for t in target_trials)
    assert len({(t.params["lr"], t.params["batch_size"]) for t in target_trials}) == 4  # no repeats
    best = sampler.recommend(study)
    assert best.params == min(target_trials, key=lambda t: t.value).params
    # the same as the library's sampler with the same arguments: the wrapper adds nothing to the proposals
    lib = LibrarySampler(fidelity=("n_params", "n_tokens"), target=TARGET, seed=0)
    other = study_with_cheap_runs(lib, f"sqlite:///{tmp_path / 'lib.db'}")
    other.optimize(objective, n_trials=4)
    assert [t.params for t in other.trials[12:]] == [t.params for t in target_trials]


def test_loaded_sampler_keeps_the_library_arguments(hub_module) -> None:
    cls = hub_module.AutoLLMSampler
    plain = cls(agent="classical", seed=1)  # no target: every trial is a target trial
    assert plain.fidelity_axes == () and plain.target == {}
    named = cls(target={"n_params": 7e9}, fidelity=("n_params",), agent="classical")
    assert named.fidelity_axes == ("n_params",)
    back = pickle.loads(pickle.dumps(plain))
    assert type(back) is cls
    with pytest.raises(ValueError, match="budget"):
        cls(target=TARGET, budget=10.0)  # a library check, passed through


def test_example_script_runs() -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, str(REGISTRY / PACKAGE / "example.py")], capture_output=True, text=True,
                         timeout=300, cwd=ROOT, env=env)
    assert out.returncode == 0, out.stderr[-4000:]
    assert len(re.findall(r"^trial \d+: lr=", out.stdout, re.M)) == 5
    assert "best target run: {'lr':" in out.stdout


def test_a_near_target_run_counts_as_a_target_run_as_the_readme_says(hub_module) -> None:
    # README "Others": a run within 1% of the target on every axis is a target run
    assert "within 1% of the target" in " ".join((REGISTRY / PACKAGE / "README.md").read_text().split())
    sampler = hub_module.AutoLLMSampler(target=TARGET, agent="classical", seed=0)
    study = study_with_cheap_runs(sampler, "sqlite:///:memory:")
    near = {"n_params": TARGET["n_params"], "n_tokens": 25_999_966_208 / 2.6e10 * TARGET["n_tokens"]}
    study.add_trial(create_trial(params={"lr": 1e-3, "batch_size": 128}, distributions=DISTS, value=2.5,
                                 user_attrs={"fidelity": near}))
    rec = sampler.recommend(study)
    assert rec.source == "observed" and rec.extras["trial_number"] == 12  # the run itself, not a proposal
    assert rec.params == {"lr": 1e-3, "batch_size": 128}
