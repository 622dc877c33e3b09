"""Ensemble checkpoints: several networks of one architecture in one checkpoint, their predictions combined."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from autollm_sampler._io import sha256_of
from autollm_sampler.agent import load_agent
from autollm_sampler.agent._model import AgentModelConfig, TransformerAgent, _combine
from autollm_sampler.exceptions import CheckpointError
from autollm_sampler.history import History, Trial
from autollm_sampler.space import SearchSpace

TINY = AgentModelConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)
SPACE = SearchSpace.from_dict({"params": {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "batch_size": {"type": "categorical", "choices": [64, 128, 256, 512]},
}})
TARGET = {"n_params": 1e9, "n_tokens": 2e10}


def _history(target_runs: int = 0) -> History:
    rng = np.random.default_rng(0)
    h = History()
    for k in range(3):
        fid = {"n_params": 1e8 * 2**k, "n_tokens": 2e9 * 2**k}
        for _ in range(12):
            p = SPACE.sample(rng)
            h.add(Trial(id=h.next_id(), params=p, fidelity=fid, value=2.0 - 0.1 * k + float(np.sum((SPACE.to_unit(p) - 0.4) ** 2))))
    for _ in range(target_runs):
        p = SPACE.sample(rng)
        h.add(Trial(id=h.next_id(), params=p, fidelity=TARGET, value=1.7 + float(np.sum((SPACE.to_unit(p) - 0.4) ** 2))))
    return h


@pytest.fixture(scope="module")
def members(tmp_path_factory: pytest.TempPathFactory) -> list[TransformerAgent]:
    root = tmp_path_factory.mktemp("members")
    return [TransformerAgent.load(TransformerAgent.from_config(TINY, seed=s).save(root / f"m{s}")) for s in (1, 2, 3)]


@pytest.fixture
def saved(members: list[TransformerAgent], tmp_path: Path) -> Path:
    return TransformerAgent.ensemble(members).save(tmp_path / "ens")


def test_combine_is_the_mean_log_probability_and_the_mixture() -> None:
    s1, s2 = np.array([0.0, 1.0, 2.0]), np.array([5.0, 3.0, 4.0])
    mu1, mu2 = np.array([0.1, 0.2, 0.3]), np.array([0.3, 0.2, -0.1])
    sd1, sd2 = np.array([0.1, 0.2, 0.3]), np.array([0.3, 0.2, 0.1])
    score, mu, sd = _combine([(s1, mu1, sd1), (s2, mu2, sd2)])
    lp = lambda s: s - np.log(np.exp(s).sum())  # noqa: E731
    assert np.allclose(score, (lp(s1) + lp(s2)) / 2)
    assert np.allclose(mu, (mu1 + mu2) / 2)
    assert np.allclose(sd**2, (sd1**2 + sd2**2) / 2 + ((mu1 - mu2) / 2) ** 2)  # law of total variance
    assert _combine([(s1, mu1, sd1)]) == (s1, mu1, sd1)


def test_an_ensemble_round_trips_through_one_checkpoint(members: list[TransformerAgent], saved: Path) -> None:
    conf = json.loads((saved / "config.json").read_text())
    assert conf["model"]["members"] == 3
    names = set(load_file(str(saved / "model.safetensors")))
    one = set(members[0].weights())
    assert names == {f"member{i}.{k}" for i in range(3) for k in one}
    back = load_agent(saved)
    assert isinstance(back, TransformerAgent) and back.cfg.members == 3 and back.backend == "numpy"
    assert len(back.meta["members"]) == 3
    for i, m in enumerate(members):  # each member's tensors are the member's own
        w = back.weights()
        assert all(np.array_equal(w[f"member{i}.{k}"], v) for k, v in m.weights().items())
    h = _history(target_runs=2)
    a = TransformerAgent.ensemble(members).propose(h, SPACE, TARGET, n=3, seed=0)
    b = back.propose(h, SPACE, TARGET, n=3, seed=0)
    assert [p.params for p in a] == [p.params for p in b]
    assert [p.predicted_value for p in a] == [p.predicted_value for p in b]


def test_ensemble_predictions_lie_among_the_members_and_are_no_surer(members: list[TransformerAgent]) -> None:
    ens = TransformerAgent.ensemble(members)
    h = _history()
    units = np.random.default_rng(1).random((20, SPACE.width))
    outs = [m.score(h, SPACE, TARGET, units) for m in members]
    _, score, value, std = ens.score(h, SPACE, TARGET, units)
    vals = np.stack([o[2] for o in outs])
    assert np.all(value >= vals.min(0) - 1e-9) and np.all(value <= vals.max(0) + 1e-9)
    # the mixture is at least as wide as the narrowest member where the members agree on the mean
    assert np.all(std >= np.stack([o[3] for o in outs]).min(0) * 0.5)
    # the policy's ranking is the members' averaged log-probabilities
    lp = [o[1] - np.log(np.exp(o[1] - o[1].max()).sum()) - o[1].max() for o in outs]
    assert np.argmax(score) == np.argmax(np.mean(lp, 0))


def test_two_copies_of_one_network_propose_what_it_proposes(members: list[TransformerAgent]) -> None:
    one = members[0]
    twice = TransformerAgent.ensemble([one, one])
    h = _history(target_runs=3)
    a, b = one.propose(h, SPACE, TARGET, n=2, seed=5), twice.propose(h, SPACE, TARGET, n=2, seed=5)
    assert [p.params for p in a] == [p.params for p in b]
    assert np.allclose([p.predicted_value for p in a], [p.predicted_value for p in b], rtol=1e-5)
    assert np.allclose([p.predicted_std for p in a], [p.predicted_std for p in b], rtol=1e-4)


def test_members_must_share_an_architecture_and_be_loaded(members: list[TransformerAgent]) -> None:
    other = TransformerAgent.from_config(AgentModelConfig(hidden_size=16, num_layers=1, num_heads=2, intermediate_size=16))
    with pytest.raises(ValueError, match="at least 2"):
        TransformerAgent.ensemble(members[:1])
    with pytest.raises(ValueError, match="loaded checkpoints"):
        TransformerAgent.ensemble([members[0], other])
    with pytest.raises(ValueError, match="one architecture"):
        TransformerAgent.ensemble([members[0], TransformerAgent(_numpy(other), cfg=other.cfg)])
    with pytest.raises(ValueError, match="no single torch network"):
        TransformerAgent.ensemble(members).net  # noqa: B018


def _numpy(agent: TransformerAgent):  # type: ignore[no-untyped-def]
    from autollm_sampler.agent._numpy_net import NumpyPolicyNet

    c = agent.cfg
    return NumpyPolicyNet(agent.weights(), hidden_size=c.hidden_size, num_layers=c.num_layers, num_heads=c.num_heads,
                          intermediate_size=c.intermediate_size)


def _rewrite(path: Path, weights: dict[str, np.ndarray] | None = None, members: int | None = None) -> None:
    if weights is not None:
        save_file(weights, str(path / "model.safetensors"))
    if members is not None:
        conf = json.loads((path / "config.json").read_text())
        conf["model"]["members"] = members
        (path / "config.json").write_text(json.dumps(conf))
    man = json.loads((path / "manifest.json").read_text())
    man["files"] = {n: sha256_of(path / n) for n in man["files"]}
    (path / "manifest.json").write_text(json.dumps(man))


def test_a_member_count_that_does_not_match_the_tensors_is_refused(saved: Path, tmp_path: Path) -> None:
    two = tmp_path / "two"
    shutil.copytree(saved, two)
    _rewrite(two, members=2)  # member2's tensors are then strays
    with pytest.raises(CheckpointError, match=r"2 members, but tensor\(s\) \['member2\."):
        load_agent(two)
    four = tmp_path / "four"
    shutil.copytree(saved, four)
    _rewrite(four, members=4)  # member3 has no tensors
    with pytest.raises(CheckpointError, match="does not match the model config.json describes"):
        load_agent(four)
    flat = tmp_path / "flat"
    shutil.copytree(saved, flat)
    w = load_file(str(saved / "model.safetensors"))
    _rewrite(flat, weights={k.split(".", 1)[1]: v for k, v in w.items() if k.startswith("member0.")}, members=None)
    with pytest.raises(CheckpointError, match="belong to none of member0..member2"):
        load_agent(flat)
    bad = tmp_path / "bad"
    shutil.copytree(saved, bad)
    w = dict(w)
    key = next(k for k in w if k.startswith("member1."))
    w[key] = np.full_like(w[key], np.nan)
    _rewrite(bad, weights=w)
    with pytest.raises(CheckpointError, match="non-finite weights"):
        load_agent(bad)
