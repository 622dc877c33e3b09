"""Bring your own sweep table: ``TabularTask.from_table``, registration, and the env checker on it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from autollm_sampler import gym
from autollm_sampler.gym import _registry, _splits
from autollm_sampler.gym._checker import check_env, check_task
from autollm_sampler.space import CategoricalParam, SimplexParam


def _sweep(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "sweep.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["lr", "wd", "w_web", "w_code", "n_params", "tokens", "loss", "gpu_hours"])
        for n_params, tokens in ((1e7, 1e9), (1e8, 2e9), (1e9, 2e10)):
            for lr in (1e-4, 3e-4, 1e-3, 3e-3):
                for wd in (0.0, 0.1):
                    for web in (0.2, 0.5, 0.8):
                        loss = 3.0 - 0.1 * np.log10(n_params) + (np.log10(lr) + 3) ** 2 * 0.05 + wd + abs(web - 0.5)
                        w.writerow([lr, wd, web, round(1 - web, 3), n_params, tokens, loss + rng.normal(0, 1e-3),
                                    n_params * tokens * 6 / 3.6e18])
    return path


def test_from_table_csv_with_a_simplex_group(tmp_path: Path) -> None:
    task = gym.TabularTask.from_table(
        _sweep(tmp_path),
        params={"lr": "lr", "wd": "wd", "mix": ["w_web", "w_code"]},
        fidelity={"n_params": "n_params", "n_tokens": "tokens"},
        objective="loss",
        direction="minimize",
        cost="gpu_hours",
        id="my-sweep-v1",
        cost_unit="GPU-hours",
    )
    assert [len(c) for c in task.cells] == [24, 24, 24] and task.fidelity_axes == ("n_params", "n_tokens")
    cell = task.cells[-1]
    assert cell.fidelity == {"n_params": 1e9, "n_tokens": 2e10}
    assert isinstance(cell.space.params["mix"], SimplexParam) and isinstance(cell.space.params["lr"], CategoricalParam)
    assert cell.space.role_of("lr") == "lr" and cell.space.role_of("mix") == "mixture"
    best = cell.configs[cell.best_index]
    assert best["lr"] == 1e-3 and best["wd"] == 0.0 and best["mix"]["w_web"] == pytest.approx(0.5)
    assert task.metadata.cost_unit == "GPU-hours"
    check_task(task, require_provenance=False)


def test_from_table_rows_and_columns_and_errors() -> None:
    cols = {"lr": [1e-3, 1e-2, 1e-3, 1e-2], "n": [1, 1, 2, 2], "loss": [3.0, 2.9, 2.5, 2.6]}
    task = gym.TabularTask.from_table(cols, params=["lr"], fidelity=["n"], objective="loss", cost=lambda r: r["n"])
    assert [c.optimum for c in task.cells] == [2.9, 2.5] and list(task.cells[1].costs) == [2.0, 2.0]
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['lr_peak'\]"):
        gym.TabularTask.from_table(cols, params=["lr_peak"], fidelity=["n"], objective="loss")
    with pytest.raises(ValueError, match="column 'n': 'big' is not a number"):
        gym.TabularTask.from_table({**cols, "n": ["big"] * 4}, params=["lr"], fidelity=["n"], objective="loss")


def test_a_registered_custom_task_works_with_make_env_and_the_checker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # keep the global registry, cache and splits as they were for the other tests
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry.registry()))
    monkeypatch.setattr(_registry, "_CACHE", dict(_registry._CACHE))
    monkeypatch.setattr(_splits, "SPLITS", dict(_splits.SPLITS))
    monkeypatch.setattr(_splits, "_HISTORY_ONLY_CHEAPEST", set(_splits._HISTORY_ONLY_CHEAPEST))
    path = _sweep(tmp_path)

    def build(raw_dir: object = None) -> gym.TabularTask:
        return gym.TabularTask.from_table(
            path, params={"lr": "lr", "wd": "wd", "mix": ["w_web", "w_code"]},
            fidelity={"n_params": "n_params", "n_tokens": "tokens"}, objective="loss", cost="gpu_hours",
            id="byo-sweep-v1", metadata=gym.TaskMetadata(objective="loss", direction="minimize",
                                                         cost_unit="GPU-hours", citation="ours", licence="MIT"))

    gym.register(gym.TaskSpec("byo-sweep-v1", build, "byo", "a test sweep", needs_raw=False), overwrite=True)
    gym.register_split("byo-sweep-v1")
    task = gym.make("byo-sweep-v1")
    assert [e.target for e in gym.experiments(task, "test")] == [task.cells[-1].name]
    check_task(task)
    for setting in ("A", "B"):
        for history in ("full", "sparse"):
            check_env(gym.make_env("byo-sweep-v1", setting=setting, history=history, budget=4, sparse_n=5))
    with pytest.raises(ValueError, match="must end in a version"):
        gym.register(gym.TaskSpec("byo-sweep", build, "byo", "no version"))
