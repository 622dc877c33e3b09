"""Every registered task builds from the real raw data with the counts of gym_data/README.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autollm_sampler import gym
from autollm_sampler.exceptions import ConfigError, RawDataError, UnknownTaskError
from autollm_sampler.gym._checker import check_task
from autollm_sampler.gym.recipes import admire, hwgpt, regmix
from autollm_sampler.space import SimplexParam

EXPECTED = {
    "steplaw-dense-v1": (1911, 17),
    "steplaw-moe-v1": (708, 16),
    "admire-ift-v1": (460, 3),
    "regmix-v1": (1088, 3),
    "hwgpt-arch-v1": (6000, 3),
    "nanolm-pretrain-v1": (240, 6),  # project-made, shipped in the package (tests/gym/test_nano_tasks.py)
    "nanogrpo-v1": (162, 3),
    "nanogrpo-v2": (256, 8),
    "nanolm-pretrain-v2": (192, 8),
}


def test_every_task_is_registered() -> None:
    assert sorted(gym.list_ids()) == sorted(EXPECTED)
    for tid, spec in gym.registry().items():
        assert (spec.expected_rows, spec.expected_cells) == EXPECTED[tid]


@pytest.mark.parametrize("tid", sorted(EXPECTED))
def test_task_builds_with_expected_counts_and_passes_check_task(tid: str, raw_dir: Path) -> None:
    task = gym.make(tid)
    assert (task.n_rows, len(task.cells)) == EXPECTED[tid]
    assert task.metadata.citation and task.metadata.licence and task.metadata.schema_version == gym.SCHEMA_VERSION
    check_task(task)
    assert gym.make(tid) is task  # in-memory cache


def test_unknown_id_suggests_the_closest() -> None:
    with pytest.raises(UnknownTaskError, match="Did you mean 'regmix-v1'"):
        gym.make("regmix-v2")
    with pytest.raises(UnknownTaskError, match="Did you mean 'steplaw-dense-v1'"):
        gym.make("steplaw-dense")


def test_admire_cells_simplex_and_cost(raw_dir: Path) -> None:
    task = gym.make("admire-ift-v1")
    assert [(c.name, len(c), c.fidelity["model_size"]) for c in task.cells] == [
        ("0.5B", 256, 0.5e9), ("3B", 128, 3e9), ("7B", 76, 7e9)]
    assert task.direction == "maximize" and task.metadata.objective == "metric_avg_id+ood"
    for cell in task.cells:
        p = cell.space.params["mixture"]
        assert list(cell.space.params) == ["mixture"] and isinstance(p, SimplexParam) and p.width == 19
        assert all(abs(sum(c["mixture"].values()) - 1.0) < 1e-9 for c in cell.configs)
    means = [c.cost for c in task.cells]
    assert means[0] == pytest.approx(95, rel=0.05) and means[1] == pytest.approx(259, rel=0.05)
    assert means[2] == pytest.approx(537, rel=0.05)
    # the optimum is the largest value (maximisation)
    seven = task.cell("7B")
    assert seven.optimum == seven.values.max() and seven.regret(seven.values.max()) == 0.0


def test_admire_objective_is_selectable(raw_dir: Path) -> None:
    task = admire.build(objective="metric_gsm8k::tulu")
    assert task.metadata.objective == "metric_gsm8k::tulu"
    assert not np.allclose(task.cell("7B").values, gym.make("admire-ift-v1").cell("7B").values)
    assert gym.make("admire-ift-v1", objective="metric_avg_ood").metadata.objective == "metric_avg_ood"
    with pytest.raises(ConfigError, match=r"unknown admire-ift-v1 objective 'train_time'"):
        admire.build(objective="train_time")
    with pytest.raises(ConfigError, match="did you mean 'metric_gsm8k::tulu'"):
        admire.build(objective="gsm8k")


def test_admire_model_size_parsing() -> None:
    assert admire.model_size("Qwen2.5-0.5B") == 0.5e9
    assert admire.model_size("Qwen2.5-7B") == 7e9
    with pytest.raises(ValueError, match="'Qwen2.5-large'"):
        admire.model_size("Qwen2.5-large")


def test_regmix_cells_budgets_and_cost(raw_dir: Path) -> None:
    task = gym.make("regmix-v1")
    got = [(c.name, len(c), c.fidelity["n_params"], c.fidelity["n_tokens"]) for c in task.cells]
    assert got == [("1M", 768, 1e6, 1e9), ("60M", 256, 6e7, 1e9), ("1B", 64, 1e9, 25e9)]
    for c in task.cells:
        assert np.allclose(c.costs, 6.0 * c.fidelity["n_params"] * c.fidelity["n_tokens"])
        p = c.space.params["mixture"]
        assert isinstance(p, SimplexParam) and p.width == 17 and p.components[0].startswith("train_the_pile_")
    # the 256 test mixtures of the 1M cell are exactly the 60M cell's mixtures
    one_m = {task.cell("1M").space.config_key(c) for c in task.cell("1M").configs}
    sixty = {task.cell("60M").space.config_key(c) for c in task.cell("60M").configs}
    assert sixty <= one_m and len(one_m - sixty) == 512
    # losses fall with scale: the best 1B loss is below the best 60M loss, below the best 1M loss
    assert task.cell("1B").optimum < task.cell("60M").optimum < task.cell("1M").optimum


def test_regmix_objective_is_selectable(raw_dir: Path) -> None:
    assert regmix.build(objective="metric/the_pile_github_val_loss").metadata.objective.endswith("github_val_loss")
    with pytest.raises(ConfigError, match="did you mean 'metric/the_pile_pile_cc_val_loss'"):
        regmix.build(objective="pile_cc")


def test_regmix_join_drops_mixtures_without_a_loss_row() -> None:
    mixes = [{"index": str(i), "train_the_pile_arxiv": "1.0"} for i in range(4)]
    losses = [{"index": i, "metric/x_val_loss": "2.0"} for i in ("0", "1", "3")]
    rows, dropped = regmix.join_on_index(mixes, losses)
    assert [r["index"] for r in rows] == ["0", "1", "3"] and dropped == ["2"]
    assert rows[0]["metric/x_val_loss"] == "2.0"
    with pytest.raises(ValueError, match="duplicate index '1'"):
        regmix.join_on_index(mixes, [*losses, {"index": "1", "metric/x_val_loss": "3.0"}])


def test_a_modified_raw_file_is_refused_before_parsing(raw_dir: Path, tmp_path: Path) -> None:
    bad = _copy_source(raw_dir, tmp_path, "regmix")
    path = bad / "regmix" / "test_pile_loss_1B.csv"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:-1]))  # drop one loss row
    with pytest.raises(RawDataError, match="test_pile_loss_1B.csv.*does not match its pinned sha256"):
        regmix.build(raw_dir=bad)


def test_hwgpt_pool_ranges_and_inactive_layers(raw_dir: Path) -> None:
    task = gym.make("hwgpt-arch-v1")
    assert [c.name for c in task.cells] == ["S", "M", "L"]
    readme_ranges = {"S": (22, 42), "M": (21, 36), "L": (18, 29)}
    for cell in task.cells:
        space = hwgpt.SPACES[cell.name]
        lo, hi = readme_ranges[cell.name]
        assert lo - 1 <= cell.values.min() and cell.values.max() <= hi + 1, (cell.name, cell.values.min(), cell.values.max())
        assert len(cell.space.params) == 3 + 2 * space.max_layers
        assert tuple(cell.space.params["embed_dim"].choices) == space.embed_dims  # type: ignore[union-attr]
        for cfg in cell.configs[:200]:
            for i in range(space.max_layers):
                active = i < cfg["n_layers"]
                assert (cfg[f"mlp_ratio_{i}"] in hwgpt.MLP_RATIOS) == active
                assert (cfg[f"heads_{i}"] in space.heads) == active
                if not active:
                    assert cfg[f"mlp_ratio_{i}"] == 0 and cfg[f"heads_{i}"] == 0
        assert np.allclose(cell.costs, [hwgpt.param_count(c) for c in cell.configs])
    # the fidelity is the parameter count of each space's largest architecture, increasing S < M < L
    sizes = [c.fidelity["model_size"] for c in task.cells]
    assert sizes == sorted(sizes)
    # embed dim dominates the surrogate: the widest models are the best on average in every space
    for cell in task.cells:
        wide = cell.values[[c["embed_dim"] == max(hwgpt.SPACES[cell.name].embed_dims) for c in cell.configs]]
        narrow = cell.values[[c["embed_dim"] == min(hwgpt.SPACES[cell.name].embed_dims) for c in cell.configs]]
        assert wide.mean() < narrow.mean()


def test_hwgpt_pool_is_seeded_and_the_encoding_matches_the_readme() -> None:
    s = hwgpt.SPACES["S"]
    a, b = hwgpt.candidate_pool(s, 50, seed=1), hwgpt.candidate_pool(s, 50, seed=1)
    assert a == b and a != hwgpt.candidate_pool(s, 50, seed=2)
    assert len({tuple(x.values()) for x in hwgpt.candidate_pool(s, 500, seed=3)}) == 500
    arch = {"embed_dim": 384, "n_layers": 10, "bias": False,
            **{f"mlp_ratio_{i}": (3 if i < 10 else 0) for i in range(12)},
            **{f"heads_{i}": (12 if i < 10 else 0) for i in range(12)}}
    x = hwgpt.encode(s, arch)
    assert x.shape == (80,) and x.sum() == 2 + 10 + 10 + 1
    assert x[1] == 1 and x[3] == 1                        # embed 384 -> index 1; 10 layers -> index 0
    assert x[6 + 1] == 1 and x[6 + 3 * 9 + 1] == 1        # ratio 3 of layers 0 and 9
    assert x[6 + 3 * 10 : 6 + 36].sum() == 0              # layers 10, 11 inactive
    assert x[42 + 2] == 1 and x[42 + 3 * 9 + 2] == 1      # 12 heads (index 2) in layers 0 and 9
    assert x[42 + 3 * 10 : 78].sum() == 0
    assert x[78:].tolist() == [0, 1]                      # bias False: True comes first


def test_hwgpt_param_count_matches_gpt2_small() -> None:
    # GPT-2 small: 768 wide, 12 layers of 12 heads, MLP ratio 4, biases: 124M parameters
    arch = {"embed_dim": 768, "n_layers": 12, "bias": True,
            **{f"mlp_ratio_{i}": 4 for i in range(12)}, **{f"heads_{i}": 12 for i in range(12)}}
    assert hwgpt.param_count(arch) == pytest.approx(124.4e6, rel=0.01)


def test_hwgpt_refuses_a_pickle_that_runs_code(raw_dir: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            import os

            return (os.mkdir, (str(marker),))

    path = tmp_path / "perplexity_s.pt"
    torch.save({"fc1.weight": Evil()}, path)
    with pytest.raises(RawDataError, match="not a loadable torch state dict"):
        hwgpt.load_surrogate(path)
    assert not marker.exists()


def test_hwgpt_rejects_a_state_dict_of_the_wrong_shape(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "p.pt"
    torch.save({f"fc{i}.{k}": torch.zeros(3, 3) if k == "weight" else torch.zeros(3)
                for i in range(1, 6) for k in ("weight", "bias")}, path)
    with pytest.raises(RawDataError, match="fc1 takes 3 inputs, expected 80"):
        hwgpt.load_surrogate(path, input_width=80)
    torch.save({"fc1.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(RawDataError, match="lacks the tensors fc1.weight / fc1.bias"):
        hwgpt.load_surrogate(path)


def _copy_source(raw_dir: Path, tmp_path: Path, source: str) -> Path:
    root = tmp_path / "raw"
    (root / source).mkdir(parents=True)
    for f in (raw_dir / source).iterdir():
        (root / source / f.name).write_bytes(f.read_bytes())
    return root
