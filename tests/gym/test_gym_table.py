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


def _grid_rows(points: list[tuple[float, ...]], axes: tuple[str, ...] = ("n", "d")) -> list[dict[str, float]]:
    return [{**dict(zip(axes, p, strict=True)), "lr": lr, "loss": 3.0 - 0.1 * sum(p) / 100 + lr}
            for p in points for lr in (0.1, 0.2)]


@pytest.mark.parametrize(
    ("points", "axes", "target", "history"),
    [
        ([(4.0,), (1.0,), (2.0,)], ("n",), "n=4", ["n=1", "n=2"]),
        ([(1.0, 10.0), (2.0, 10.0), (1.0, 20.0), (2.0, 20.0)], ("n", "d"), "n=2,d=20",
         ["n=1,d=10", "n=2,d=10", "n=1,d=20"]),
        # no cell is largest on every axis: the largest product is the target, smaller products its history
        ([(1.0, 30.0), (2.0, 20.0), (1.0, 10.0)], ("n", "d"), "n=2,d=20", ["n=1,d=10", "n=1,d=30"]),
    ],
)
def test_from_table_without_cost_targets_the_largest_fidelity(
    points: list[tuple[float, ...]], axes: tuple[str, ...], target: str, history: list[str]
) -> None:
    task = gym.TabularTask.from_table(_grid_rows(points, axes), params=["lr"], fidelity=list(axes), objective="loss")
    assert task.metadata.cost_unit == "fidelity product"
    (exp,) = gym.experiments(task, "test")
    assert exp.target == target and sorted(exp.history_cells) == sorted(history)
    obs, _ = gym.LLMConfigEnv(task, exp.target).reset(seed=0)
    assert len(obs.history) == 2 * len(history)  # every run of every cheaper cell


@pytest.mark.parametrize(
    ("points", "match"),
    [
        ([(1.0, 20.0), (2.0, 10.0)], r"tie for the largest"),
        ([(0.0, 10.0), (1.0, 20.0)], r"needs values > 0; cell 'n=0,d=10'"),
        ([(-1.0, 10.0), (1.0, 20.0)], r"needs values > 0"),
    ],
)
def test_from_table_without_cost_refuses_an_ambiguous_target(points: list[tuple[float, ...]], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        gym.TabularTask.from_table(_grid_rows(points), params=["lr"], fidelity=["n", "d"], objective="loss")
    # a cost makes the same table valid
    gym.TabularTask.from_table(_grid_rows(points), params=["lr"], fidelity=["n", "d"], objective="loss", cost=1.0)


def test_the_cost_function_receives_parsed_numbers(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("lr,n,bias,arch,loss\n0.1,1000,True,a,3.0\n0.2,1000,False,b,2.9\n0.1,2e3,False,a,2.5\n")
    seen: list[dict[str, object]] = []

    def cost(row: dict[str, object]) -> float:
        seen.append(dict(row))
        return 6.0 * row["n"] * (2 if row["bias"] else 1)  # type: ignore[operator]

    task = gym.TabularTask.from_table(path, params=["lr", "bias", "arch"], fidelity=["n"], objective="loss", cost=cost)
    assert seen[0] == {"lr": 0.1, "n": 1000, "bias": True, "arch": "a", "loss": 3.0}
    assert type(seen[0]["n"]) is int and type(seen[2]["n"]) is float and seen[1]["bias"] is False
    assert list(task.cell("n=1000").costs) == [12000.0, 6000.0] and list(task.cell("n=2000").costs) == [12000.0]


@pytest.mark.parametrize(
    ("cost", "match"),
    [
        (lambda r: "cheap", "the cost function returned 'cheap', not a number"),
        (lambda r: -1.0, r"costs -1.0; every run's cost must be a finite number >= 0"),
        (lambda r: float("nan"), r"costs nan"),
        ("c", r"costs inf"),
        ("x" * 500, r"lacks column"),
    ],
)
def test_from_table_refuses_bad_costs(cost: object, match: str) -> None:
    cols = {"lr": [0.1, 0.2], "n": [1, 1], "loss": [3.0, 2.9], "c": ["1", "inf"]}
    with pytest.raises(ValueError, match=match) as err:
        gym.TabularTask.from_table(cols, params=["lr"], fidelity=["n"], objective="loss", cost=cost)  # type: ignore[arg-type]
    assert len(str(err.value)) < 600  # bounded, whatever the input


def test_register_overwrite_rebuilds_the_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry.registry()))
    monkeypatch.setattr(_registry, "_CACHE", dict(_registry._CACHE))

    def builder(offset: float) -> object:
        def build() -> gym.TabularTask:
            rows = [{"n": n, "lr": lr, "loss": offset + lr / n} for n in (1.0, 2.0) for lr in (0.1, 0.2)]
            return gym.TabularTask.from_table(rows, params=["lr"], fidelity=["n"], objective="loss", id="swap-v1")
        return build

    gym.register(gym.TaskSpec("swap-v1", builder(1.0), "swap", "first", needs_raw=False))  # type: ignore[arg-type]
    first = gym.make("swap-v1")
    assert gym.make("swap-v1") is first and first.cell("n=2").optimum == pytest.approx(1.05)  # cached
    gym.register(gym.TaskSpec("swap-v1", builder(5.0), "swap", "second", needs_raw=False), overwrite=True)  # type: ignore[arg-type]
    assert gym.make("swap-v1").cell("n=2").optimum == pytest.approx(5.05)
    assert gym.make_env("swap-v1", target="n=2").target.optimum == pytest.approx(5.05)


def test_snap_of_an_unreadable_proposal_raises_in_strict_mode_and_warns_otherwise(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from autollm_sampler._strict import STRICT_ENV
    from autollm_sampler.exceptions import InvalidTrialError

    cols = {"lr": [1e-3, 1e-2, 1e-3, 1e-2], "n": [1, 1, 2, 2], "loss": [3.0, 2.9, 2.5, 2.6]}
    cell = gym.TabularTask.from_table(cols, params=["lr"], fidelity=["n"], objective="loss", cost=lambda r: r["n"]).cells[1]
    assert cell.snap({"lr": 0.0011}) == (0, False)  # off the table but readable: the nearest row
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(InvalidTrialError, match="'lr'"):
        cell.snap({"lr": [1, 2]})
    monkeypatch.setenv(STRICT_ENV, "0")
    with caplog.at_level("WARNING", logger="autollm_sampler.gym._table"):
        idx, exact = cell.snap({"lr": [1, 2]})
    assert not exact and 0 <= idx < 2 and "cannot be placed" in caplog.text


def test_register_takes_a_built_table_and_refuses_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    """``gym.register(task)`` with the TabularTask from_table returned (it used to fail later in make(), with
    "'TabularTask' object has no attribute 'needs_raw'"); overwrite=True then make_env sees the new table."""
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry.registry()))
    monkeypatch.setattr(_registry, "_CACHE", dict(_registry._CACHE))

    def table(offset: float) -> gym.TabularTask:
        rows = [{"n": n, "lr": lr, "loss": offset + lr / n} for n in (1.0, 2.0) for lr in (0.1, 0.2)]
        return gym.TabularTask.from_table(rows, params=["lr"], fidelity=["n"], objective="loss", id="table-v1")

    gym.register(table(1.0))
    assert gym.make_env("table-v1", target="n=2").target.optimum == pytest.approx(1.05)
    with pytest.raises(ValueError, match="already registered"):
        gym.register(table(5.0))
    gym.register(table(5.0), overwrite=True)
    assert gym.make_env("table-v1", target="n=2").target.optimum == pytest.approx(5.05)
    assert not _registry.registry()["table-v1"].needs_raw
    with pytest.raises(TypeError, match="TaskSpec or a TabularTask"):
        gym.register({"id": "dict-v1"})  # type: ignore[arg-type]
