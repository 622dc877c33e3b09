"""The project-made tasks build from the tables shipped inside the package, with no raw data."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from autollm_sampler import gym
from autollm_sampler.gym._checker import check_env, check_task
from autollm_sampler.gym.recipes import nano

TASKS = {nano.PRETRAIN_ID: (nano.PRETRAIN_ROWS, nano.PRETRAIN_CELLS),
         nano.GRPO_ID: (nano.GRPO_ROWS, nano.GRPO_CELLS),
         nano.GRPO2_ID: (nano.GRPO2_ROWS, nano.GRPO2_CELLS),
         nano.PRETRAIN2_ID: (nano.PRETRAIN2_ROWS, nano.PRETRAIN2_CELLS)}


@pytest.mark.parametrize("tid", sorted(TASKS))
def test_builds_without_raw_data_and_passes_check_task(tid: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(gym.RAW_ENV, str(tmp_path / "no-raw-data-here"))
    spec = gym.registry()[tid]
    assert not spec.needs_raw and (spec.expected_rows, spec.expected_cells) == TASKS[tid]
    task = gym.make(tid)
    assert (task.n_rows, len(task.cells)) == TASKS[tid]
    check_task(task)
    assert task.metadata.licence.startswith("Apache-2.0") and task.metadata.schema_version == gym.SCHEMA_VERSION


def test_pretrain_table_matches_its_metadata_and_grid() -> None:
    task = gym.make(nano.PRETRAIN_ID)
    meta = nano.metadata(nano.PRETRAIN_ID)
    assert task.direction == "minimize" and meta["cost_column"] == "train_cpu_s"
    assert sorted({c.fidelity["n_tokens"] for c in task.cells}) == meta["grid"]["token_budgets"]
    assert len({c.fidelity["n_params"] for c in task.cells}) == 3
    for cell in task.cells:
        assert len(cell) == 40  # 8 lr x 5 batch sizes, seed 0
        assert cell.space.role_of("lr") == "lr" and cell.space.role_of("batch_size") == "batch_size"
        assert np.all(cell.values <= math.log(256) + 1e-9) and np.all(cell.costs > 0)
    # more parameters and more tokens reach a lower loss
    best = {(c.fidelity["n_params"], c.fidelity["n_tokens"]): c.optimum for c in task.cells}
    ns, ds = sorted({k[0] for k in best}), sorted({k[1] for k in best})
    assert all(best[(n, ds[-1])] < best[(n, ds[0])] for n in ns)
    assert best[(ns[-1], ds[-1])] == min(best.values())
    rows = nano.runs(nano.PRETRAIN_ID)
    assert len(rows) == meta["n_runs"] > task.n_rows  # repeat seeds are kept in the shipped table
    assert meta["noise"]["pairs"] >= 6 * 6 and meta["noise"]["seed_sd_estimate"] > 0


def test_grpo_table_matches_its_metadata_and_grid() -> None:
    task = gym.make(nano.GRPO_ID)
    meta = nano.metadata(nano.GRPO_ID)
    assert task.direction == "maximize" and task.fidelity_axes == ("n_params",)
    for cell in task.cells:
        assert len(cell) == 54  # 3 lr x 3 KL x 3 group sizes x 2 temperatures
        assert [cell.space.role_of(p) for p in ("lr", "kl_coef", "group_size", "temperature")] == [
            "lr", "kl_coef", "group_size", "temperature"]
        assert np.all((cell.values >= 0) & (cell.values <= 1))
    assert meta["noise"]["pairs"] >= 9 * 3 and len(meta["base_policies"]) == 3
    assert meta["compute"]["total_cpu_s"] > meta["compute"]["grpo_train_cpu_s"] > 0


@pytest.mark.parametrize("tid", sorted(TASKS))
def test_largest_model_is_the_test_split(tid: str) -> None:
    task = gym.make(tid)
    top = max(c.fidelity["n_params"] for c in task.cells)
    test = gym.experiments(task, "test")
    assert test and all(task.cell(e.target).fidelity["n_params"] == top for e in test)
    train = gym.experiments(task, "train")
    assert train and all(task.cell(e.target).fidelity["n_params"] < top for e in train)
    cheapest = min(task.cells, key=lambda c: c.cost).name
    assert cheapest not in {e.target for e in train}
    for e in train:
        assert not any(gym.is_test_target(task, h) for h in e.history_cells)


@pytest.mark.parametrize("tid", sorted(TASKS))
def test_env_contract_holds(tid: str) -> None:
    for setting in ("A", "B"):
        check_env(gym.make_env(tid, setting=setting))


def test_unknown_project_table_is_a_clear_error() -> None:
    with pytest.raises(KeyError, match="not a project-made task"):
        nano.metadata("steplaw-dense-v1")
    with pytest.raises(KeyError, match="not a project-made task"):
        nano.informativeness("steplaw-dense-v1")


def test_grpo_v2_table_matches_its_design() -> None:
    task = gym.make(nano.GRPO2_ID)
    meta = nano.metadata(nano.GRPO2_ID)
    assert task.direction == "maximize" and task.fidelity_axes == ("n_params", "rl_updates")
    assert len({c.fidelity["n_params"] for c in task.cells}) == 4
    assert sorted({c.fidelity["rl_updates"] for c in task.cells}) == meta["design"]["eval_at"] == [40, 160]
    configs = {tuple(sorted(c.items())) for c in task.cells[0].configs}
    for cell in task.cells:
        assert len(cell) == meta["design"]["n_configs"] == 32
        assert {tuple(sorted(c.items())) for c in cell.configs} == configs  # one design shared by every cell
        assert np.all((cell.values >= 0) & (cell.values <= 1)) and np.all(cell.costs > 0)
        assert cell.space.role_of("temperature") == "temperature" and cell.space.role_of("clip_eps") == "other"
    # the KL coefficient includes zero, and lr reaches values where GRPO collapses the policy (pass@1 < 0.05)
    assert min(c["kl_coef"] for c in configs_as_dicts(task)) == 0.0
    top = max(task.cells, key=lambda c: c.cost)
    collapsed = [c["lr"] for c, v in zip(top.configs, top.values, strict=True) if v < 0.05]
    assert collapsed and min(collapsed) > np.median([c["lr"] for c in top.configs])
    # more updates help the best configuration in every size; the base is improved on
    for n in {c.fidelity["n_params"] for c in task.cells}:
        short, long_ = (next(c for c in task.cells if c.fidelity == {"n_params": n, "rl_updates": u})
                        for u in (40, 160))
        assert long_.optimum > short.optimum
    assert all(c["best"]["accuracy"] > c["base_accuracy"] + 0.1 for c in meta["cells"].values())
    rows = nano.runs(nano.GRPO2_ID)
    assert len(rows) == meta["n_rows"] == task.n_rows + 8 * 4 * 2  # 8 repeat configs x 4 sizes x 2 evals
    assert len(meta["base_policies"]) == 4 and meta["compute"]["total_cpu_s"] > meta["compute"]["grpo_train_cpu_s"]


def configs_as_dicts(task: gym.TabularTask) -> list[dict[str, float]]:
    return [c for cell in task.cells for c in cell.configs]


def test_grpo_v2_informativeness_figures_are_what_the_table_gives() -> None:
    info = nano.informativeness(nano.GRPO2_ID)
    top = info["largest"]
    task = gym.make(nano.GRPO2_ID)
    cell = task.cell(top["cell"])
    assert top["cell"] == max(task.cells, key=lambda c: c.cost).name and top["best"] == cell.optimum
    assert top["p90"] == pytest.approx(cell.p90) and top["noise_pairs"] == 8 * 4 * 2
    # the bar of the v2 issue: at the largest fidelity, p90 - best is at least 10x the run-to-run noise
    assert top["p90_gap_over_noise"] >= 10
    # no parameter's optimum sits at the edge of its range in every cell
    assert not any(e["every_cell"] for e in info["edges"].values())
    # one neighbour per fidelity axis; the figures are read from the table
    assert [n["axis"] for n in info["neighbours"]] == ["n_params", "rl_updates"]
    for nb in info["neighbours"]:
        best = task.cell(nb["cell"]).configs[task.cell(nb["cell"]).best_index]
        assert nb["best_config"] == best
        assert nb["its_value_in_largest"] == cell.values[cell.find(best)]



def test_pretrain_v2_table_matches_its_design() -> None:
    task = gym.make(nano.PRETRAIN2_ID)
    meta = nano.metadata(nano.PRETRAIN2_ID)
    assert task.direction == "minimize" and task.fidelity_axes == ("n_params", "n_tokens")
    assert len({c.fidelity["n_params"] for c in task.cells}) == 4
    assert sorted({c.fidelity["n_tokens"] for c in task.cells}) == [65536, 262144]
    configs = {tuple(sorted(c.items())) for c in task.cells[0].configs}
    for cell in task.cells:
        assert len(cell) == 24
        assert {tuple(sorted(c.items())) for c in cell.configs} == configs  # one design shared by every cell
        assert cell.space.role_of("warmup_frac") == "warmup" and cell.space.role_of("batch_size") == "batch_size"
        assert np.all(cell.values <= math.log(256) + 1e-9) and np.all(cell.costs > 0)
    # the batch sizes bracket the best one: it is not the smallest of the design in every cell
    smallest = min(c["batch_size"] for c in task.cells[0].configs)
    assert any(c.configs[c.best_index]["batch_size"] > smallest for c in task.cells)
    # the best learning rate falls with model size at each budget
    for d in (65536, 262144):
        cells = sorted((c for c in task.cells if c.fidelity["n_tokens"] == d), key=lambda c: c.fidelity["n_params"])
        lrs = [c.configs[c.best_index]["lr"] for c in cells]
        assert lrs[-1] < lrs[0]
    assert len(nano.runs(nano.PRETRAIN2_ID)) == meta["n_runs"] > task.n_rows


def test_pretrain_v2_informativeness_figures_are_what_the_table_gives() -> None:
    info = nano.informativeness(nano.PRETRAIN2_ID)
    task = gym.make(nano.PRETRAIN2_ID)
    cell = task.cell(info["largest"]["cell"])
    assert info["largest"]["best"] == cell.optimum and info["largest"]["p90"] == pytest.approx(cell.p90)
    assert info["largest"]["p90_gap_over_noise"] >= 10
    assert not any(e["every_cell"] for e in info["edges"].values())
    assert [n["axis"] for n in info["neighbours"]] == ["n_params", "n_tokens"]
