"""The text-LLM agent's training pipeline: curate -> simulate -> tokenizer -> pretrain -> distill -> rl -> export.

    python -m training.llm --config training/configs/llm-tiny.yaml
    python -m training.llm --config training/configs/llm-local.yaml   # a local model on a GPU

Stages (each writes under ``out_dir`` and is skipped when its output exists, so a run resumes):

``curate``
    the same training experiments as the default backend (``training.curate``; training split only);
``simulate``
    expert trajectories in the gym (hindsight, transfer and random experts, as ``training.simulate``),
    stored as text: for every visited state the prompt the agent would read, the answer of the hindsight
    expert (the distillation label, with its true outcome as ``predicted``) and the answer the acting
    expert gave (what the trajectory did). Written to ``text_states.jsonl``;
``tokenizer``
    only when training from scratch (``llm.base_model: null``): a byte-level BPE tokenizer built with the
    ``tokenizers`` library on those texts, with a small chat template;
``pretrain``
    only from scratch: a small ``LlamaForCausalLM`` trained briefly on the serialized trajectories
    (every token of prompt and acted answer);
``distill``
    LoRA adapters (``peft``) trained on the hindsight answers (loss on the answer tokens only);
``rl``
    the multi-turn GRPO loop of ``training.rl``, unchanged, through :class:`TextRLPolicy` (sampled
    answers, LoRA updates, KL to the distilled adapter);
``export``
    two checkpoint folders, ``agent`` (after RL) and ``agent-distilled``, each an ``llm_agent.json`` that
    names the base model and the adapter; ``load_agent(folder)`` loads them.

Runs on CPU for tiny models and on a GPU when one is present.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from autollm_sampler.agent._llm import (
    LLMAgentSettings,
    TextLLMAgent,
    chat_text,
    nearest_untaken,
    write_llm_checkpoint,
)
from autollm_sampler.agent._text import PromptSettings, render_answer, render_prompt
from autollm_sampler.candidates import CandidateIndex
from autollm_sampler.exceptions import ConfigError
from autollm_sampler.gym import Observation
from training.config import PipelineConfig, _build, parse_stages
from training.config import _help as _h
from training.curate import ExperimentSpec, curate
from training.rl import grpo
from training.simulate import Visit, run_experts

__all__ = ["LLMSection", "LLMConfig", "load_llm_config", "simulate_text", "build_tokenizer", "pretrain",
           "distill_lora", "TextRLPolicy", "run", "main", "STAGES"]

logger = logging.getLogger("training.llm")

STAGES = ("curate", "simulate", "tokenizer", "pretrain", "distill", "rl", "export")

SPECIALS = {"bos_token": "<|bos|>", "eos_token": "<|eos|>", "pad_token": "<|pad|>", "unk_token": "<|unk|>"}
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]


@dataclass
class LLMSection:
    """The text-LLM part of the configuration (the ``llm:`` section of the YAML)."""

    base_model: str | None = _h("A local Hugging Face causal LM folder; null trains a tiny model from scratch.", None)
    vocab_size: int = _h("From scratch: BPE vocabulary size.", 1024)
    hidden_size: int = _h("From scratch: model width.", 128)
    num_layers: int = _h("From scratch: transformer layers.", 4)
    num_heads: int = _h("From scratch: attention heads.", 4)
    intermediate_size: int = _h("From scratch: MLP width.", 384)
    max_seq_len: int = _h("Longest training sequence in tokens (longer ones are dropped and counted).", 2048)
    pretrain_epochs: int = _h("From scratch: passes over the serialized trajectories.", 2)
    pretrain_lr: float = _h("From scratch: AdamW learning rate.", 2e-3)
    pretrain_max_minutes: float = _h("From scratch: wall-clock cap of pretraining.", 10.0)
    batch_size: int = _h("Sequences per optimisation step (pretrain and distill).", 8)
    lora_r: int = _h("LoRA rank.", 16)
    lora_alpha: int = _h("LoRA alpha (scale = alpha / r).", 32)
    lora_dropout: float = _h("LoRA dropout during distillation.", 0.05)
    lora_targets: list[str] = _h("Module names that get LoRA adapters.",
                                 lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    distill_epochs: int = _h("Passes over the hindsight answers.", 2)
    distill_lr: float = _h("AdamW learning rate of the LoRA weights.", 2e-3)
    distill_max_minutes: float = _h("Wall-clock cap of distillation.", 10.0)
    holdout: float = _h("Share of simulated states held out to measure distillation.", 0.05)
    dtype: str | None = _h("Weights dtype for a base model (float32 / bfloat16); default float32 on CPU, bfloat16 on GPU.", None)
    prompt: dict[str, Any] = _h("Prompt settings (top_k, max_cells, max_target_runs, digits, value_digits, hint).", dict)

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"llm.hidden_size={self.hidden_size} must be divisible by llm.num_heads={self.num_heads}")
        if not 0 <= self.holdout < 0.5:
            raise ConfigError(f"llm.holdout must be in [0, 0.5), got {self.holdout}")
        try:
            PromptSettings(**self.prompt)
        except TypeError as exc:
            raise ConfigError(f"llm.prompt: {exc}") from None


@dataclass
class LLMConfig:
    """The whole configuration: the shared pipeline keys (seed, curate, simulate, rl...) plus ``llm``."""

    pipeline: PipelineConfig
    llm: LLMSection

    @property
    def out(self) -> Path:
        return self.pipeline.out

    @property
    def prompt(self) -> PromptSettings:
        return PromptSettings(**self.llm.prompt)

    def to_dict(self) -> dict[str, Any]:
        return {**self.pipeline.to_dict(), "llm": asdict(self.llm)}


def load_llm_config(path: str | Path, **overrides: Any) -> LLMConfig:
    """Read a YAML config; unknown keys are errors that name the key and the valid ones."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist; see training/configs/llm-*.yaml")
    data = yaml.safe_load(p.read_text()) or {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    llm = data.pop("llm", None) or {}
    valid = {f.name for f in fields(LLMSection)}
    bad = set(llm) - valid
    if bad:
        raise ConfigError(f"{p}: unknown key(s) {sorted(bad)} in section 'llm'; valid: {sorted(valid)}")
    return LLMConfig(_build(data, str(p)), LLMSection(**llm))


# --------------------------------------------------------------------------------------------- simulate
def _reason(dist: float, n_target: int, best: float | None) -> str:
    where = "At" if dist < 0.02 else ("Near" if dist < 0.1 else "Away from")
    text = f"{where} the extrapolated optimum (distance {dist:.2f})."
    if n_target:
        text += f" {n_target} target runs so far, best {best:.5g}."
    return text


def simulate_text(specs: list[ExperimentSpec], cfg: LLMConfig, *, progress: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Expert trajectories as text records (see the module docstring).

    The experts and their episodes are those of :func:`training.simulate.run_experts`; states where every
    queried row was already run have no hindsight label and are not recorded.
    """
    settings = cfg.prompt
    records: list[dict[str, Any]] = []
    def visit(v: Visit) -> None:
        st, cell, obs = v.state, v.cell, v.obs
        if st.expert.sum() <= 0:
            return
        space = obs.space
        user = render_prompt(obs.history, space, obs.target.fidelity, settings=settings, hint=space.from_unit(st.enc.extrap))
        tgt = [t for t in obs.history.trials if t.fidelity == obs.target.fidelity and t.value is not None]
        best = None if not tgt else space.sign * min(space.sign * float(t.value) for t in tgt)  # type: ignore[arg-type]

        def answer(row: int) -> str:
            dist = float(np.sqrt(np.mean((cell.unit[row] - st.enc.extrap) ** 2)))
            return render_answer(cell.configs[row], space, predicted=float(cell.values[row]),
                                 reason=_reason(dist, len(tgt), best), digits=settings.digits)

        label_row = int(st.rows[int(np.argmax(st.expert))])
        act_row = v.row
        if act_row is None:  # the transfer expert: the first row with its configuration
            key = space.config_key(v.action)
            act_row = next((i for i, c in enumerate(cell.configs) if space.config_key(c) == key), label_row)
        records.append({"source": v.spec.source, "episode": f"{v.spec_index}:{v.episode}", "expert": v.expert,
                        "user": user, "label": answer(label_row), "acted": answer(act_row)})

    summary: dict[str, Any] = run_experts(specs, cfg.pipeline, visit, stream=12, progress=progress)
    return records, {"states": len(records), **summary}


# --------------------------------------------------------------------------------------------- tokenizer / model
def build_tokenizer(texts: Sequence[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` (no download), wrapped for transformers, with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = [*SPECIALS.values(), *ROLE_TOKENS]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIALS, additional_special_tokens=ROLE_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def new_tiny_model(tokenizer: Any, s: LLMSection) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    conf = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=s.hidden_size, intermediate_size=s.intermediate_size,
        num_hidden_layers=s.num_layers, num_attention_heads=s.num_heads, num_key_value_heads=s.num_heads,
        max_position_embeddings=s.max_seq_len, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(conf)


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _examples(records: Sequence[dict[str, Any]], tokenizer: Any, answer_key: str, max_len: int,
              *, answer_only: bool) -> tuple[list[tuple[list[int], int]], int]:
    """(token ids, index of the first answer token) per record; records longer than ``max_len`` are dropped."""
    out, dropped = [], 0
    eos = tokenizer.eos_token or ""
    for r in records:
        prompt = chat_text(tokenizer, r["user"])
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tokenizer(r[answer_key] + eos, add_special_tokens=False)["input_ids"]
        ids = p_ids + a_ids
        if len(ids) > max_len:
            dropped += 1
            continue
        out.append((ids, len(p_ids) if answer_only else 1))
    return out, dropped


def _batches(examples: list[tuple[list[int], int]], batch_size: int, rng: np.random.Generator) -> list[list[int]]:
    """Index batches of similar length (less padding), in random order."""
    order = np.argsort([len(e[0]) for e in examples], kind="stable")
    chunks = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    rng.shuffle(chunks)  # type: ignore[arg-type]
    return chunks


def _lm_loss(model: Any, examples: list[tuple[list[int], int]], idx: Sequence[int], pad_id: int, device: torch.device) -> torch.Tensor:
    L = max(len(examples[i][0]) for i in idx)
    ids = torch.full((len(idx), L), pad_id, dtype=torch.long)
    labels = torch.full((len(idx), L), -100, dtype=torch.long)
    mask = torch.zeros((len(idx), L), dtype=torch.long)
    for b, i in enumerate(idx):
        seq, start = examples[i]
        ids[b, : len(seq)] = torch.tensor(seq)
        mask[b, : len(seq)] = 1
        labels[b, start : len(seq)] = torch.tensor(seq[start:])
    out = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
    return out.loss  # type: ignore[no-any-return]


@torch.no_grad()
def _eval_loss(model: Any, examples: list[tuple[list[int], int]], pad_id: int, device: torch.device, batch_size: int) -> float:
    if not examples:
        return float("nan")
    model.eval()
    losses, weights = [], []
    for s in range(0, len(examples), batch_size):
        idx = list(range(s, min(s + batch_size, len(examples))))
        n_tok = sum(len(examples[i][0]) - examples[i][1] for i in idx)
        losses.append(float(_lm_loss(model, examples, idx, pad_id, device)) * n_tok)
        weights.append(n_tok)
    return sum(losses) / max(sum(weights), 1)


def _train(model: Any, params: Any, examples: list[tuple[list[int], int]], *, epochs: int, lr: float, batch_size: int,
           max_minutes: float, pad_id: int, seed: int, desc: str, progress: bool) -> dict[str, Any]:
    from tqdm import tqdm

    device = _device()
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps_total = epochs * math.ceil(len(examples) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * max(0.1, 1 - s / max(steps_total, 1)))
    start = time.time()
    curve: list[float] = []
    step = 0
    bar = tqdm(total=steps_total, desc=desc, disable=not progress, mininterval=2.0)
    stopped = False
    for _ in range(epochs):
        for idx in _batches(examples, batch_size, rng):
            model.train()
            loss = _lm_loss(model, examples, idx, pad_id, device)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            curve.append(float(loss))
            step += 1
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{np.mean(curve[-20:]):.3f}")
            if (time.time() - start) / 60 > max_minutes:
                logger.warning("%s: wall-clock cap of %.1f min reached at step %d of %d", desc, max_minutes, step, steps_total)
                stopped = True
                break
        if stopped:
            break
    bar.close()
    model.eval()
    return {"steps": step, "steps_planned": steps_total, "minutes": round((time.time() - start) / 60, 2),
            "loss_first_20": float(np.mean(curve[:20])) if curve else None,
            "loss_last_20": float(np.mean(curve[-20:])) if curve else None}


def _split(records: list[dict[str, Any]], holdout: float, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Hold out whole experiments' states (by source and user text prefix) so the held-out loss is honest."""
    rng = np.random.default_rng([seed, 13])
    groups = sorted({r["group"] for r in records})
    n_hold = int(round(holdout * len(groups)))
    held = set(rng.choice(groups, size=n_hold, replace=False).tolist()) if n_hold else set()
    return [r for r in records if r["group"] not in held], [r for r in records if r["group"] in held]


def pretrain(records: list[dict[str, Any]], tokenizer: Any, cfg: LLMConfig, *, progress: bool = True) -> tuple[Any, dict[str, Any]]:
    """From scratch: a tiny Llama trained on every token of the serialized trajectories (acted answers)."""
    s = cfg.llm
    torch.manual_seed(cfg.pipeline.seed)
    model = new_tiny_model(tokenizer, s).to(_device())
    train, held = _split(records, s.holdout, cfg.pipeline.seed)
    ex, dropped = _examples(train, tokenizer, "acted", s.max_seq_len, answer_only=False)
    ex_held, _ = _examples(held, tokenizer, "label", s.max_seq_len, answer_only=True)
    before = _eval_loss(model, ex_held, tokenizer.pad_token_id, _device(), s.batch_size)
    summary = _train(model, list(model.parameters()), ex, epochs=s.pretrain_epochs, lr=s.pretrain_lr, batch_size=s.batch_size,
                     max_minutes=s.pretrain_max_minutes, pad_id=tokenizer.pad_token_id, seed=cfg.pipeline.seed, desc="pretrain",
                     progress=progress)
    after = _eval_loss(model, ex_held, tokenizer.pad_token_id, _device(), s.batch_size)
    n_params = sum(p.numel() for p in model.parameters())
    summary.update(sequences=len(ex), dropped_too_long=dropped, params=n_params,
                   heldout_answer_loss_before=before, heldout_answer_loss_after=after)
    return model, summary


def distill_lora(base_dir: Path, records: list[dict[str, Any]], cfg: LLMConfig, *, progress: bool = True) -> tuple[Any, Any, dict[str, Any]]:
    """LoRA adapters trained on the hindsight answers (loss on the answer tokens only)."""
    from peft import LoraConfig, get_peft_model

    s = cfg.llm
    agent = TextLLMAgent.from_pretrained(base_dir, dtype=s.dtype)
    tok, model = agent.tokenizer, agent.model
    train, held = _split(records, s.holdout, cfg.pipeline.seed)
    ex, dropped = _examples(train, tok, "label", s.max_seq_len, answer_only=True)
    ex_held, _ = _examples(held, tok, "label", s.max_seq_len, answer_only=True)
    before = _eval_loss(model, ex_held, tok.pad_token_id, agent.device, s.batch_size)
    lcfg = LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=s.lora_dropout, target_modules=s.lora_targets,
                      task_type="CAUSAL_LM", bias="none")
    torch.manual_seed(cfg.pipeline.seed)
    model = get_peft_model(model, lcfg)
    params = [p for p in model.parameters() if p.requires_grad]
    summary = _train(model, params, ex, epochs=s.distill_epochs, lr=s.distill_lr, batch_size=s.batch_size,
                     max_minutes=s.distill_max_minutes, pad_id=tok.pad_token_id, seed=cfg.pipeline.seed + 1, desc="distill",
                     progress=progress)
    after = _eval_loss(model, ex_held, tok.pad_token_id, agent.device, s.batch_size)
    summary.update(sequences=len(ex), dropped_too_long=dropped, trainable_params=sum(p.numel() for p in params),
                   heldout_answer_loss_before=before, heldout_answer_loss_after=after)
    return model, tok, summary


# --------------------------------------------------------------------------------------------- RL
@dataclass
class _TextRecord:
    prompt: list[int]
    answer: list[int]
    skip: bool = False


class TextRLPolicy:
    """:class:`training.rl.RLPolicy` for a causal LM with LoRA: the action is a sampled JSON answer.

    The model must be a ``PeftModel`` holding two adapters: ``default`` (trained) and ``ref`` (the frozen
    distilled adapter, for the KL term). The answer is parsed and repaired, then snapped to the nearest
    untried candidate of the environment; its log-probability is the mean over its tokens.
    """

    def __init__(self, model: Any, tokenizer: Any, *, prompt: PromptSettings, max_new_tokens: int | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        names = set(getattr(model, "peft_config", {}))
        if not {"default", "ref"} <= names:
            raise ValueError(f"TextRLPolicy needs a PeftModel with adapters 'default' and 'ref', got {sorted(names) or 'none'}")
        self.agent = TextLLMAgent(model, tokenizer, settings=LLMAgentSettings(prompt=prompt, max_new_tokens=max_new_tokens))
        self.model.set_adapter("default")
        self._params = [p for n, p in model.named_parameters() if p.requires_grad and ".default." in n]
        if not self._params:
            raise ValueError("the model has no trainable 'default' adapter")

    def parameters(self) -> Any:
        return self._params

    @torch.no_grad()
    def sample(self, obs: Observation, rng: np.random.Generator, temperature: float) -> tuple[dict[str, Any], _TextRecord]:
        space = obs.space
        cands = [obs.candidates[i] for i in obs.untried()]
        hint, ids = self.agent.read(obs.history, space, obs.target.fidelity)
        if ids is None:  # too long for the model (counted in stats.too_long): act on the hint, leave it out of the loss
            return dict(nearest_untaken(CandidateIndex(space, cands), hint, set())), _TextRecord([], [], skip=True)
        ans, _, parsed = self.agent.answer(ids, space, hint, n=1, temperature=temperature, seed=int(rng.integers(1 << 31)))[0]
        action = nearest_untaken(CandidateIndex(space, cands), parsed.params, set())
        return dict(action), _TextRecord(ids, ans or [self.tokenizer.eos_token_id])

    def _logits(self, records: Sequence[_TextRecord]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dev = self.agent.device
        seqs = [r.prompt + r.answer for r in records]
        L = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), L), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), L), dtype=torch.long)
        tgt_mask = torch.zeros((len(seqs), L), dtype=torch.bool)
        for b, (r, s) in enumerate(zip(records, seqs, strict=True)):
            ids[b, : len(s)] = torch.tensor(s)
            mask[b, : len(s)] = 1
            tgt_mask[b, len(r.prompt) : len(s)] = True
        ids, mask, tgt_mask = ids.to(dev), mask.to(dev), tgt_mask.to(dev)
        logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        return logits, ids[:, 1:], tgt_mask[:, 1:]

    def logprob_kl(self, records: Sequence[_TextRecord], temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.eval()  # no dropout: log-probabilities must match the sampling policy
        eos = self.tokenizer.eos_token_id
        records = [_TextRecord([eos], [eos], True) if r.skip else r for r in records]  # zero weight below
        logits, targets, tmask = self._logits(records)
        keep = torch.tensor([not r.skip for r in records], device=tmask.device)
        tmask = tmask & keep[:, None]
        logp = torch.log_softmax(logits / temperature, dim=-1)
        with torch.no_grad():
            self.model.set_adapter("ref")
            ref_logits, _, _ = self._logits(records)
            self.model.set_adapter("default")
            ref_logp = torch.log_softmax(ref_logits / temperature, dim=-1)
        tok_logp = logp.gather(-1, targets[..., None]).squeeze(-1)
        kl_tok = (logp.exp() * (logp - ref_logp)).sum(-1)
        n = tmask.sum(1).clamp(min=1)
        chosen = (tok_logp * tmask).sum(1) / n
        kl = (kl_tok * tmask).sum(1) / n
        return chosen, kl


# --------------------------------------------------------------------------------------------- stages
def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, default=str))


def _read_records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run(cfg: LLMConfig, *, stages: tuple[str, ...] = STAGES, force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run the selected stages; outputs of skipped stages are read from ``out_dir``."""
    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, cfg.pipeline.threads))
    torch.manual_seed(cfg.pipeline.seed)
    _write(out / "config.json", cfg.to_dict())
    summary_path = out / "summary.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    minutes: dict[str, float] = summary.setdefault("minutes_by_stage", {})

    def due(stage: str, done: bool) -> bool:
        return stage in stages and (force or not done)

    def timed(stage: str, t0: float) -> None:
        minutes[stage] = round((time.time() - t0) / 60, 2)
        _write(summary_path, summary)

    # curate
    cur = out / "curate.json"
    if due("curate", cur.exists()):
        t0 = time.time()
        specs = curate(cfg.pipeline)
        _write(cur, {"experiments": [s.to_dict() for s in specs]})
        summary["curate"] = {"experiments": len(specs)}
        timed("curate", t0)
    specs = [ExperimentSpec.from_dict(d) for d in json.loads(cur.read_text())["experiments"]] if cur.exists() else []
    # simulate
    sim_path = out / "text_states.jsonl"
    if due("simulate", sim_path.exists()):
        t0 = time.time()
        records, sim_summary = simulate_text(specs, cfg, progress=progress)
        sim_path.write_text("".join(json.dumps(r) + "\n" for r in records))
        summary["simulate"] = sim_summary
        timed("simulate", t0)
    records = _read_records(sim_path) if sim_path.exists() else []
    for r in records:  # the states of one episode stay together in the held-out split
        r["group"] = r["episode"]
    # tokenizer + pretrain (from scratch) or a given base model
    if cfg.llm.base_model:
        base_dir = Path(cfg.llm.base_model)
    else:
        base_dir = out / "base"
        if due("tokenizer", (out / "tokenizer" / "tokenizer.json").exists()):
            t0 = time.time()
            texts = [r["user"] + r["acted"] for r in records] + [r["label"] for r in records]
            tok = build_tokenizer(texts, cfg.llm.vocab_size)
            tok.save_pretrained(str(out / "tokenizer"))
            sample = [len(tok(chat_text(tok, r["user"]) + r["label"])["input_ids"]) for r in records[:2000]]
            summary["tokenizer"] = {"vocab": len(tok), "median_tokens": float(np.median(sample)) if sample else None,
                                    "max_tokens": max(sample, default=0)}
            timed("tokenizer", t0)
        if due("pretrain", (base_dir / "config.json").exists()):
            from transformers import AutoTokenizer

            t0 = time.time()
            tok = AutoTokenizer.from_pretrained(str(out / "tokenizer"), local_files_only=True)
            model, pre = pretrain(records, tok, cfg, progress=progress)
            model.save_pretrained(str(base_dir))
            tok.save_pretrained(str(base_dir))
            summary["pretrain"] = pre
            timed("pretrain", t0)
    # distill
    distilled = out / "adapter-distilled"
    if due("distill", (distilled / "adapter_config.json").exists()):
        t0 = time.time()
        model, tok, dsum = distill_lora(base_dir, records, cfg, progress=progress)
        model.save_pretrained(str(distilled))
        summary["distill"] = dsum
        timed("distill", t0)
    # rl
    final = out / "adapter-rl"
    if due("rl", (final / "adapter_config.json").exists()) and distilled.exists():
        from peft import PeftModel

        t0 = time.time()
        base = TextLLMAgent.from_pretrained(base_dir, dtype=cfg.llm.dtype)
        model = PeftModel.from_pretrained(base.model, str(distilled), adapter_name="default", is_trainable=True)
        model.load_adapter(str(distilled), adapter_name="ref", is_trainable=False)
        model.set_adapter("default")
        policy = TextRLPolicy(model, base.tokenizer, prompt=cfg.prompt)
        rl = grpo(policy, specs, cfg.pipeline, progress=progress)
        model.save_pretrained(str(final), selected_adapters=["default"])
        summary["rl"] = {**{k: v for k, v in rl.items() if k != "curve"}, "answers": policy.agent.stats.to_dict()}
        _write(out / "rl_curve.json", rl["curve"])
        timed("rl", t0)
    # export
    if "export" in stages:
        settings = LLMAgentSettings(prompt=cfg.prompt)
        meta = {"config": cfg.pipeline.name, "trained_by": "training.llm"}
        for name, adapter in (("agent", final), ("agent-distilled", distilled)):
            if (adapter / "adapter_config.json").exists():
                write_llm_checkpoint(out / name, base=base_dir, adapter=adapter, settings=settings, meta={**meta, "stage": name})
    summary["minutes_total"] = round(sum(minutes.values()), 2)
    _write(summary_path, summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="YAML config (training/configs/llm-tiny.yaml, llm-local.yaml)")
    ap.add_argument("--out", default=None, help="override out_dir")
    ap.add_argument("--base-model", default=None, help="override llm.base_model (a local model folder)")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    ap.add_argument("--force", action="store_true", help="rerun the selected stages even if outputs exist")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_llm_config(args.config, out_dir=args.out)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.base_model:
        cfg.llm.base_model = args.base_model
    try:
        stages = parse_stages(args.stages, STAGES)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    summary = run(cfg, stages=stages, force=args.force, progress=not args.no_progress)
    print(json.dumps(summary, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
