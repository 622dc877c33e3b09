"""Recipe for ``nanogrpo-v2``: GRPO post-training of tiny policies on 3-digit addition with carries.

``nanogrpo-v1`` (2-digit addition, 20 updates, a 3x3x3x2 grid) carried no signal: every method found its
optimum at once and the optimum did not move with size. This version makes the hyperparameters matter.

What it does, top to bottom:

1. Task. Prompts ``<bos>ABC+DEF=`` (operands 000-999, zero padded), answers the 4-digit zero-padded sum and
   ``<eos>``, e.g. ``<bos>457+068=`` -> ``0525<eos>``. 14-symbol character tokenizer. 512 of the 10^6
   operand pairs (seeded draw) are held out for evaluation; every other pair can be a training prompt.
2. Base policies, one per size, trained ONCE and reused by every run of that size:
   a. pretraining: next-token loss on every position of a corpus of written-out sums ``ABC+DEF=SSSS``
      in which ``corpus_carry_error`` (40%) of the sums drop every carry (457+068 -> 0415): the model
      learns the format and a wrong habit next to the right one;
   b. supervised fine-tuning: loss on the answer only, a short run on demonstrations whose
      ``sft_carry_error`` (20%) still drop the carries.
   Each base is an imperfect policy (see ``base.jsonl``: pass@1 well below 1) that GRPO can improve.
3. Design shared by every size: ``n_configs`` configurations from a scrambled Sobol sequence (seed fixed)
   over five hyperparameters: learning rate (log, 1e-5 to 1e-2, wide enough to destroy the policy),
   KL coefficient (0 for a fifth of the design, else log 1e-3 to 1), group size G in {2, 4, 8, 16},
   sampling temperature (0.4 to 1.4) and ratio clip range (0.05 to 0.5). Values are rounded to three
   significant figures, so the table's configurations are exactly the design. A fixed subset of
   ``n_repeat`` configurations is run again with seed 1 to measure run-to-run noise.
4. Each run: GRPO (``_grpo.py``) from the size's base, the base frozen as the KL reference; every update
   samples 64 completions (64 / G prompts x G), takes ``inner_steps`` (2) AdamW passes over them (so the
   clip binds), exact-match reward. The policy is evaluated after each of ``eval_at`` updates (40 and 160):
   the second fidelity axis, ``rl_updates``, costs nothing extra to record. Objective: exact-match pass@1
   on the 512 held-out prompts, sampled at temperature 1.0, 2 samples per prompt (maximise); greedy accuracy
   is kept as a column. Cost: CPU seconds of the updates up to that evaluation.
5. One JSON line per finished run in ``<out>/runs.jsonl`` (resumable), base policies in ``base.jsonl``
   (weights in ``runs/nanogrpo_v2/``, git-ignored); ``--finalize`` (run at the end) writes ``table.csv``
   (one row per run and evaluation point) and ``metadata.json``.

Usage::

    nohup nice -n 10 .venv/bin/python gym_data/recipes/nanogrpo_v2.py > /tmp/nanogrpo_v2.log 2>&1 &
    .venv/bin/python gym_data/recipes/nanogrpo_v2.py --toy --out /tmp/toy --table-dir /tmp/toy/table
    .venv/bin/python gym_data/recipes/nanogrpo_v2.py --sizes xs --limit 8   # a pilot: 8 configs of one size
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _nano_common import (  # noqa: E402
    RunLog,
    Timer,
    config_hash,
    limit_threads,
    run_grid,
    seed_noise,
    software_versions,
    write_table,
)

ROOT = Path(__file__).resolve().parents[2]
TASK_ID = "nanogrpo-v2"
SCHEMA_VERSION = 1
CHARS = "0123456789+="
EOS_ID, BOS_ID, VOCAB = len(CHARS), len(CHARS) + 1, len(CHARS) + 2
PROMPT_LEN = 9  # <bos> A B C + D E F =
ANSWER_LEN = 5  # four digits and <eos>
GROUP_SIZES = (2, 4, 8, 16)


# ------------------------------------------------------------------------------------------------ task
def encode(a: Any, b: Any, s: Any) -> Any:
    """``(n, 9)`` prompt ids and ``(n, 5)`` answer ids for operand tensors ``a``, ``b`` and sums ``s``.

    The sum is written least significant digit first (457 + 068 = 525 -> ``5250<eos>``), the order in
    which the carries are computed, so a causal model can learn the task at this size.
    """
    import torch

    def digits(x: Any, n: int, *, reverse: bool = False) -> Any:
        order = range(n) if reverse else range(n - 1, -1, -1)
        return torch.stack([(x // 10**k) % 10 for k in order], dim=1)

    n = len(a)
    plus = torch.full((n, 1), CHARS.index("+"), dtype=torch.long)
    eq = torch.full((n, 1), CHARS.index("="), dtype=torch.long)
    bos = torch.full((n, 1), BOS_ID, dtype=torch.long)
    prompts = torch.cat([bos, digits(a, 3), plus, digits(b, 3), eq], dim=1)
    answers = torch.cat([digits(s, 4, reverse=True), torch.full((n, 1), EOS_ID, dtype=torch.long)], dim=1)
    return prompts, answers


def carry_dropped(a: Any, b: Any) -> Any:
    """The sums with every carry dropped, digit by digit (457 + 068 -> 415); works on ints and tensors."""
    return sum(((a // 10**k + b // 10**k) % 10) * 10**k for k in range(3))


def eval_pairs(n: int = 512, seed: int = 1234) -> tuple[Any, Any]:
    """The held-out operand pairs (fixed by ``seed``); training draws reject them."""
    import torch

    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(1_000_000, generator=g)[:n]
    return idx // 1000, idx % 1000


class PairSampler:
    """Random training operand pairs, never one of the held-out pairs."""

    def __init__(self, n_eval: int, seed: int) -> None:
        import torch

        a, b = eval_pairs(n_eval)
        self.held = set((a * 1000 + b).tolist())
        self.gen = torch.Generator().manual_seed(seed)

    def draw(self, n: int, *, mixed: bool = False) -> tuple[Any, Any]:
        """``n`` pairs; ``mixed`` draws each operand below 10, 100 or 1000 with equal odds (easy sums too)."""
        import torch

        out: list[int] = []
        while len(out) < n:
            a = torch.randint(0, 1000, (2 * n,), generator=self.gen)
            b = torch.randint(0, 1000, (2 * n,), generator=self.gen)
            if mixed:
                a = a % 10 ** torch.randint(1, 4, (2 * n,), generator=self.gen)
                b = b % 10 ** torch.randint(1, 4, (2 * n,), generator=self.gen)
            out.extend(c for c in (a * 1000 + b).tolist() if c not in self.held)
        t = torch.tensor(out[:n])
        return t // 1000, t % 1000


def noisy_sums(a: Any, b: Any, error: float, gen: Any) -> Any:
    """True sums, except that an ``error`` share of them drop every carry."""
    import torch

    flip = torch.rand(len(a), generator=gen) < error
    return torch.where(flip, carry_dropped(a, b), a + b)


# ------------------------------------------------------------------------------------------------ model
@dataclass(frozen=True)
class PolicySize:
    """One policy size (a fidelity level)."""

    name: str
    d_model: int
    n_layers: int
    n_heads: int
    ffn: int


@dataclass
class Design:
    """Sizes x a Sobol design of five GRPO hyperparameters x evaluation points, with repeat seeds."""

    sizes: list[PolicySize] = field(default_factory=lambda: [
        PolicySize("xs", 32, 2, 2, 96),
        PolicySize("s", 48, 2, 4, 128),
        PolicySize("m", 64, 3, 4, 192),
        PolicySize("l", 96, 3, 4, 288),
    ])
    n_configs: int = 32  # a power of 2 keeps the Sobol points balanced
    n_repeat: int = 8
    design_seed: int = 2026
    lr_range: tuple[float, float] = (1e-5, 1e-2)
    kl_zero_share: float = 0.2
    kl_range: tuple[float, float] = (1e-3, 1.0)
    temperature_range: tuple[float, float] = (0.4, 1.4)
    clip_range: tuple[float, float] = (0.05, 0.5)
    eval_at: tuple[int, ...] = (40, 160)
    completions_per_step: int = 64
    inner_steps: int = 2
    pretrain_steps: int = 6000
    pretrain_lr: float = 3e-3
    corpus_carry_error: float = 0.4
    sft_steps: int = 200
    sft_lr: float = 1e-3
    sft_carry_error: float = 0.2
    batch: int = 64
    n_eval: int = 512
    eval_temperature: float = 1.0
    eval_k: int = 2

    @classmethod
    def toy(cls) -> Design:
        return cls(sizes=[PolicySize("toy", 16, 1, 2, 32)], n_configs=3, n_repeat=1, eval_at=(2, 3),
                   completions_per_step=16, pretrain_steps=20, sft_steps=5, n_eval=32, eval_k=1)


def _sig3(x: float) -> float:
    return float(f"{x:.3g}")


def configurations(d: Design) -> list[dict[str, Any]]:
    """The shared design: ``d.n_configs`` configurations (Sobol points mapped to the five ranges)."""
    import warnings

    from scipy.stats import qmc

    with warnings.catch_warnings():  # the toy design's 3 points are not a power of 2; that is fine there
        warnings.simplefilter("ignore", UserWarning)
        u = qmc.Sobol(d=5, scramble=True, seed=d.design_seed).random(d.n_configs)
    out = []
    for i, (ul, uk, ug, ut, uc) in enumerate(u):
        lo, hi = (math.log10(v) for v in d.lr_range)
        if uk < d.kl_zero_share:
            kl = 0.0
        else:
            klo, khi = (math.log10(v) for v in d.kl_range)
            kl = _sig3(10 ** (klo + (khi - klo) * (uk - d.kl_zero_share) / (1 - d.kl_zero_share)))
        out.append({
            "config": i,
            "lr": _sig3(10 ** (lo + (hi - lo) * ul)),
            "kl_coef": kl,
            "group_size": GROUP_SIZES[min(int(ug * len(GROUP_SIZES)), len(GROUP_SIZES) - 1)],
            "temperature": _sig3(d.temperature_range[0] + (d.temperature_range[1] - d.temperature_range[0]) * ut),
            "clip_eps": _sig3(d.clip_range[0] + (d.clip_range[1] - d.clip_range[0]) * uc),
        })
    return out


def build_policy(size: PolicySize, seed: int) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=size.d_model, intermediate_size=size.ffn,
                      num_hidden_layers=size.n_layers, num_attention_heads=size.n_heads,
                      num_key_value_heads=size.n_heads, max_position_embeddings=PROMPT_LEN + ANSWER_LEN,
                      tie_word_embeddings=True, bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=None)
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)


def n_params_of(model: Any) -> int:
    """Non-embedding parameters (the embedding is tied with the output head)."""
    return sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()


def accuracy(model: Any, prompts: Any, answers: Any, *, temperature: float, k: int, seed: int) -> float:
    """Exact-match accuracy (four digits and ``<eos>``) over ``k`` answers per prompt; greedy at 0."""
    import torch
    from _grpo import sample

    model.eval()
    gen = torch.Generator().manual_seed(seed)
    p, y = prompts.repeat(k, 1), answers.repeat(k, 1)
    out = torch.cat([sample(model, chunk, ANSWER_LEN, temperature=temperature, generator=gen)
                     for chunk in p.split(512)])
    return float((out[:, PROMPT_LEN:] == y).all(dim=1).float().mean())


def evaluate(model: Any, d: Design) -> tuple[float, float]:
    """(sampled pass@1 at ``d.eval_temperature`` over ``d.eval_k`` samples, greedy accuracy)."""
    a, b = eval_pairs(d.n_eval)
    p, y = encode(a, b, a + b)
    return (accuracy(model, p, y, temperature=d.eval_temperature, k=d.eval_k, seed=99),
            accuracy(model, p, y, temperature=0.0, k=1, seed=0))


# --------------------------------------------------------------------------------------------- base
def _train(model: Any, steps: int, lr: float, batch_fn: Any, *, answer_only: bool) -> float:
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    model.train()
    loss = torch.zeros(())
    for _ in range(steps):
        p, y = batch_fn()
        x = torch.cat([p, y], dim=1)
        labels = x.clone()
        labels[:, :1] = -100  # the <bos> is never predicted
        if answer_only:
            labels[:, :PROMPT_LEN] = -100
        loss = model(input_ids=x, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    return float(loss.detach())


def train_base(size: PolicySize, d: Design, work: Path, log: RunLog) -> tuple[Path, dict[str, Any]]:
    """Pretraining then SFT of one size's base policy, once; later calls load the saved weights."""
    import torch

    key = config_hash({"size": asdict(size), **{k: getattr(d, k) for k in (
        "pretrain_steps", "pretrain_lr", "corpus_carry_error", "sft_steps", "sft_lr", "sft_carry_error",
        "batch", "n_eval")}, "v": 2})
    run_id = f"base-{size.name}-{key}"
    path = work / f"{run_id}.pt"
    prior = [r for r in log.records() if r["run_id"] == run_id]
    if path.exists() and prior:
        return path, prior[-1]
    pairs = PairSampler(d.n_eval, seed=7)
    gen = torch.Generator().manual_seed(8)

    def corpus() -> tuple[Any, Any]:
        a, b = pairs.draw(d.batch, mixed=True)
        return encode(a, b, noisy_sums(a, b, d.corpus_carry_error, gen))

    def demos() -> tuple[Any, Any]:
        a, b = pairs.draw(d.batch)
        return encode(a, b, noisy_sums(a, b, d.sft_carry_error, gen))

    model = build_policy(size, seed=0)
    with Timer() as t:
        pre_loss = _train(model, d.pretrain_steps, d.pretrain_lr, corpus, answer_only=False)
        sft_loss = _train(model, d.sft_steps, d.sft_lr, demos, answer_only=True)
    acc, greedy = evaluate(model, d)
    work.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    rec = {"run_id": run_id, "size": size.name, "n_params": n_params_of(model), "d_model": size.d_model,
           "n_layers": size.n_layers, "pretrain_steps": d.pretrain_steps, "sft_steps": d.sft_steps,
           "final_pretrain_loss": pre_loss, "final_sft_loss": sft_loss, "base_accuracy": acc,
           "base_greedy_accuracy": greedy, "base_cpu_s": t.cpu, "base_wall_s": t.wall,
           "software": software_versions(), "checkpoint": path.name}
    log.append(rec)
    return path, rec


# ---------------------------------------------------------------------------------------------- one run
def grpo_one(job: dict[str, Any], d: Design, bases: dict[str, tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """GRPO from the size's base with one configuration; held-out accuracy at every ``d.eval_at``."""
    import torch
    from _grpo import completion_mask, group_advantages, grpo_loss, sample, sequence_logprobs

    size = next(s for s in d.sizes if s.name == job["size"])
    path, base = bases[size.name]
    policy = build_policy(size, seed=0)
    policy.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    ref = copy.deepcopy(policy).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    g = job["group_size"]
    n_prompts = d.completions_per_step // g
    opt = torch.optim.AdamW(policy.parameters(), lr=job["lr"], betas=(0.9, 0.99), weight_decay=0.0)
    pairs = PairSampler(d.n_eval, seed=1000 + job["seed"])
    gen = torch.Generator().manual_seed(2000 + job["seed"])
    torch.manual_seed(job["seed"])
    evals: list[dict[str, Any]] = []
    rewards: list[float] = []
    kls: list[float] = []
    clip_fracs: list[float] = []
    train_cpu = 0.0
    for step in range(1, max(d.eval_at) + 1):
        with Timer() as t:
            a, b = pairs.draw(n_prompts)
            p, y = encode(a, b, a + b)
            p, y = p.repeat_interleave(g, dim=0), y.repeat_interleave(g, dim=0)
            policy.eval()
            seq = sample(policy, p, ANSWER_LEN, temperature=job["temperature"], generator=gen)
            comp = seq[:, PROMPT_LEN:]
            reward = (comp == y).all(dim=1).float()
            adv = group_advantages(reward, g)
            mask = completion_mask(comp, EOS_ID)
            with torch.no_grad():
                ref_logp = sequence_logprobs(ref, seq, PROMPT_LEN)
                # the sampling policy's log-probs at the sampling temperature's logits would differ; the
                # ratio is taken at temperature 1, as the policy is trained at temperature 1
                old_logp = sequence_logprobs(policy, seq, PROMPT_LEN)
            policy.train()
            for _ in range(d.inner_steps):
                logp = sequence_logprobs(policy, seq, PROMPT_LEN)
                loss, info = grpo_loss(logp, old_logp, ref_logp, adv, mask, beta=job["kl_coef"],
                                       clip_eps=job["clip_eps"])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
                opt.step()
        train_cpu += t.cpu
        rewards.append(float(reward.mean()))
        kls.append(info["kl"] if math.isfinite(info["kl"]) else float("inf"))
        clip_fracs.append(info["clip_frac"])
        if step in d.eval_at:
            with Timer() as te:
                acc, greedy = evaluate(policy, d)
            k = max(1, step // 10)
            evals.append({"rl_updates": step, "accuracy": acc, "greedy_accuracy": greedy,
                          "train_cpu_s": train_cpu, "eval_cpu_s": te.cpu,
                          "reward_last": sum(rewards[-k:]) / k, "kl_last": kls[-1],
                          "clip_frac_mean": sum(clip_fracs[-k:]) / k})
    return {"n_params": base["n_params"], "base_accuracy": base["base_accuracy"],
            "base_greedy_accuracy": base["base_greedy_accuracy"], "prompts_per_step": n_prompts,
            "reward_first": sum(rewards[:5]) / 5 if len(rewards) >= 5 else rewards[0], "evals": evals}


# ------------------------------------------------------------------------------------------------ grid
def make_jobs(d: Design, sizes: list[str] | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    configs = configurations(d)[:limit]
    repeat = {c["config"] for c in configs[:: max(1, len(configs) // max(1, d.n_repeat))][: d.n_repeat]}
    jobs = []
    for size in d.sizes:
        if sizes and size.name not in sizes:
            continue
        for c in configs:
            for seed in [0] + ([1] if c["config"] in repeat else []):
                jobs.append({"run_id": f"{size.name}-c{c['config']:02d}-s{seed}", "size": size.name,
                             "d_model": size.d_model, "n_layers": size.n_layers, **c, "seed": seed})
    order = {s.name: i for i, s in enumerate(d.sizes)}
    return sorted(jobs, key=lambda j: (order[j["size"]], j["seed"], j["config"]))


COLS = ["size", "n_params", "rl_updates", "config", "lr", "kl_coef", "group_size", "temperature", "clip_eps",
        "seed", "accuracy", "greedy_accuracy", "base_accuracy", "base_greedy_accuracy", "train_cpu_s",
        "reward_first", "reward_last", "kl_last", "clip_frac_mean", "d_model", "n_layers"]


def table_rows(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for r in recs:
        for e in r["evals"]:
            row = {**{c: r[c] for c in COLS if c in r}, **e}
            for c in ("train_cpu_s", "reward_first", "reward_last", "kl_last", "clip_frac_mean"):
                row[c] = round(float(row[c]), 4) if math.isfinite(float(row[c])) else "inf"
            rows.append({c: row[c] for c in COLS})
    return sorted(rows, key=lambda r: (r["n_params"], r["rl_updates"], r["config"], r["seed"]))


def finalize(out: Path, table_dir: Path, d: Design) -> dict[str, Any]:
    """Write ``table.csv`` and ``metadata.json`` from ``runs.jsonl`` and ``base.jsonl``."""
    recs = RunLog(out / "runs.jsonl").records()
    bases = RunLog(out / "base.jsonl").records()
    if not recs:
        raise RuntimeError(f"no finished runs in {out / 'runs.jsonl'}; run the design first")
    rows = table_rows(recs)
    meta = _metadata(rows, recs, bases, d)
    write_table(out, table_dir, COLS, rows, meta)
    return meta


def _cells(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    cells: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["seed"] != 0:
            continue
        c = cells.setdefault(f"{r['size']}@{r['rl_updates']}", {"n_params": r["n_params"],
                                                                "rl_updates": r["rl_updates"],
                                                                "base_accuracy": r["base_accuracy"],
                                                                "accs": [], "best": None})
        c["accs"].append(r["accuracy"])
        if c["best"] is None or r["accuracy"] > c["best"]["accuracy"]:
            c["best"] = {k: r[k] for k in ("config", "lr", "kl_coef", "group_size", "temperature", "clip_eps",
                                           "accuracy")}
    for c in cells.values():
        accs = sorted(c.pop("accs"), reverse=True)
        c["runs"] = len(accs)
        # p90: the outcome 90% of the way down from the best (a config worse than 90% of the design)
        c["p90"] = accs[min(len(accs) - 1, int(0.9 * len(accs)))]
        c["p90_gap"] = accs[0] - c["p90"]
        c["median"] = accs[len(accs) // 2]
    return cells


def _metadata(rows: list[dict[str, Any]], recs: list[dict[str, Any]], bases: list[dict[str, Any]],
              d: Design) -> dict[str, Any]:
    noise: dict[str, Any] = {}
    for upd in d.eval_at:
        by: dict[tuple[Any, ...], dict[int, float]] = {}
        for r in rows:
            if r["rl_updates"] == upd:
                by.setdefault((r["size"], r["config"]), {})[r["seed"]] = r["accuracy"]
        noise[f"rl_updates={upd}"] = seed_noise(by)
    base_cpu = sum(b["base_cpu_s"] for b in bases)
    configs = configurations(d)
    return {
        "task_id": TASK_ID,
        "schema_version": SCHEMA_VERSION,
        "objective": "accuracy",
        "direction": "maximize",
        "cost_column": "train_cpu_s",
        "cost_unit": "CPU seconds of the GRPO updates up to the evaluation (1 thread, measured; base training excluded)",
        "fidelity": ["n_params", "rl_updates"],
        "params": {k: sorted({c[k] for c in configs}) for k in ("lr", "kl_coef", "group_size", "temperature",
                                                              "clip_eps")},
        "table_seed": 0,
        "licence": "Apache-2.0 (generated by the autollm-sampler project)",
        "citation": "autollm-sampler project, nanogrpo-v2 (gym_data/recipes/nanogrpo_v2.py)",
        "how_made": ("gym_data/recipes/nanogrpo_v2.py: char-level LlamaForCausalLM per size, pretrained on a corpus "
                     f"of written-out 3-digit sums ({d.corpus_carry_error:.0%} with carries dropped), then "
                     f"SFT on answers ({d.sft_carry_error:.0%} carry-dropped); then GRPO with an exact-match "
                     "reward from that base, over a Sobol design of 5 hyperparameters shared by every size; "
                     "1 torch thread, niced, shared 2-core CPU"),
        "description": ("GRPO post-training of tiny policies on 3-digit addition: lr x KL coef x group size x "
                        "temperature x clip range per (policy size, RL updates); objective = exact-match pass@1 "
                        f"on {d.n_eval} held-out prompts sampled at temperature {d.eval_temperature} "
                        f"({d.eval_k} samples per prompt), maximise; greedy accuracy is kept as a column."),
        "design": {**asdict(d), "configurations": configs},
        "base_policies": [{k: b[k] for k in ("size", "n_params", "d_model", "n_layers", "base_accuracy",
                                             "base_greedy_accuracy", "final_pretrain_loss", "base_cpu_s")}
                          for b in bases],
        "n_runs": len(recs),
        "n_rows": len(rows),
        "compute": {"grpo_train_cpu_s": round(sum(r["evals"][-1]["train_cpu_s"] for r in recs), 1),
                    "total_cpu_s": round(sum(r["total_cpu_s"] for r in recs) + base_cpu, 1),
                    "total_wall_s": round(sum(r["total_wall_s"] for r in recs)
                                          + sum(b["base_wall_s"] for b in bases), 1),
                    "base_cpu_s": round(base_cpu, 1)},
        "noise": noise,
        "cells": _cells(rows),
        "software": recs[-1]["software"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "gym_data" / "nanogrpo_v2",
                    help="where runs.jsonl, base.jsonl and metadata.json go")
    ap.add_argument("--table-dir", type=Path,
                    default=ROOT / "autollm_sampler" / "gym" / "tables" / "nanogrpo_v2",
                    help="where the finished table.csv and metadata.json go (package data)")
    ap.add_argument("--work", type=Path, default=None,
                    help="where base-policy checkpoints go (default: runs/nanogrpo_v2, git-ignored)")
    ap.add_argument("--toy", action="store_true", help="a seconds-long design that proves the recipe end to end")
    ap.add_argument("--sizes", nargs="+", default=None, help="only these sizes (a pilot or a part)")
    ap.add_argument("--limit", type=int, default=None, help="only the first N configurations (a pilot)")
    ap.add_argument("--finalize", action="store_true", help="only rebuild table.csv and metadata.json")
    ap.add_argument("--no-finalize", action="store_true", help="run, but do not write the table")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps CPU seconds comparable)")
    args = ap.parse_args(argv)
    limit_threads(args.threads)
    d = Design.toy() if args.toy else Design()
    if args.sizes:
        unknown = set(args.sizes) - {s.name for s in d.sizes}
        if unknown:
            ap.error(f"unknown sizes {sorted(unknown)}; choose from {[s.name for s in d.sizes]}")
    if not args.finalize:
        work = args.work or ROOT / "runs" / "nanogrpo_v2"
        base_log = RunLog(args.out / "base.jsonl")
        bases = {}
        for size in d.sizes:
            if args.sizes and size.name not in args.sizes:
                continue
            bases[size.name] = train_base(size, d, work, base_log)
            rec = bases[size.name][1]
            print(f"[{TASK_ID}] base {size.name}: n_params={rec['n_params']} pass@1={rec['base_accuracy']:.3f} "
                  f"greedy={rec['base_greedy_accuracy']:.3f} ({rec['base_cpu_s']:.0f} CPU-s)",
                  file=sys.stderr, flush=True)
        common = {"software": software_versions(), "design_hash": config_hash(asdict(d))}
        t0 = time.perf_counter()
        n = run_grid(make_jobs(d, args.sizes, args.limit), lambda j: grpo_one(j, d, bases),
                     RunLog(args.out / "runs.jsonl"), desc=TASK_ID, common=common)
        print(f"[{TASK_ID}] ran {n} runs in {time.perf_counter() - t0:.0f}s wall", file=sys.stderr)
    if args.no_finalize:
        return 0
    meta = finalize(args.out, args.table_dir, d)
    print(json.dumps({"n_runs": meta["n_runs"], "compute": meta["compute"], "noise": meta["noise"],
                      "cells": meta["cells"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
