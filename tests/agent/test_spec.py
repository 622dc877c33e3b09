"""The agent spec in config.json: recorded at save, checked at load, and the shipped checkpoint pinned."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autollm_sampler.agent import DEFAULT_CHECKPOINT, load_agent
from autollm_sampler.agent._adapt import ADAPT_SPEC
from autollm_sampler.agent._features import CHANNELS, N_CH, N_SCAL, SCALARS, encode, feature_spec
from autollm_sampler.agent._model import AgentModelConfig, TransformerAgent, agent_spec, restamp
from autollm_sampler.exceptions import CheckpointError
from autollm_sampler.history import History, Trial
from autollm_sampler.space import ROLES, SearchSpace
from training.restamp import main as restamp_main

SHIPPED = DEFAULT_CHECKPOINT.parent
needs_shipped = pytest.mark.skipif(not (DEFAULT_CHECKPOINT / "model.safetensors").exists(), reason="no shipped checkpoint")


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    agent = TransformerAgent.from_config(AgentModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=16), seed=0)
    return agent.save(tmp_path / "agent")


def _edit(path: Path, fn) -> None:  # type: ignore[no-untyped-def]
    """Change config.json and keep the manifest's checksum right (a deliberate edit, not corruption)."""
    from autollm_sampler._io import sha256_of

    conf = json.loads((path / "config.json").read_text())
    fn(conf)
    (path / "config.json").write_text(json.dumps(conf))
    man = json.loads((path / "manifest.json").read_text())
    man["files"]["config.json"] = sha256_of(path / "config.json")
    (path / "manifest.json").write_text(json.dumps(man))


def test_the_spec_names_every_slot_once() -> None:
    spec = feature_spec()
    assert len(CHANNELS) == N_CH and len(SCALARS) == N_SCAL
    assert sorted(spec["channels"].values()) == list(range(N_CH))
    assert sorted(spec["scalars"].values()) == list(range(N_SCAL))
    assert spec["roles"] == {r: i for i, r in enumerate(ROLES)}
    assert agent_spec()["adapt"] == ADAPT_SPEC
    json.dumps(agent_spec())  # JSON-ready


def test_named_slots_hold_what_their_names_say() -> None:
    space = SearchSpace.from_dict({"params": {"lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True}}})
    target = {"n_params": 1e9}
    h = History()
    for i, v in enumerate((2.0, 2.1, 2.3)):
        h.add(Trial(id=f"c{i}", params={"lr": 10 ** (-4 + i * 0.5)}, fidelity={"n_params": 1e8}, value=v))
    h.add(Trial(id="t0", params={"lr": 1e-3}, fidelity=target, state="failed"))
    enc = encode(h, space, target, np.array([[0.25], [space.to_unit({"lr": 1e-3})[0]]]))
    s = feature_spec()["scalars"]
    failed_row = enc.ctx_scal[:, s["failed"]] == 1
    assert failed_row.sum() == 1 and enc.ctx_scal[failed_row, s["at_target"]][0] == 1
    assert np.all(enc.ctx_scal[:, s["is_query"]] == 0) and np.all(enc.q_scal[:, s["is_query"]] == 1)
    assert enc.ctx_scal[~failed_row, s["log_cost_ratio"]] == pytest.approx(np.log(0.1) / 5)
    assert enc.q_scal[:, s["on_tried_point"]].tolist() == [0.0, 1.0]
    assert np.allclose(enc.q_dims[:, 0, feature_spec()["channels"]["unit"]], [0.25, space.to_unit({"lr": 1e-3})[0]])


def test_save_records_the_spec_and_load_checks_it(ckpt: Path) -> None:
    conf = json.loads((ckpt / "config.json").read_text())
    assert conf["format_version"] == 2 and conf["spec"] == json.loads(json.dumps(agent_spec()))
    TransformerAgent.load(ckpt)


def test_a_different_feature_constant_is_refused_and_cannot_be_restamped(ckpt: Path) -> None:
    _edit(ckpt, lambda c: c["spec"]["features"]["constants"].__setitem__("ridge_penalty", 0.1))
    with pytest.raises(CheckpointError, match=r"features\.constants\.ridge_penalty: 0\.1 in the checkpoint, 0\.05.*retrain"):
        load_agent(ckpt)
    with pytest.raises(CheckpointError, match="features differ"):
        restamp(ckpt)


def test_other_adaptation_constants_are_refused_until_restamped(ckpt: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _edit(ckpt, lambda c: c["spec"]["adapt"].__setitem__("fail_radius", 0.5))
    with pytest.raises(CheckpointError, match=r"adapt\.fail_radius: 0\.5 .*training\.restamp"):
        TransformerAgent.load(ckpt)
    assert restamp_main([str(ckpt)]) == 0
    assert "adapt.fail_radius" in capsys.readouterr().out
    TransformerAgent.load(ckpt)  # verified: the manifest was updated too


def test_a_format_1_checkpoint_says_what_to_do(ckpt: Path) -> None:
    def old(c: dict) -> None:  # type: ignore[type-arg]
        c["format_version"] = 1
        del c["spec"]

    _edit(ckpt, old)
    with pytest.raises(CheckpointError, match="format 1 has no agent spec.*training.restamp"):
        TransformerAgent.load(ckpt)
    assert restamp(ckpt) == ["spec: recorded for the first time"]
    TransformerAgent.load(ckpt)


def test_a_missing_spec_is_refused(ckpt: Path) -> None:
    _edit(ckpt, lambda c: c.pop("spec"))
    with pytest.raises(CheckpointError, match=r'no "spec" object'):
        TransformerAgent.load(ckpt)


@needs_shipped
@pytest.mark.parametrize("name", ["default", "distilled"])
def test_the_shipped_checkpoints_record_this_librarys_spec(name: str) -> None:
    conf = json.loads((SHIPPED / name / "config.json").read_text())
    assert conf["spec"] == json.loads(json.dumps(agent_spec()))


# ------------------------------------------------------------------ pinned proposals of the shipped agent
PINNED_SPACE = SearchSpace.from_dict({"params": {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "batch_size": {"type": "categorical", "choices": [64, 128, 256, 512]},
    "warmup": {"type": "int", "low": 0, "high": 2000, "step": 100},
}})
PINNED_TARGET = {"n_params": 1.3e9, "n_tokens": 2.6e10}


def _pinned_history(target_runs: int) -> History:
    """A fixed multi-fidelity history: three cheap cells on a grid of lr x batch size, an optimum that
    moves to lower lr with scale, and ``target_runs`` runs at the target (one of them failed)."""
    h = History()
    for k in range(3):
        fid = {"n_params": 1e8 * 2**k, "n_tokens": 2e9 * 2**k}
        lr_opt = -2.8 - 0.2 * k
        for lr in (-4.0, -3.5, -3.0, -2.5, -2.0):
            for bs in (64, 256):
                value = 3.0 - 0.15 * k + 0.2 * (lr - lr_opt) ** 2 + 0.02 * (bs == 64)
                h.add(Trial(id=h.next_id(), params={"lr": 10**lr, "batch_size": bs, "warmup": 500}, fidelity=fid, value=value))
    runs = [({"lr": 3e-3, "batch_size": 256, "warmup": 500}, 2.84), ({"lr": 1e-2, "batch_size": 512, "warmup": 0}, None)]
    for params, value in runs[:target_runs]:
        h.add(Trial(id=h.next_id(), params=params, fidelity=PINNED_TARGET, value=value,
                    state="complete" if value is not None else "failed"))
    return h


#: proposals (lr, batch size, warmup) and predicted value of the shipped agent, seed 0; update on purpose
#: only (a retrained checkpoint or a changed spec), with the values this test prints on failure
PINNED = {
    0: [(0.000846676658608, 256, 500, 2.35312690478206), (0.00150389773378, 256, 200, 2.3561682705420113)],
    2: [(0.000412584056287, 256, 700, 2.85654751435902), (0.000570606501863, 128, 500, 2.8274970929477297)],
}


@needs_shipped
@pytest.mark.parametrize("target_runs", sorted(PINNED))
def test_the_shipped_agents_proposals_are_pinned(target_runs: int) -> None:
    agent = load_agent("default")
    agent.strict = True
    props = agent.propose(_pinned_history(target_runs), PINNED_SPACE, PINNED_TARGET, n=2, seed=0)
    got = [(p.params["lr"], p.params["batch_size"], p.params["warmup"], p.predicted_value) for p in props]
    want = PINNED[target_runs]
    assert len(got) == len(want), f"pinned proposals for {target_runs} target runs: {got}"
    for g, w in zip(got, want, strict=True):
        assert g[1:3] == w[1:3] and g[0] == pytest.approx(w[0], rel=1e-6) and g[3] == pytest.approx(w[3], abs=1e-4), \
            f"pinned proposals for {target_runs} target runs: {got}"
