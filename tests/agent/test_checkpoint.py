"""Saving and loading agent checkpoints: sha256 manifest, clear errors, and ``load_agent``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from autollm_sampler.agent import DEFAULT_CHECKPOINT, ClassicalAgent, load_agent
from autollm_sampler.agent._model import AgentModelConfig, TransformerAgent
from autollm_sampler.exceptions import CheckpointError
from autollm_sampler.history import History, Trial
from autollm_sampler.space import SearchSpace

TINY = AgentModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
SPACE = SearchSpace.from_dict({"params": {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "batch_size": {"type": "categorical", "choices": [64, 128, 256, 512]},
}})
TARGET = {"n_params": 1e9, "n_tokens": 2e10}
FILES = ("model.safetensors", "config.json", "manifest.json")


def _history() -> History:
    rng = np.random.default_rng(0)
    h = History()
    for k in range(3):
        fid = {"n_params": 1e8 * 2**k, "n_tokens": 2e9 * 2**k}
        for _ in range(15):
            p = SPACE.sample(rng)
            h.add(Trial(id=h.next_id(), params=p, fidelity=fid, value=2.0 + float(np.sum((SPACE.to_unit(p) - 0.4) ** 2))))
    return h


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[TransformerAgent, Path]:
    agent = TransformerAgent.from_config(TINY, seed=3)
    path = agent.save(tmp_path_factory.mktemp("ckpt") / "agent", extra_meta={"stage": "test"})
    return agent, path


@pytest.fixture
def copy(saved: tuple[TransformerAgent, Path], tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(saved[1], dst)
    return dst


def test_save_writes_the_three_files_and_a_manifest(saved: tuple[TransformerAgent, Path]) -> None:
    _, path = saved
    assert sorted(p.name for p in path.iterdir()) == sorted(FILES)
    manifest = json.loads((path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.safetensors", "config.json"}
    assert all(len(d) == 64 for d in manifest["files"].values())
    assert manifest["meta"]["stage"] == "test"
    assert json.loads((path / "config.json").read_text())["model"]["hidden_size"] == 32


def test_round_trip_gives_identical_scores_and_proposals(saved: tuple[TransformerAgent, Path]) -> None:
    agent, path = saved
    loaded = load_agent(path)
    assert isinstance(loaded, TransformerAgent)
    assert loaded.cfg == agent.cfg and loaded.meta["stage"] == "test"
    h = _history()
    units = np.random.default_rng(1).random((50, SPACE.width))
    again = load_agent(path)
    assert isinstance(again, TransformerAgent) and loaded.backend == again.backend == "numpy"
    assert agent.backend == "torch"
    _, s1, v1, d1 = agent.score(h, SPACE, TARGET, units)
    _, s2, v2, d2 = loaded.score(h, SPACE, TARGET, units)
    _, s3, v3, d3 = again.score(h, SPACE, TARGET, units)
    # two loads: bit-identical; the numpy forward pass against torch's: float32 rounding only
    for x, y in ((s2, s3), (v2, v3), (d2, d3)):
        np.testing.assert_array_equal(x, y)
    for x, y in ((s1, s2), (v1, v2), (d1, d2)):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    a = [p.to_dict() for p in agent.propose(h, SPACE, TARGET, n=3, seed=0)]
    b = [p.to_dict() for p in loaded.propose(h, SPACE, TARGET, n=3, seed=0)]
    assert [p["params"] for p in a] == [p["params"] for p in b]
    assert [p.to_dict() for p in again.propose(h, SPACE, TARGET, n=3, seed=0)] == b
    assert {k: v.tolist() for k, v in agent.net.state_dict().items()} == {
        k: v.tolist() for k, v in loaded.net.state_dict().items()
    }


def test_a_corrupted_model_file_is_refused(copy: Path) -> None:
    blob = bytearray((copy / "model.safetensors").read_bytes())
    blob[len(blob) // 2] ^= 0xFF  # one flipped byte in the weights
    (copy / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*corrupt"):
        load_agent(copy)


def test_a_manifest_sha_mismatch_names_the_file(copy: Path) -> None:
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"]["config.json"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"config\.json.*manifest says 000000000000"):
        TransformerAgent.load(copy)
    # verification can be switched off explicitly; the files themselves are fine
    assert isinstance(TransformerAgent.load(copy, verify=False), TransformerAgent)


def test_an_edited_config_is_refused(copy: Path) -> None:
    conf = json.loads((copy / "config.json").read_text())
    conf["model"]["hidden_size"] = 64
    (copy / "config.json").write_text(json.dumps(conf))
    with pytest.raises(CheckpointError, match=r"config\.json"):
        load_agent(copy)


@pytest.mark.parametrize("missing", FILES)
def test_missing_files_say_how_to_fix_it(copy: Path, missing: str) -> None:
    (copy / missing).unlink()
    with pytest.raises(CheckpointError) as err:
        load_agent(copy)
    msg = str(err.value)
    assert missing in msg and str(copy) in msg
    assert "python -m training.pipeline" in msg


def test_a_missing_directory_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="lacks model.safetensors"):
        load_agent(tmp_path / "nowhere")


def test_load_agent_classical() -> None:
    agent = load_agent("classical")
    assert isinstance(agent, ClassicalAgent)
    h = _history()
    props = agent.propose(h, SPACE, TARGET, n=2, seed=0)
    assert len(props) == 2 and all(p.source == "classical" for p in props)
    for p in props:
        SPACE.validate_params(p.params)


@pytest.mark.skipif(
    not (DEFAULT_CHECKPOINT / "manifest.json").is_file(),
    reason=f"no shipped checkpoint at {DEFAULT_CHECKPOINT} yet (it is produced by training/configs/default.yaml)",
)
def test_load_agent_default_proposes_valid_configurations() -> None:
    agent = load_agent("default")
    assert isinstance(agent, TransformerAgent)
    size = sum(f.stat().st_size for f in DEFAULT_CHECKPOINT.iterdir() if f.is_file())
    assert size < 50e6, f"the shipped checkpoint is {size / 1e6:.1f} MB"
    h = _history()
    props = agent.propose(h, SPACE, TARGET, n=3, seed=0)
    assert len(props) == 3
    for p in props:
        assert p.source == "model"
        assert SPACE.validate_params(p.params) == p.params
        assert p.rationale


def test_an_unreadable_manifest_is_a_checkpoint_error(copy: Path) -> None:
    (copy / "manifest.json").write_text('{"files": {"model.safetensors": ')
    with pytest.raises(CheckpointError, match=r"manifest\.json is not valid JSON"):
        load_agent(copy)
