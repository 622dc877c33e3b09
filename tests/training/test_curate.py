"""Stage 1 (curation): the train/test split is respected, augmentations and synthetic tasks stay valid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autollm_sampler import gym
from autollm_sampler.gym import TabularTask
from training.config import CurateConfig, PipelineConfig
from training.curate import ExperimentSpec, curate, materialize
from training.synthetic import FAMILIES, make_synthetic

REAL_TASKS = ["steplaw-dense-v1", "steplaw-moe-v1", "admire-ift-v1", "regmix-v1", "hwgpt-arch-v1"]


def _cfg(real: list[str], *, augment: int = 3, synthetic: int = 0, raw_dir: Path | None = None) -> PipelineConfig:
    return PipelineConfig(name="test-curate", seed=0, raw_dir=str(raw_dir) if raw_dir else None,
                          curate=CurateConfig(real_tasks=real, augment_per_experiment=augment, synthetic_tasks=synthetic))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def assert_valid_task(task: TabularTask) -> None:
    assert len(task.cells) >= 2
    names = [c.name for c in task.cells]
    assert len(set(names)) == len(names)
    axes = set(task.cells[0].fidelity)
    for cell in task.cells:
        assert set(cell.fidelity) == axes and all(v > 0 for v in cell.fidelity.values())
        assert len(cell) >= 8
        assert np.all(np.isfinite(cell.values)) and np.all(cell.costs > 0)
        assert cell.space.direction == task.cells[0].space.direction
        keys = set()
        for cfg in cell.configs:
            assert cell.space.validate_params(cfg) is not None
            keys.add(cell.space.config_key(cfg))
        assert len(keys) == len(cell), f"cell {cell.name} has duplicate configurations"
        assert cell.unit.shape == (len(cell), cell.space.width)
        assert np.all((cell.unit >= 0) & (cell.unit <= 1))


# ---------------------------------------------------------------------------------------------- the split
@pytest.fixture(scope="module")
def real_specs(raw_dir: Path) -> list[ExperimentSpec]:
    return curate(_cfg(REAL_TASKS, raw_dir=raw_dir))


def test_no_curated_experiment_targets_a_test_cell(real_specs: list[ExperimentSpec], raw_dir: Path) -> None:
    assert {s.source for s in real_specs} == set(REAL_TASKS), "every real task must contribute experiments"
    for task_id in REAL_TASKS:
        task = gym.make(task_id, raw_dir=raw_dir)
        specs = [s for s in real_specs if s.source == task_id]
        train_targets = {e.target for e in gym.experiments(task, "train")}
        test_targets = {e.target for e in gym.experiments(task, "test")}
        assert test_targets and train_targets
        assert {s.target for s in specs} == train_targets  # every training target is used, nothing else
        for s in specs:
            assert not gym.is_test_target(task, s.target), f"{task_id}: test target {s.target} used in training"
            assert s.target not in test_targets
            # stricter than BENCHMARK.md: a training experiment never reads a test table, even as history
            assert not any(gym.is_test_target(task, h) for h in s.history_cells)
            assert all(task.cell(h).cost < task.cell(s.target).cost for h in s.history_cells)
        assert len(specs) == 3 * len(train_targets)


def test_curation_is_deterministic(real_specs: list[ExperimentSpec], raw_dir: Path) -> None:
    again = curate(_cfg(REAL_TASKS, raw_dir=raw_dir))
    assert [s.to_dict() for s in again] == [s.to_dict() for s in real_specs]
    assert [ExperimentSpec.from_dict(s.to_dict()) for s in real_specs] == real_specs


def test_curate_refuses_a_test_target_that_slips_into_the_training_split(
    raw_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = gym.experiments
    monkeypatch.setattr(gym, "experiments", lambda task, split="test": real(task, "test"))
    with pytest.raises(AssertionError, match="is a test target"):
        curate(_cfg(["steplaw-dense-v1"], augment=1, raw_dir=raw_dir))


def test_no_training_target_is_a_test_size_of_another_version_of_its_task() -> None:
    """v1 and v2 of the nano tasks share model sizes: v2 never trains at v1's held-out size, nor v1 at v2's."""
    nano = ["nanolm-pretrain-v1", "nanolm-pretrain-v2", "nanogrpo-v1", "nanogrpo-v2"]
    specs = curate(_cfg(nano, augment=1))
    assert {s.source for s in specs} == set(nano)
    for task_id in nano:
        task = gym.make(task_id)
        for sibling in (t for t in nano if t != task_id and t.rsplit("-v", 1)[0] == task_id.rsplit("-v", 1)[0]):
            other = gym.make(sibling)
            held = {other.cell(e.target).fidelity["n_params"] for e in gym.experiments(other, "test")}
            for s in (s for s in specs if s.source == task_id):
                n = task.cell(s.target).fidelity["n_params"]
                assert all(abs(n - h) > 0.05 * h for h in held), f"{task_id}:{s.target} is {sibling}'s test size"
    # what the rule leaves out, by name: the v2 sizes next to v1's held-out ones, and nothing else
    v2 = {s.target for s in specs if s.source == "nanolm-pretrain-v2"}
    assert v2 == {"N=55.5K,D=65.5K", "N=13.9K,D=262K", "N=55.5K,D=262K"}
    assert {s.target for s in specs if s.source == "nanogrpo-v2"} == {"N=55.5K,U=40", "N=26.8K,U=160", "N=55.5K,U=160"}
    assert {s.target for s in specs if s.source == "nanolm-pretrain-v1"} == {
        e.target for e in gym.experiments(gym.make("nanolm-pretrain-v1"), "train")}


def test_unknown_task_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    specs = curate(_cfg(["no-such-task-v1"], synthetic=2))
    assert len(specs) == 2 and all(s.source.startswith("synthetic:") for s in specs)
    assert "no-such-task-v1 is not registered" in caplog.text


# ---------------------------------------------------------------------------------------------- augmentation
@pytest.mark.parametrize("source", ["synthetic:lr_bs:3", "synthetic:mixture:5", "steplaw-dense-v1"])
def test_augmentations_keep_tasks_valid(source: str, raw_dir: Path) -> None:
    if source.startswith("synthetic:"):
        _, fam, seed = source.split(":")
        original = make_synthetic(fam, int(seed))
    else:
        original = gym.make(source, raw_dir=raw_dir)
    exp = max(gym.experiments(original, "train"), key=lambda e: len(e.history_cells))
    target = original.cell(exp.target)
    before = target.values.copy()
    hist = exp.history_cells[-2:] if len(exp.history_cells) > 1 else exp.history_cells
    spec = ExperimentSpec(source, exp.target, tuple(hist), "sparse", 9, 0.4, True, 123)
    task, env = materialize(spec, str(raw_dir))
    assert_valid_task(task)
    assert task.id == original.id
    if not source.startswith("synthetic:"):  # the benchmark split still applies to the augmented copy
        assert not gym.is_test_target(task, exp.target)
    assert [c.name for c in task.cells] == [c.name for c in original.cells if c.name in {exp.target, *hist}]
    aug = task.cell(exp.target)
    # a random sub-grid of the target table: 60% of the rows (at least 8), all of them real rows
    assert len(aug) == max(8, int(len(target) * 0.6)) < len(target)
    rows = [target.configs.index(c) for c in aug.configs]
    assert rows == sorted(rows) and len(set(rows)) == len(rows)
    # perturbed outcomes: other units and scale, ranks (nearly) preserved, direction kept
    assert not np.allclose(aug.values, target.values[rows])
    assert _spearman(aug.values, target.values[rows]) > 0.95
    assert aug.space.direction == target.space.direction
    np.testing.assert_array_equal(target.values, before)  # the cached original is untouched
    # a sparse history: sparse_n runs per history cell
    obs, info = env.reset(seed=0)
    counts = {c: len([t for t in obs.history.trials if t.attrs["cell"] == c]) for c in hist}
    assert all(n == min(9, len(task.cell(c))) for c, n in counts.items())
    obs, reward, *_ = env.step(obs.candidates[0])
    assert 0.0 <= reward <= 1.0


def test_plain_spec_is_the_unaugmented_task(raw_dir: Path) -> None:
    task = gym.make("steplaw-dense-v1", raw_dir=raw_dir)
    exp = gym.experiments(task, "train")[3]
    spec = ExperimentSpec("steplaw-dense-v1", exp.target, exp.history_cells, "full", 20, 0.0, False, 0)
    got, env = materialize(spec, str(raw_dir))
    assert got is task
    obs, _ = env.reset(seed=0)
    assert len(obs.history) == sum(len(task.cell(h)) for h in exp.history_cells)


def test_augmented_copies_differ_in_their_settings(real_specs: list[ExperimentSpec]) -> None:
    dense = [s for s in real_specs if s.source == "steplaw-dense-v1"]
    groups = [dense[i : i + 3] for i in range(0, len(dense), 3)]  # augment_per_experiment = 3
    for plain, *copies in groups:
        # the first copy of every experiment is the plain one; the others are augmented versions of it
        assert (plain.history, plain.perturb, plain.drop_target_frac) == ("full", False, 0.0)
        for c in copies:
            assert c.target == plain.target
            assert set(c.history_cells) <= set(plain.history_cells)
            assert bool(c.history_cells) == bool(plain.history_cells)  # a subset, never emptied
            assert 8 <= c.sparse_n < 40 and 0.0 <= c.drop_target_frac <= 0.5
    copies = [c for g in groups for c in g[1:]]
    assert any(c.perturb for c in copies) and any(c.drop_target_frac > 0 for c in copies)
    assert any(c.history == "sparse" for c in copies) and any(c.history == "full" for c in copies)
    assert len({c.seed for c in dense}) == len(dense)


# ---------------------------------------------------------------------------------------------- synthetic
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("seed", [0, 1, 2, 17, 123456])
def test_synthetic_families_build_valid_tasks(family: str, seed: int) -> None:
    task = make_synthetic(family, seed)
    assert_valid_task(task)
    assert task.id == f"synthetic-{family}-{seed}"
    # cost grows with fidelity, so the largest cell is the (held-out) target and the rest are history
    largest = max(task.cells, key=lambda c: c.cost)
    assert gym.is_test_target(task, largest)
    assert gym.experiments(task, "test")[0].target == largest.name
    assert len(task.cheaper_cells(largest.name)) == len(task.cells) - 1
    if family == "mixture":
        assert all(c.space.width >= 5 for c in task.cells)
    if family == "lr_bs":
        assert all(set(c.space.names) == {"lr", "batch_size"} for c in task.cells)
        assert all(set(c.fidelity) == {"n_params", "n_tokens"} for c in task.cells)
    if family == "drift":  # sparse sweeps on a two-axis ladder, an lr wall, the optimum moving
        assert all(set(c.fidelity) == {"n_params", "n_tokens"} for c in task.cells)
        assert all(c.space.params["lr"].role == "lr" and 1 <= len(c) <= 60 for c in task.cells)
        assert any(np.any(c.values == 7.0) for c in task.cells) and all(np.any(c.values < 7.0) for c in task.cells)
        best = [c.unit[int(np.argmin(c.values))] for c in sorted(task.cells, key=lambda c: c.cost)]
        assert not np.allclose(best[0], best[-1])


@pytest.mark.parametrize("family", FAMILIES)
def test_synthetic_tasks_are_deterministic_in_the_seed(family: str) -> None:
    a, b, c = make_synthetic(family, 4), make_synthetic(family, 4), make_synthetic(family, 5)
    assert [x.name for x in a.cells] == [x.name for x in b.cells]
    for x, y in zip(a.cells, b.cells, strict=True):
        assert x.configs == y.configs
        np.testing.assert_array_equal(x.values, y.values)
    assert [x.name for x in a.cells] != [x.name for x in c.cells] or not np.array_equal(a.cells[0].values, c.cells[0].values)


def test_unknown_synthetic_family() -> None:
    with pytest.raises(ValueError, match="unknown synthetic family 'spirals'"):
        make_synthetic("spirals", 0)


def test_synthetic_curation_without_raw_data() -> None:
    specs = curate(_cfg([], synthetic=6))
    assert [s.source.split(":")[1] for s in specs] == (list(FAMILIES) * 2)[:6]
    for s in specs[:3]:
        task, env = materialize(s)
        assert s.target == max(task.cells, key=lambda c: c.cost).name
        obs, _ = env.reset(seed=1)
        assert len(obs.history) > 0 and obs.target.name == s.target
