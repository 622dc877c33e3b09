"""The numpy forward pass gives the torch network's outputs from the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from autollm_sampler.agent import DEFAULT_CHECKPOINT
from autollm_sampler.agent._features import encode, with_queries
from autollm_sampler.agent._model import AgentModelConfig
from autollm_sampler.agent._net import PolicyNet, collate
from autollm_sampler.agent._numpy_net import NumpyPolicyNet, _erf, expected_shapes
from autollm_sampler.history import History, Trial
from autollm_sampler.space import SearchSpace

SPACE = SearchSpace.from_dict({"params": {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "warmup": {"type": "int", "low": 0, "high": 2000, "step": 100},
    "batch_size": {"type": "categorical", "choices": [64, 128, 256, 512]},
}})
TARGET = {"n_params": 1e9, "n_tokens": 2e10}


def _history(seed: int, n_target: int = 2) -> History:
    rng = np.random.default_rng(seed)
    trials, i = [], 0
    for n_params, n_tokens, k in [(1e7, 2e8, 9), (5e7, 1e9, 7), (2e8, 4e9, 5), (1e9, 2e10, n_target)]:
        for _ in range(k):
            cfg = SPACE.from_unit(rng.random(SPACE.width))
            trials.append(Trial(id=i, params=cfg, fidelity={"n_params": n_params, "n_tokens": n_tokens},
                                value=float(rng.normal(3.0, 0.2))))
            i += 1
    return History(trials=trials)


def _torch_net(cfg: AgentModelConfig, seed: int) -> PolicyNet:
    torch.manual_seed(seed)
    net = PolicyNet(cfg).eval()
    with torch.no_grad():  # norms start at 1: make them informative so a wrong norm cannot pass
        for name, p in net.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return net


def _numpy_twin(net: PolicyNet) -> NumpyPolicyNet:
    cfg = net.cfg
    return NumpyPolicyNet({k: v.detach().numpy() for k, v in net.state_dict().items()},
                          hidden_size=cfg.hidden_size, num_layers=cfg.num_layers, num_heads=cfg.num_heads,
                          intermediate_size=cfg.intermediate_size)


def _batch(seed: int, n_queries: int) -> dict[str, torch.Tensor]:
    h = _history(seed)
    rng = np.random.default_rng(seed + 100)
    base = encode(h, SPACE, TARGET, np.zeros((0, SPACE.width)))
    return collate([with_queries(base, rng.random((n_queries, SPACE.width)))])


def _compare(net: PolicyNet, batch: dict[str, torch.Tensor], max_query: int = 256) -> None:
    with torch.no_grad():
        want = net(batch)
    got = _numpy_twin(net).forward({k: v.numpy() for k, v in batch.items()}, max_query=max_query)
    for key in ("score", "mu", "log_sigma"):
        np.testing.assert_allclose(got[key], want[key].numpy(), rtol=2e-4, atol=2e-5, err_msg=key)


@pytest.mark.parametrize("hidden, layers, heads, inter", [(32, 1, 2, 64), (64, 2, 4, 128), (48, 3, 6, 40)])
def test_numpy_forward_matches_torch_on_random_networks(hidden: int, layers: int, heads: int, inter: int) -> None:
    cfg = AgentModelConfig(hidden_size=hidden, num_layers=layers, num_heads=heads, intermediate_size=inter)
    for seed in range(3):
        _compare(_torch_net(cfg, seed), _batch(seed, n_queries=5 + 17 * seed))


def test_numpy_forward_matches_torch_on_the_shipped_checkpoint() -> None:
    from safetensors.torch import load_file

    from autollm_sampler.agent._model import TransformerAgent

    agent = TransformerAgent.load(DEFAULT_CHECKPOINT)
    net = PolicyNet(agent.cfg).eval()
    net.load_state_dict(load_file(str(DEFAULT_CHECKPOINT / "model.safetensors")), strict=False)
    _compare(net, _batch(7, n_queries=300))  # more queries than one chunk
    _compare(net, _batch(8, n_queries=300), max_query=64)  # chunking does not change the outputs


def test_padded_batches_match_torch() -> None:
    cfg = AgentModelConfig(hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64)
    net = _torch_net(cfg, 5)
    rng = np.random.default_rng(0)
    states = []
    for seed, q in [(1, 3), (2, 11)]:  # different context lengths and query counts: padding in both
        base = encode(_history(seed, n_target=seed), SPACE, TARGET, np.zeros((0, SPACE.width)))
        states.append(with_queries(base, rng.random((q, SPACE.width))))
    batch = collate(states)
    assert not bool(batch["ctx_mask"].all()) and not bool(batch["q_mask"].all())
    _compare(net, batch)


def test_wrong_weights_are_refused() -> None:
    shapes = expected_shapes(16, 1, 32)
    w = {k: np.zeros(s, np.float32) for k, s in shapes.items()}
    NumpyPolicyNet(w, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    with pytest.raises(ValueError, match="missing"):
        NumpyPolicyNet({k: v for k, v in w.items() if k != "scal.bias"}, hidden_size=16, num_layers=1,
                       num_heads=2, intermediate_size=32)
    with pytest.raises(ValueError, match="wrong shape"):
        NumpyPolicyNet({**w, "scal.bias": np.zeros(17, np.float32)}, hidden_size=16, num_layers=1, num_heads=2,
                       intermediate_size=32)


def test_erf_matches_math_erf() -> None:
    import math

    x = np.linspace(-6, 6, 2001)
    np.testing.assert_allclose(_erf(x), [math.erf(v) for v in x], atol=2e-7)


def test_proposing_with_the_shipped_agent_imports_no_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from autollm_sampler.integrations.optuna import AutoLLMSampler\n"
        "from autollm_sampler.agent import load_agent\n"
        "from autollm_sampler import History, SearchSpace\n"
        "space = SearchSpace.from_dict({'params': {'lr': {'type': 'float', 'low': 1e-4, 'high': 1e-1, 'log': True}}})\n"
        "h = History.from_jsonl('{\"params\": {\"lr\": 0.003}, \"fidelity\": {\"n\": 1}, \"value\": 2.0}')\n"
        "a = load_agent('default')\n"
        "p = a.propose(h, space, {'n': 10}, seed=0)[0]\n"
        "assert p.source == 'model', p\n"
        "print(a.backend, sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "numpy []"
