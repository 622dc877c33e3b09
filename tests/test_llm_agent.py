"""The text-LLM agent over real (tiny, local) causal language models: proposals, checkpoints, RL, pipeline.

Every model here is built in the test from a BPE tokenizer trained on rendered prompts (nothing is
downloaded). A randomly initialised model checks validity and the fallbacks; a model briefly trained to
repeat one answer checks the clean path (strict answer -> proposal, rationale and prediction).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from autollm_sampler import gym
from autollm_sampler.agent import load_agent
from autollm_sampler.agent._base import Proposal
from autollm_sampler.agent._features import encode
from autollm_sampler.agent._llm import (
    LLM_AGENT_FILE,
    LLMAgentSettings,
    TextLLMAgent,
    chat_text,
    is_llm_checkpoint,
    write_llm_checkpoint,
)
from autollm_sampler.agent._text import LEVELS, SYSTEM_PROMPT, PromptSettings, render_answer, render_prompt
from autollm_sampler.exceptions import CheckpointError
from autollm_sampler.history import History, Trial, fidelity_key
from autollm_sampler.space import SearchSpace
from training.llm import LLMSection, TextRLPolicy, build_tokenizer, load_llm_config, new_tiny_model, run

ROOT = Path(__file__).resolve().parents[1]
SMALL = SearchSpace.from_dict({"params": {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "batch_size": {"type": "categorical", "choices": [32, 64, 128, 256]},
    "optimizer": {"type": "categorical", "choices": ["adamw", "lion"]},
}})
TARGET = {"n_params": 1e9, "n_tokens": 2e10}
CHEAP = [{"n_params": 1e8, "n_tokens": 2e9}, {"n_params": 3e8, "n_tokens": 6e9}]
TINY = LLMSection(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, vocab_size=300, max_seq_len=1024)
FAST = LLMAgentSettings(max_new_tokens=16)
ANSWER_PARAMS = {"lr": 0.003, "batch_size": 128, "optimizer": "lion"}
ANSWER = render_answer(ANSWER_PARAMS, SMALL, predicted=2.75, reason="Near the extrapolated optimum.")


def make_history(seed: int, *, n_target: int = 3) -> History:
    rng = np.random.default_rng(seed)
    h = History()
    for f in [*CHEAP, TARGET]:
        for _ in range(n_target if f is TARGET else 4):
            h.add(Trial(id=h.next_id(), params=SMALL.sample(rng), fidelity=dict(f), value=float(rng.uniform(2, 4))))
    return h


HISTORY = make_history(0)


def hint_of(history: History, space: SearchSpace, target: Mapping[str, float]) -> dict[str, Any]:
    return space.from_unit(encode(history, space, target, np.zeros((0, space.width))).extrap)


def candidates(n: int, seed: int = 1) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out: dict[Any, dict[str, Any]] = {}
    while len(out) < n:
        c = SMALL.sample(rng)
        out.setdefault(SMALL.config_key(c), c)
    return list(out.values())


def check(props: Sequence[Proposal], space: SearchSpace, n: int, history: History,
          target: Mapping[str, float]) -> None:
    """``n`` valid, distinct, untried proposals with a source, a rationale and (model ones) a parse level."""
    assert len(props) == n
    tkey = fidelity_key(target)
    tried = {space.config_key(t.params) for t in history.trials if fidelity_key(t.fidelity) == tkey}
    keys = [space.config_key(p.params) for p in props]
    assert len(set(keys)) == n and not set(keys) & tried
    for p in props:
        assert space.validate_params(p.params) == p.params
        assert p.source in ("model", "fallback") and p.rationale.strip()
        if p.source == "model":
            assert p.extras["parse_level"] in LEVELS and isinstance(p.extras["answer"], str)
    assert props[0].source == "model"


@dataclass
class Tiny:
    dir: Path
    tokenizer: Any


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Tiny:
    """A randomly initialised 1-layer Llama and its BPE tokenizer, saved as a local model folder."""
    rng = np.random.default_rng(0)
    texts = []
    for k in range(12):
        h = make_history(k)
        texts.append(chat_text_plain(render_prompt(h, SMALL, TARGET, hint=SMALL.sample(rng))))
        texts.append(render_answer(SMALL.sample(rng), SMALL, predicted=float(rng.uniform(2, 4)), reason="Near."))
    tok = build_tokenizer(texts, TINY.vocab_size)
    torch.manual_seed(0)
    model = new_tiny_model(tok, TINY)
    out = tmp_path_factory.mktemp("tiny-llm")
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    return Tiny(out, tok)


def chat_text_plain(user: str) -> str:
    return f"{SYSTEM_PROMPT}\n\n{user}\n"


@pytest.fixture(scope="module")
def agent(tiny: Tiny) -> TextLLMAgent:
    return TextLLMAgent.from_pretrained(tiny.dir, settings=FAST, device="cpu")


@pytest.fixture(scope="module")
def parrot(tiny: Tiny, tmp_path_factory: pytest.TempPathFactory) -> TextLLMAgent:
    """The tiny model trained for a few steps to answer ANSWER to the prompts of HISTORY."""
    agent = TextLLMAgent.from_pretrained(tiny.dir, settings=LLMAgentSettings(max_new_tokens=128), device="cpu")
    hint = hint_of(HISTORY, SMALL, TARGET)
    prompts = [agent.fit_prompt(HISTORY, SMALL, TARGET, pending, hint) for pending in ([], candidates(6)[:3])]
    a_ids = agent.tokenizer(ANSWER + agent.tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    model = agent.model.train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    torch.manual_seed(0)
    for _ in range(150):
        loss = torch.zeros(())
        for p_ids in prompts:
            assert p_ids is not None
            ids = torch.tensor([p_ids + a_ids])
            labels = ids.clone()
            labels[0, : len(p_ids)] = -100
            loss = loss + model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.01:
            break
    assert loss.item() < 0.05, "the tiny model did not learn to repeat the answer"
    model.eval()
    return agent


# ---------------------------------------------------------------------------------------------- loading
def test_from_pretrained_and_load_agent_llm_prefix(tiny: Tiny) -> None:
    a = load_agent("llm:" + str(tiny.dir), settings=FAST, device="cpu")
    assert isinstance(a, TextLLMAgent) and a.base_path == str(tiny.dir) and a.settings.max_new_tokens == 16
    assert a.device.type == "cpu" and a.context_size == TINY.max_seq_len
    assert not is_llm_checkpoint(tiny.dir)
    props = a.propose(HISTORY, SMALL, TARGET, n=1, seed=0)
    check(props, SMALL, 1, HISTORY, TARGET)
    with pytest.raises(CheckpointError, match="no config.json"):
        load_agent("llm:" + str(tiny.dir / "missing"))
    with pytest.raises(CheckpointError, match="not a LoRA adapter folder"):
        TextLLMAgent.from_pretrained(tiny.dir, adapter=tiny.dir)


def test_chat_text_uses_the_template(tiny: Tiny) -> None:
    text = chat_text(tiny.tokenizer, "hello")
    assert text == f"<|bos|><|system|>\n{SYSTEM_PROMPT}\n<|user|>\nhello\n<|assistant|>\n"
    assert chat_text(tiny.tokenizer, "hello", use_template=False) == chat_text_plain("hello")


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="temperature"):
        LLMAgentSettings(temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        LLMAgentSettings(top_p=0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        LLMAgentSettings(max_new_tokens=4)
    s = LLMAgentSettings(prompt={"top_k": 1})  # type: ignore[arg-type]
    assert isinstance(s.prompt, PromptSettings) and s.prompt.top_k == 1
    assert LLMAgentSettings().answer_budget(SMALL) == 64 + 16 * SMALL.width


# ---------------------------------------------------------------------------------------------- proposals
def test_propose_one_with_a_random_model(agent: TextLLMAgent) -> None:
    before = agent.stats.total
    props = agent.propose(HISTORY, SMALL, TARGET, n=1, seed=0)
    check(props, SMALL, 1, HISTORY, TARGET)
    p = props[0]
    assert agent.stats.total == before + 1  # one greedy answer
    if p.extras["parse_level"] == "failed":  # a random model's answer: the extrapolated optimum instead
        assert p.params == hint_of(HISTORY, SMALL, TARGET)
        assert "[answer repaired: failed]" in p.rationale and math.isnan(p.predicted_value)
    # deterministic for a seed
    assert agent.propose(HISTORY, SMALL, TARGET, n=1, seed=0)[0].params == p.params


def test_propose_several_with_a_random_model(agent: TextLLMAgent) -> None:
    before = agent.stats.total
    props = agent.propose(HISTORY, SMALL, TARGET, n=3, seed=1)
    check(props, SMALL, 3, HISTORY, TARGET)
    n_model = sum(p.source == "model" for p in props)
    # one greedy answer, then at most two sampling rounds for what is still missing
    assert n_model <= agent.stats.total - before <= 1 + 2 * 2
    assert agent.stats.to_dict()["answers"] == agent.stats.total


def test_candidates_and_pending_are_respected(agent: TextLLMAgent) -> None:
    cands = candidates(10)
    pending = cands[:4]
    cand_keys = {SMALL.config_key(c) for c in cands}
    pend_keys = {SMALL.config_key(c) for c in pending}
    for n in (1, 3):
        props = agent.propose(HISTORY, SMALL, TARGET, n=n, seed=2, candidates=cands, pending=pending)
        check(props, SMALL, n, HISTORY, TARGET)
        keys = [SMALL.config_key(p.params) for p in props]
        assert set(keys) <= cand_keys and not set(keys) & pend_keys


def test_prompt_that_does_not_fit_falls_back(tiny: Tiny, caplog: pytest.LogCaptureFixture) -> None:
    a = TextLLMAgent.from_pretrained(tiny.dir, settings=LLMAgentSettings(max_new_tokens=1000), device="cpu")
    with caplog.at_level(logging.WARNING, logger="autollm_sampler.agent"):
        props = a.propose(HISTORY, SMALL, TARGET, n=2, seed=0)
    assert [p.source for p in props] == ["fallback", "fallback"] and a.stats.total == 0 and a.stats.too_long == 1
    assert "cannot read this history" in caplog.text
    for p in props:
        assert SMALL.validate_params(p.params) == p.params


def test_trained_answer_becomes_the_proposal(parrot: TextLLMAgent) -> None:
    before = parrot.stats.counts["strict"]
    p = parrot.propose(HISTORY, SMALL, TARGET, n=1, seed=0)[0]
    assert p.extras["answer"] == ANSWER
    assert (p.source, p.params, p.extras["parse_level"]) == ("model", ANSWER_PARAMS, "strict")
    assert p.rationale == "Near the extrapolated optimum." and p.predicted_value == 2.75
    assert math.isnan(p.predicted_std) and p.extras["repairs"] == []
    assert parrot.stats.counts["strict"] == before + 1
    # n=3: the greedy answer first; the rest are distinct
    props = parrot.propose(HISTORY, SMALL, TARGET, n=3, seed=0)
    check(props, SMALL, 3, HISTORY, TARGET)
    assert props[0].params == ANSWER_PARAMS


def test_trained_answer_is_snapped_to_an_untried_candidate(parrot: TextLLMAgent) -> None:
    cands = candidates(6)
    pending = cands[:3]
    # the answer itself is a free candidate: it is chosen
    free = [*cands, dict(ANSWER_PARAMS)]
    p = parrot.propose(HISTORY, SMALL, TARGET, n=1, seed=0, candidates=free, pending=pending)[0]
    assert p.params == ANSWER_PARAMS and p.extras["parse_level"] == "strict"
    # the answer is pending: the nearest candidate that is not
    busy = [*pending, dict(ANSWER_PARAMS)]
    p = parrot.propose(HISTORY, SMALL, TARGET, n=1, seed=0, candidates=free, pending=busy)[0]
    assert p.source == "model"
    rest = [c for c in free if SMALL.config_key(c) not in {SMALL.config_key(b) for b in busy}]
    u = SMALL.to_unit(ANSWER_PARAMS)
    nearest = min(rest, key=lambda c: float(np.sum((SMALL.to_unit(c) - u) ** 2)))
    assert p.params == nearest


# ---------------------------------------------------------------------------------------------- checkpoints
def _lora(tiny: Tiny, seed: int = 0) -> Any:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny.dir), local_files_only=True)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                            task_type="CAUSAL_LM"))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:  # zero at init: make the adapter change the model
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model.eval()


def _logits(model: Any, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).logits[0]


def test_adapter_checkpoint_round_trip(tiny: Tiny, tmp_path: Path) -> None:
    base_dir = tmp_path / "project" / "base"
    shutil.copytree(tiny.dir, base_dir)
    model = _lora(tiny)
    settings = LLMAgentSettings(max_new_tokens=16, task="steplaw", prompt=PromptSettings(top_k=2))
    saver = TextLLMAgent(model, tiny.tokenizer, base_path=str(base_dir), settings=settings, meta={"who": "test"})
    out = saver.save(tmp_path / "project" / "ckpt", extra_meta={"stage": "unit"})
    assert out == tmp_path / "project" / "ckpt" and is_llm_checkpoint(out)
    assert (out / "adapter" / "adapter_config.json").is_file()
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert "llm_agent.json" in files and "adapter/adapter_model.safetensors" in files
    assert not any(f.endswith(("model.safetensors", "config.json")) and not f.startswith("adapter/") for f in files)
    size = sum((out / f).stat().st_size for f in files)
    assert size < (tiny.dir / "model.safetensors").stat().st_size  # the base weights are not copied
    spec = json.loads((out / LLM_AGENT_FILE).read_text())
    assert spec["format"] == "autollm-text-llm" and spec["adapter"] == "adapter" and spec["base"] == "../base"
    assert spec["meta"] == {"who": "test", "stage": "unit"} and spec["settings"]["prompt"]["top_k"] == 2

    loaded = load_agent(out, device="cpu")
    assert isinstance(loaded, TextLLMAgent)
    assert loaded.settings == settings and loaded.meta == {"who": "test", "stage": "unit"}
    ids = loaded.encode_prompt(loaded.prompt(HISTORY, SMALL, TARGET))
    want = _logits(model, ids)
    torch.testing.assert_close(_logits(loaded.model, ids), want, rtol=1e-5, atol=1e-5)
    bare = TextLLMAgent.from_pretrained(tiny.dir, device="cpu")
    assert (_logits(bare.model, ids) - want).abs().max().item() > 1e-2
    # settings can be overridden at load time
    assert load_agent(out, device="cpu", max_new_tokens=8).settings.max_new_tokens == 8  # type: ignore[attr-defined]
    # the same adapter through the llm: prefix
    via_prefix = load_agent("llm:" + str(tiny.dir), adapter=out / "adapter", device="cpu")
    torch.testing.assert_close(_logits(via_prefix.model, ids), want, rtol=1e-5, atol=1e-5)  # type: ignore[attr-defined]
    # base and checkpoint moved together: the relative paths still resolve
    shutil.move(tmp_path / "project", tmp_path / "moved")
    moved = load_agent(tmp_path / "moved" / "ckpt", device="cpu")
    torch.testing.assert_close(_logits(moved.model, ids), want, rtol=1e-5, atol=1e-5)  # type: ignore[attr-defined]


def test_plain_model_checkpoint_has_no_adapter(tiny: Tiny, tmp_path: Path, agent: TextLLMAgent) -> None:
    out = agent.save(tmp_path / "plain")
    spec = json.loads((out / LLM_AGENT_FILE).read_text())
    assert spec["adapter"] is None and not (out / "adapter").exists()
    loaded = load_agent(out, device="cpu")
    ids = agent.encode_prompt("Target runs: none yet.")
    torch.testing.assert_close(_logits(loaded.model, ids), _logits(agent.model, ids))  # type: ignore[attr-defined]


@pytest.mark.parametrize(("content", "match"), [
    (None, "has no llm_agent.json"),
    ("{not json", "not valid JSON"),
    ('{"format": "something-else", "version": 1, "base": "."}', "unsupported format 'something-else'"),
    ('{"format": "autollm-text-llm", "version": 99, "base": "."}', "unsupported format"),
    ('{"format": "autollm-text-llm", "version": 1, "base": "no-such-model"}', "no config.json"),
])
def test_broken_checkpoints_raise_checkpoint_error(tmp_path: Path, content: str | None, match: str) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    if content is not None:
        (folder / LLM_AGENT_FILE).write_text(content)
    with pytest.raises(CheckpointError, match=match):
        TextLLMAgent.load(folder)
    if content is not None:  # load_agent routes the folder to the text-LLM loader
        with pytest.raises(CheckpointError, match=match):
            load_agent(folder)


def test_write_checkpoint_checks_its_folders(tiny: Tiny, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="base model folder"):
        write_llm_checkpoint(tmp_path / "a", base=tmp_path / "nothing", adapter=None, settings=FAST)
    with pytest.raises(CheckpointError, match="adapter folder"):
        write_llm_checkpoint(tmp_path / "a", base=tiny.dir, adapter=tmp_path, settings=FAST)
    with pytest.raises(CheckpointError, match="base model folder"):  # the base must exist
        TextLLMAgent(_lora(tiny), tiny.tokenizer).save(tmp_path / "b", base=tmp_path / "nothing")


# ---------------------------------------------------------------------------------------------- RL policy
@pytest.mark.usefixtures("raw_dir")
def test_text_rl_policy_logprobs_kl_and_gradients(tiny: Tiny, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    _lora(tiny, seed=3).save_pretrained(str(tmp_path / "adapter"))
    base = AutoModelForCausalLM.from_pretrained(str(tiny.dir), local_files_only=True)
    model = PeftModel.from_pretrained(base, str(tmp_path / "adapter"), adapter_name="default", is_trainable=True)
    model.load_adapter(str(tmp_path / "adapter"), adapter_name="ref", is_trainable=False)
    policy = TextRLPolicy(model, tiny.tokenizer, prompt=PromptSettings(), max_new_tokens=16)
    names = {id(p): n for n, p in model.named_parameters()}
    assert policy.parameters() and all(".default." in names[id(p)] for p in policy.parameters())

    task = gym.make("steplaw-dense-v1")
    exp = gym.experiments(task, "train")[0]
    env = gym.LLMConfigEnv(task, exp.target, history="full", history_cells=list(exp.history_cells), budget=10)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    records = []
    for _ in range(2):
        action, rec = policy.sample(obs, rng, temperature=1.0)
        assert action in obs.candidates
        assert 1 <= len(rec.answer) <= 16 and rec.prompt
        records.append(rec)
    assert policy.agent.stats.total == 2

    logp, kl = policy.logprob_kl(records, 1.0)
    assert logp.shape == kl.shape == (2,)
    assert torch.isfinite(logp).all() and (logp < 0).all()
    assert kl.abs().max().item() < 1e-5  # policy == reference
    (-logp.mean()).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads and all(".default." in n for n in grads)
    assert any(g.abs().sum() > 0 for g in grads.values())
    assert all(p.grad is None for n, p in model.named_parameters() if ".ref." in n or "lora" not in n)

    opt = torch.optim.Adam(policy.parameters(), lr=1e-2)
    opt.step()
    opt.zero_grad()
    logp2, kl2 = policy.logprob_kl(records, 1.0)
    assert (kl2 > 1e-7).all() and torch.isfinite(kl2).all()
    assert logp2.mean() > logp.mean()  # the step made the sampled answers more likely
    # the reference adapter did not move
    ref_now = _logits_with(model, "ref", records[0].prompt)
    fresh = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny.dir), local_files_only=True),
                                      str(tmp_path / "adapter"))
    torch.testing.assert_close(ref_now, _logits(fresh, records[0].prompt), rtol=1e-5, atol=1e-5)


def _logits_with(model: Any, adapter: str, ids: list[int]) -> torch.Tensor:
    model.set_adapter(adapter)
    try:
        return _logits(model, ids)
    finally:
        model.set_adapter("default")


def test_text_rl_policy_needs_a_default_adapter(tiny: Tiny) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny.dir), local_files_only=True)
    with pytest.raises(ValueError):  # no adapter at all
        TextRLPolicy(base, tiny.tokenizer, prompt=PromptSettings())
    other = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM"), adapter_name="mine")
    with pytest.raises(ValueError, match="default"):
        TextRLPolicy(other, tiny.tokenizer, prompt=PromptSettings())


# ---------------------------------------------------------------------------------------------- pipeline
@pytest.mark.usefixtures("raw_dir")
def test_smoke_pipeline_end_to_end(tmp_path: Path) -> None:
    cfg = load_llm_config(ROOT / "training" / "configs" / "llm-smoke.yaml", out_dir=str(tmp_path / "run"), threads=1)
    summary = run(cfg, progress=False)
    out = tmp_path / "run"
    for stage in ("curate", "simulate", "tokenizer", "pretrain", "distill", "rl"):
        assert stage in summary and stage in summary["minutes_by_stage"], stage
    assert summary == json.loads((out / "summary.json").read_text())
    assert summary["simulate"]["states"] > 0 and summary["rl"]["answers"]["answers"] > 0
    assert summary["tokenizer"]["vocab"] == cfg.llm.vocab_size
    for name, adapter in (("agent", "adapter-rl"), ("agent-distilled", "adapter-distilled")):
        spec = json.loads((out / name / LLM_AGENT_FILE).read_text())
        assert (out / name / spec["base"]).resolve() == (out / "base").resolve()
        assert (out / name / spec["adapter"]).resolve() == (out / adapter).resolve()
        assert spec["meta"]["stage"] == name
    # the RL adapter is saved alone (not the frozen reference) with the distilled adapter's tensors
    from safetensors.torch import load_file

    rl = load_file(str(out / "adapter-rl" / "adapter_model.safetensors"))
    dist = load_file(str(out / "adapter-distilled" / "adapter_model.safetensors"))
    assert rl.keys() == dist.keys() and all(rl[k].shape == dist[k].shape for k in rl)

    agent = load_agent(out / "agent", device="cpu")
    assert isinstance(agent, TextLLMAgent)
    task = gym.make("steplaw-dense-v1")
    exp = gym.experiments(task, "test")[0]
    env = gym.LLMConfigEnv(task, exp.target, history="sparse", history_cells=list(exp.history_cells))
    obs, _ = env.reset(seed=0)
    props = agent.propose(obs.history, obs.space, obs.target.fidelity, n=1, seed=0, candidates=obs.candidates)
    assert obs.space.validate_params(props[0].params) == props[0].params
    assert props[0].params in obs.candidates and props[0].rationale


# ---------------------------------------------------------------------------------------------- benchmark
@pytest.mark.usefixtures("raw_dir")
def test_benchmark_agent_llm_method(agent: TextLLMAgent, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autollm_sampler.benchmark import _policies
    from autollm_sampler.benchmark._methods import LLM_AGENT_ENV, method_spec
    from autollm_sampler.benchmark._runner import EpisodeSpec, run_episode

    ckpt = agent.save(tmp_path / "bench-agent")
    monkeypatch.setattr(_policies, "_AGENTS", {})
    monkeypatch.delenv(LLM_AGENT_ENV, raising=False)
    assert "AUTOLLM_BENCH_LLM_AGENT" in (method_spec("agent-llm").unavailable() or "")
    monkeypatch.setenv(LLM_AGENT_ENV, str(ckpt))
    assert method_spec("agent-llm").unavailable() is None

    task = gym.make("steplaw-dense-v1")
    exp = gym.experiments(task, "test")[0]
    spec = EpisodeSpec("A", "full", task.id, "steplaw-dense", exp.target, exp.history_cells, "agent-llm", 0, budget=2)
    rec = run_episode(spec)
    assert rec["method"] == "agent-llm" and len(rec["steps"]) == 2
    cell = task.cell(exp.target)
    for s in rec["steps"]:
        assert s["target"] and cell.values[s["row"]] == pytest.approx(s["value"]) and not s["invalid"]
    assert len({s["row"] for s in rec["steps"]}) == 2
    used = next(a for k, a in _policies._AGENTS.items() if k.startswith(f"{ckpt}@"))
    assert isinstance(used, TextLLMAgent) and used.stats.total >= 2  # the model answered every step
    monkeypatch.setenv(LLM_AGENT_ENV, str(tmp_path / "missing"))
    assert "failed" in (method_spec("agent-llm").unavailable() or "")
