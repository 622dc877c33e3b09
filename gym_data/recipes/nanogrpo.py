"""Recipe for ``nanogrpo-v1``: a GRPO post-training sweep of tiny policies on 2-digit addition.

What it does, top to bottom:

1. Task. Prompts ``<bos>AB+CD=`` (operands 00-99, zero padded), answers the 3-digit zero-padded sum and
   ``<eos>``, e.g. ``<bos>07+58=`` -> ``065<eos>``. A 14-symbol character tokenizer is built right here.
   512 of the 10,000 operand pairs (a fixed permutation, seed 1234) are held out for evaluation; supervised
   pretraining and GRPO prompts come from the other 9,488.
2. Base policies. For every model size a ``transformers`` ``LlamaForCausalLM`` is built from scratch and
   trained with teacher forcing on the answer tokens for the same fixed budget (800 steps x 64 examples),
   ONCE, then saved (``<work>/base-<size>-<hash>.pt``) and reused by every grid point of that size.
   The SFT data carries a planted systematic error: 40% of the targets are the sum with every carry
   dropped (57+68 -> ``015``), so each base policy puts real probability on a wrong habit, as SFT on
   imperfect demonstrations does. GRPO with the exact-match reward can unlearn it; the KL term pulls back
   towards it. (A first pass without the planted error gave a flat table: 20 GRPO updates barely moved a
   cleanly trained policy, and higher learning rates only hurt.)
3. Grid per size (20 GRPO updates per run): learning rate x KL coefficient x group size x sampling temperature (3 x 3 x 3 x 2 = 54),
   seed 0; plus seed 1 for 9 of the 54 configurations (a fixed subset) to measure run-to-run noise.
4. Each run: GRPO (see ``_grpo.py``) from the base policy, with the base as the frozen KL reference, a fixed
   number of updates each on 64 sampled completions (64 / G prompts x G completions, so every run samples
   the same number of completions), AdamW, exact-match reward (1 if the completion is exactly the answer
   and ``<eos>``). Objective: exact-match pass@1 on the 512 held-out prompts, sampled at temperature 1.0
   with 2 samples per prompt (maximise); greedy accuracy is recorded too. (Pilots showed GRPO at this scale
   and length sharpens the sampling distribution, raising sampled accuracy, while greedy accuracy barely
   moves or drops, so sampled pass@1 is the outcome the hyperparameters actually steer.)
5. One JSON line per finished run in ``<out>/runs.jsonl`` (resumable); base policies in ``base.jsonl``
   (their weights in ``runs/nanogrpo/``, git-ignored).
   ``--finalize`` (run at the end) writes ``table.csv`` and ``metadata.json``.

Usage::

    nohup nice -n 10 .venv/bin/python gym_data/recipes/nanogrpo.py > /work/notes/nano_grpo.log 2>&1 &
    .venv/bin/python gym_data/recipes/nanogrpo.py --toy --out /tmp/toy --table-dir /tmp/toy/table
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
TASK_ID = "nanogrpo-v1"
SCHEMA_VERSION = 1


# -------------------------------------------------------------------------------------------- tokenizer
class CharTokenizer:
    """Digits, ``+``, ``=``, ``<eos>`` and ``<bos>``: 14 ids, one per character."""

    chars = "0123456789+="

    def __init__(self) -> None:
        self.eos_id = len(self.chars)
        self.bos_id = len(self.chars) + 1
        self.vocab_size = len(self.chars) + 2
        self._ids = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> list[int]:
        try:
            return [self._ids[c] for c in text]
        except KeyError as exc:
            raise ValueError(f"character {exc.args[0]!r} is not in the vocabulary {self.chars!r}") from None

    def decode(self, ids: list[int]) -> str:
        out = []
        for i in ids:
            if i == self.eos_id:
                break
            out.append(self.chars[i] if i < len(self.chars) else "?")
        return "".join(out)


TOK = CharTokenizer()
PROMPT_LEN = 7  # <bos> A B + C D =
ANSWER_LEN = 4  # three digits and <eos>


def prompt_ids(a: int, b: int) -> list[int]:
    return [TOK.bos_id, *TOK.encode(f"{a:02d}+{b:02d}=")]


def answer_ids(a: int, b: int) -> list[int]:
    return [*TOK.encode(f"{a + b:03d}"), TOK.eos_id]


def no_carry_sum(a: int, b: int) -> int:
    """The sum with every carry dropped (57 + 68 -> 015): the systematic error planted in the SFT data."""
    return ((a // 10 + b // 10) % 10) * 10 + (a % 10 + b % 10) % 10


def sft_batch(pairs: Any, carry_error: float, gen: Any) -> tuple[Any, Any]:
    """Prompts and SFT targets; a ``carry_error`` share of targets is the no-carry sum (when it differs)."""
    import torch

    p, y = encode_batch(pairs)
    flip = torch.rand(len(pairs), generator=gen) < carry_error
    for i in torch.nonzero(flip).flatten().tolist():
        a, b = (int(v) for v in pairs[i])
        y[i] = torch.tensor([*TOK.encode(f"{no_carry_sum(a, b):03d}"), TOK.eos_id])
    return p, y


def split_pairs(n_eval: int = 512, seed: int = 1234) -> tuple[Any, Any]:
    """(train pairs, eval pairs) as ``(n, 2)`` long tensors; disjoint, fixed by ``seed``."""
    import torch

    pairs = torch.tensor([(a, b) for a in range(100) for b in range(100)], dtype=torch.long)
    perm = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))
    return pairs[perm[n_eval:]], pairs[perm[:n_eval]]


def encode_batch(pairs: Any) -> tuple[Any, Any]:
    """Prompt ids ``(n, 7)`` and answer ids ``(n, 4)`` for a tensor of operand pairs."""
    import torch

    p = torch.tensor([prompt_ids(int(a), int(b)) for a, b in pairs.tolist()], dtype=torch.long)
    y = torch.tensor([answer_ids(int(a), int(b)) for a, b in pairs.tolist()], dtype=torch.long)
    return p, y


# ------------------------------------------------------------------------------------------------ model
@dataclass(frozen=True)
class PolicySize:
    """One policy size (a fidelity level) and its supervised pretraining length."""

    name: str
    d_model: int
    n_layers: int
    n_heads: int
    ffn: int
    sft_steps: int


@dataclass
class GRPOGrid:
    """Sizes x (lr x KL coef x group size x temperature), with repeat seeds on a subset."""

    sizes: list[PolicySize] = field(default_factory=lambda: [
        PolicySize("xs", 32, 2, 2, 96, 800),
        PolicySize("s", 48, 2, 4, 128, 800),
        PolicySize("m", 80, 2, 4, 224, 800),
    ])
    lrs: list[float] = field(default_factory=lambda: [3e-5, 1e-4, 3e-4])
    kl_coefs: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0])
    group_sizes: list[int] = field(default_factory=lambda: [4, 8, 16])
    temperatures: list[float] = field(default_factory=lambda: [0.7, 1.0])
    completions_per_step: int = 64
    grpo_steps: int = 20
    clip_eps: float = 0.2
    sft_lr: float = 3e-3
    sft_batch: int = 64
    sft_carry_error: float = 0.4
    n_eval: int = 512
    eval_temperature: float = 1.0
    eval_k: int = 2
    repeat_seeds: list[int] = field(default_factory=lambda: [1])
    repeat_every: int = 6  # seed 1 where the config's grid index % repeat_every == 0 (9 of 54)

    @classmethod
    def toy(cls) -> GRPOGrid:
        return cls(sizes=[PolicySize("toy", 16, 1, 2, 32, 20)], lrs=[1e-3], kl_coefs=[0.05],
                   group_sizes=[2, 4], temperatures=[1.0], completions_per_step=8, grpo_steps=3,
                   n_eval=32, eval_k=1, repeat_every=2)


def build_policy(size: PolicySize, seed: int) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=TOK.vocab_size, hidden_size=size.d_model, intermediate_size=size.ffn,
                      num_hidden_layers=size.n_layers, num_attention_heads=size.n_heads,
                      num_key_value_heads=size.n_heads, max_position_embeddings=PROMPT_LEN + ANSWER_LEN,
                      tie_word_embeddings=True, bos_token_id=TOK.bos_id, eos_token_id=TOK.eos_id,
                      pad_token_id=None)
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)


def n_params_of(model: Any) -> int:
    """Non-embedding parameters (the embedding is tied with the output head)."""
    return sum(p.numel() for p in model.parameters()) - model.get_input_embeddings().weight.numel()


def accuracy(model: Any, prompts: Any, answers: Any, *, temperature: float = 0.0, k: int = 1,
             seed: int = 0) -> float:
    """Exact-match accuracy (all three digits and the ``<eos>``), greedy or sampled.

    With ``temperature > 0`` every prompt is answered ``k`` times and the accuracy is the mean over all
    ``k * len(prompts)`` samples (pass@1 estimated from ``k`` samples).
    """
    import torch
    from _grpo import sample

    model.eval()
    gen = torch.Generator().manual_seed(seed)
    p, y = prompts.repeat(k, 1), answers.repeat(k, 1)
    out = torch.cat([sample(model, chunk, ANSWER_LEN, temperature=temperature, generator=gen)
                     for chunk in p.split(512)])
    return float((out[:, PROMPT_LEN:] == y).all(dim=1).float().mean())


def evaluate(model: Any, grid: GRPOGrid) -> tuple[float, float]:
    """(sampled pass@1 at ``grid.eval_temperature`` over ``grid.eval_k`` samples, greedy accuracy)."""
    _, eval_pairs = split_pairs(grid.n_eval)
    p, y = encode_batch(eval_pairs)
    return (accuracy(model, p, y, temperature=grid.eval_temperature, k=grid.eval_k, seed=99),
            accuracy(model, p, y))


# -------------------------------------------------------------------------------------------- base SFT
def pretrain_base(size: PolicySize, grid: GRPOGrid, work: Path, log: RunLog) -> tuple[Path, dict[str, Any]]:
    """Supervised pretraining of one size's base policy, once; later calls load the saved weights."""
    import torch

    key = config_hash({"size": asdict(size), "lr": grid.sft_lr, "batch": grid.sft_batch,
                       "carry_error": grid.sft_carry_error, "v": 2})
    path = work / f"base-{size.name}-{key}.pt"
    prior = [r for r in log.records() if r["run_id"] == f"base-{size.name}-{key}"]
    if path.exists() and prior:
        return path, prior[-1]
    train_pairs, _ = split_pairs(grid.n_eval)
    model = build_policy(size, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=grid.sft_lr, betas=(0.9, 0.98), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * s / size.sft_steps)))
    gen = torch.Generator().manual_seed(7)
    model.train()
    with Timer() as t:
        for _ in range(size.sft_steps):
            idx = torch.randint(0, len(train_pairs), (grid.sft_batch,), generator=gen)
            p, y = sft_batch(train_pairs[idx], grid.sft_carry_error, gen)
            x = torch.cat([p, y], dim=1)
            labels = x.clone()
            labels[:, :PROMPT_LEN] = -100
            loss = model(input_ids=x, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
    acc, greedy = evaluate(model, grid)
    work.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    rec = {"run_id": f"base-{size.name}-{key}", "size": size.name, "n_params": n_params_of(model),
           "sft_steps": size.sft_steps, "sft_lr": grid.sft_lr, "sft_batch": grid.sft_batch,
           "final_sft_loss": float(loss.detach()), "base_accuracy": acc, "base_greedy_accuracy": greedy, "sft_cpu_s": t.cpu,
           "sft_wall_s": t.wall, "software": software_versions(), "checkpoint": path.name}
    log.append(rec)
    return path, rec


# ---------------------------------------------------------------------------------------------- one run
def grpo_one(job: dict[str, Any], grid: GRPOGrid, bases: dict[str, tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """GRPO from the size's base policy with one grid point; returns held-out accuracy and costs."""
    import torch
    from _grpo import completion_mask, group_advantages, grpo_loss, sample, sequence_logprobs

    size = next(s for s in grid.sizes if s.name == job["size"])
    path, base = bases[size.name]
    policy = build_policy(size, seed=0)
    policy.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    ref = copy.deepcopy(policy).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    train_pairs, _ = split_pairs(grid.n_eval)
    g = job["group_size"]
    n_prompts = grid.completions_per_step // g
    opt = torch.optim.AdamW(policy.parameters(), lr=job["lr"], betas=(0.9, 0.99), weight_decay=0.0)
    gen = torch.Generator().manual_seed(1000 + job["seed"])
    torch.manual_seed(job["seed"])
    rewards_seen: list[float] = []
    kls: list[float] = []
    with Timer() as t:
        for _ in range(grid.grpo_steps):
            idx = torch.randint(0, len(train_pairs), (n_prompts,), generator=gen)
            p, y = encode_batch(train_pairs[idx])
            p, y = p.repeat_interleave(g, dim=0), y.repeat_interleave(g, dim=0)
            policy.eval()
            seq = sample(policy, p, ANSWER_LEN, temperature=job["temperature"], generator=gen)
            comp = seq[:, PROMPT_LEN:]
            reward = (comp == y).all(dim=1).float()
            adv = group_advantages(reward, g)
            mask = completion_mask(comp, TOK.eos_id)
            with torch.no_grad():
                ref_logp = sequence_logprobs(ref, seq, PROMPT_LEN)
            policy.train()
            logp = sequence_logprobs(policy, seq, PROMPT_LEN)
            loss, info = grpo_loss(logp, logp.detach(), ref_logp, adv, mask, beta=job["kl_coef"],
                                   clip_eps=grid.clip_eps)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
            opt.step()
            rewards_seen.append(float(reward.mean()))
            kls.append(info["kl"])
    with Timer() as te:
        acc, greedy = evaluate(policy, grid)
    k = max(1, len(rewards_seen) // 5)
    return {"n_params": base["n_params"], "base_accuracy": base["base_accuracy"], "accuracy": acc,
            "greedy_accuracy": greedy, "base_greedy_accuracy": base["base_greedy_accuracy"], "reward_first": sum(rewards_seen[:k]) / k, "reward_last": sum(rewards_seen[-k:]) / k,
            "kl_last": kls[-1], "grpo_steps": grid.grpo_steps, "prompts_per_step": n_prompts,
            "train_cpu_s": t.cpu, "train_wall_s": t.wall, "eval_cpu_s": te.cpu}


# ------------------------------------------------------------------------------------------------ grid
def make_jobs(grid: GRPOGrid) -> list[dict[str, Any]]:
    jobs = []
    for size in grid.sizes:
        k = 0
        for lr in grid.lrs:
            for kl in grid.kl_coefs:
                for g in grid.group_sizes:
                    for temp in grid.temperatures:
                        seeds = [0] + (grid.repeat_seeds if k % grid.repeat_every == 0 else [])
                        k += 1
                        for seed in seeds:
                            jobs.append({"run_id": f"{size.name}-lr{lr:g}-kl{kl:g}-g{g}-t{temp:g}-s{seed}",
                                         "size": size.name, "d_model": size.d_model, "n_layers": size.n_layers,
                                         "lr": lr, "kl_coef": kl, "group_size": g, "temperature": temp,
                                         "seed": seed})
    order = {s.name: i for i, s in enumerate(grid.sizes)}
    return sorted(jobs, key=lambda j: (order[j["size"]], j["seed"]))


def finalize(out: Path, table_dir: Path, grid: GRPOGrid) -> dict[str, Any]:
    """Write ``table.csv`` (one row per run) and ``metadata.json`` from ``runs.jsonl`` and ``base.jsonl``."""
    recs = RunLog(out / "runs.jsonl").records()
    bases = RunLog(out / "base.jsonl").records()
    if not recs:
        raise RuntimeError(f"no finished runs in {out / 'runs.jsonl'}; run the grid first")
    cols = ["size", "n_params", "lr", "kl_coef", "group_size", "temperature", "seed", "accuracy",
            "base_accuracy", "greedy_accuracy", "base_greedy_accuracy", "train_cpu_s", "reward_first", "reward_last", "d_model", "n_layers"]
    rows = []
    for r in sorted(recs, key=lambda r: (r["n_params"], r["lr"], r["kl_coef"], r["group_size"],
                                         r["temperature"], r["seed"])):
        row = {c: r[c] for c in cols}
        for c in ("train_cpu_s", "reward_first", "reward_last"):
            row[c] = round(row[c], 4)
        rows.append(row)
    meta = _metadata(recs, bases, grid)
    write_table(out, table_dir, cols, rows, meta)
    return meta


def _noise(recs: list[dict[str, Any]]) -> dict[str, Any]:
    by: dict[tuple[Any, ...], dict[int, float]] = {}
    for r in recs:
        key = (r["size"], r["lr"], r["kl_coef"], r["group_size"], r["temperature"])
        by.setdefault(key, {})[r["seed"]] = r["accuracy"]
    return seed_noise(by)


def _metadata(recs: list[dict[str, Any]], bases: list[dict[str, Any]], grid: GRPOGrid) -> dict[str, Any]:
    cells: dict[str, dict[str, Any]] = {}
    for r in recs:
        c = cells.setdefault(r["size"], {"n_params": r["n_params"], "base_accuracy": r["base_accuracy"],
                                         "runs": 0, "train_cpu_s": 0.0, "best": None})
        c["runs"] += 1
        c["train_cpu_s"] = round(c["train_cpu_s"] + r["train_cpu_s"], 2)
        if r["seed"] == 0 and (c["best"] is None or r["accuracy"] > c["best"]["accuracy"]):
            c["best"] = {k: r[k] for k in ("lr", "kl_coef", "group_size", "temperature", "accuracy")}
    sft_cpu = sum(b["sft_cpu_s"] for b in bases)
    return {
        "task_id": TASK_ID,
        "schema_version": SCHEMA_VERSION,
        "objective": "accuracy",
        "direction": "maximize",
        "cost_column": "train_cpu_s",
        "cost_unit": "CPU seconds of the GRPO updates (1 thread, measured; base pretraining excluded)",
        "fidelity": ["n_params"],
        "params": {"lr": grid.lrs, "kl_coef": grid.kl_coefs, "group_size": grid.group_sizes,
                   "temperature": grid.temperatures},
        "table_seed": 0,
        "licence": "Apache-2.0 (generated by the autollm-sampler project)",
        "citation": "autollm-sampler project, nanogrpo-v1 (gym_data/recipes/nanogrpo.py)",
        "how_made": ("gym_data/recipes/nanogrpo.py: char-level LlamaForCausalLM pretrained (supervised) once per "
                     f"size on 2-digit addition whose targets are, {grid.sft_carry_error:.0%} of the time, the "
                     "sum with carries dropped; then GRPO with an exact-match reward from that base; 1 torch "
                     "thread, niced, shared 2-core CPU"),
        "description": ("GRPO post-training of tiny policies on 2-digit addition: lr x KL coef x group size x "
                        "temperature per policy size; objective = exact-match pass@1 on 512 held-out prompts, "
                        f"sampled at temperature {grid.eval_temperature} ({grid.eval_k} samples per prompt), "
                        "maximise; greedy accuracy is kept as an extra column."),
        "grid": asdict(grid),
        "base_policies": [{k: b[k] for k in ("size", "n_params", "sft_steps", "base_accuracy",
                                             "base_greedy_accuracy", "sft_cpu_s")}
                          for b in bases],
        "n_runs": len(recs),
        "compute": {"grpo_train_cpu_s": round(sum(r["train_cpu_s"] for r in recs), 1),
                    "total_cpu_s": round(sum(r["total_cpu_s"] for r in recs) + sft_cpu, 1),
                    "total_wall_s": round(sum(r["total_wall_s"] for r in recs)
                                          + sum(b["sft_wall_s"] for b in bases), 1),
                    "base_sft_cpu_s": round(sft_cpu, 1)},
        "noise": _noise(recs),
        "cells": cells,
        "software": recs[-1]["software"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "gym_data" / "nanogrpo",
                    help="where runs.jsonl, base.jsonl and metadata.json go")
    ap.add_argument("--table-dir", type=Path, default=ROOT / "autollm_sampler" / "gym" / "tables" / "nanogrpo",
                    help="where the finished table.csv and metadata.json go (package data)")
    ap.add_argument("--work", type=Path, default=None,
                    help="where base-policy checkpoints go (default: runs/nanogrpo, git-ignored)")
    ap.add_argument("--toy", action="store_true", help="a seconds-long grid that proves the recipe end to end")
    ap.add_argument("--finalize", action="store_true", help="only rebuild table.csv and metadata.json")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps CPU seconds comparable)")
    args = ap.parse_args(argv)
    limit_threads(args.threads)
    grid = GRPOGrid.toy() if args.toy else GRPOGrid()
    if not args.finalize:
        work = args.work or ROOT / "runs" / "nanogrpo"
        base_log = RunLog(args.out / "base.jsonl")
        bases = {}
        for size in grid.sizes:
            bases[size.name] = pretrain_base(size, grid, work, base_log)
            print(f"[{TASK_ID}] base {size.name}: n_params={bases[size.name][1]['n_params']} "
                  f"accuracy={bases[size.name][1]['base_accuracy']:.3f}", file=sys.stderr, flush=True)
        common = {"software": software_versions(), "grid_hash": config_hash(asdict(grid))}
        t0 = time.perf_counter()
        n = run_grid(make_jobs(grid), lambda j: grpo_one(j, grid, bases), RunLog(args.out / "runs.jsonl"),
                     desc=TASK_ID, common=common)
        print(f"[{TASK_ID}] ran {n} runs in {time.perf_counter() - t0:.0f}s wall", file=sys.stderr)
    meta = finalize(args.out, args.table_dir, grid)
    print(json.dumps({"n_runs": meta["n_runs"], "compute": meta["compute"], "noise": meta["noise"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
