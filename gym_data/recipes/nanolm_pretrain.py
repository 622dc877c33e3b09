"""Recipe for ``nanolm-pretrain-v1``: a learning-rate x batch-size sweep of tiny byte-level causal LMs.

What it does, top to bottom:

1. Corpus. The Python standard library's own top-level ``*.py`` files, read from the running interpreter
   (``sysconfig.get_paths()["stdlib"]``), sorted by name. Every 10th file (sorted index ``i % 10 == 5``) is
   held out for validation. Files are joined with a NUL byte and tokenised as raw bytes (vocabulary 256).
   The exact selection (names, sizes, sha256 of each file) and one corpus hash go to ``corpus.json``.
2. Models. ``transformers.LlamaConfig`` -> ``LlamaForCausalLM``, built from scratch (tied embeddings).
3. Grid. For every (model size, token budget) cell: 8 learning rates (0.0005-0.064, factors of 2) x 5 batch
   sizes (2-32 sequences), seed 0; plus seed 1 for 6 configurations of the central 6 x 5 block (a fixed
   diagonal subset) to measure run-to-run noise.
4. Each run: AdamW (betas 0.9/0.95, weight decay 0.1), linear warmup over 10% of steps then cosine decay
   to 10% of the peak lr, gradient clipping at 1.0, sequence length 64 bytes, random windows from the
   training stream. The objective is the mean next-byte loss (nats) on fixed validation windows.
5. Each finished run appends one JSON line to ``<out>/runs.jsonl`` (resumable). ``--finalize`` (run
   automatically at the end) writes ``table.csv`` and ``metadata.json`` to ``--table-dir``.

Usage::

    nohup nice -n 10 .venv/bin/python gym_data/recipes/nanolm_pretrain.py > /work/notes/nano_pretrain.log 2>&1 &
    .venv/bin/python gym_data/recipes/nanolm_pretrain.py --toy --out /tmp/toy --table-dir /tmp/toy/table
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import sysconfig
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
TASK_ID = "nanolm-pretrain-v1"
SCHEMA_VERSION = 1
UNIFORM_LOSS = math.log(256.0)


@dataclass(frozen=True)
class ModelSize:
    """One model size of the grid (a fidelity level)."""

    name: str
    d_model: int
    n_layers: int
    n_heads: int
    ffn: int


@dataclass
class PretrainGrid:
    """The whole sweep: model sizes x token budgets x (lr x batch size), with repeat seeds on a subset."""

    sizes: list[ModelSize] = field(default_factory=lambda: [
        ModelSize("xs", 24, 2, 2, 64),
        ModelSize("s", 48, 2, 4, 128),
        ModelSize("m", 96, 2, 4, 256),
    ])
    token_budgets: list[int] = field(default_factory=lambda: [16_384, 65_536])
    lrs: list[float] = field(default_factory=lambda: [0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064])
    batch_sizes: list[int] = field(default_factory=lambda: [2, 4, 8, 16, 32])
    seq_len: int = 64
    weight_decay: float = 0.1
    warmup_frac: float = 0.1
    val_windows: int = 96
    repeat_seeds: list[int] = field(default_factory=lambda: [1])
    #: seed 1 runs where (i + j) % repeat_every == 0, i indexing ``repeat_lrs`` and j ``batch_sizes``
    #: (6 configurations of the central 6 x 5 block; the two outer learning rates were added later, after
    #: the first pass put some optima on the edge of 0.001-0.032, and have no repeats).
    repeat_lrs: list[float] = field(default_factory=lambda: [0.001, 0.002, 0.004, 0.008, 0.016, 0.032])
    repeat_every: int = 5

    @classmethod
    def toy(cls) -> PretrainGrid:
        return cls(sizes=[ModelSize("toy", 16, 1, 2, 32)], token_budgets=[2_048], lrs=[0.003, 0.03],
                   batch_sizes=[4, 8], seq_len=32, val_windows=8, repeat_lrs=[0.003, 0.03], repeat_every=2)


# ----------------------------------------------------------------------------------------------- corpus
def stdlib_corpus() -> tuple[bytes, bytes, dict[str, Any]]:
    """Train and validation byte streams from the interpreter's stdlib, plus their documentation."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if p.is_file())
    if len(files) < 20:
        raise RuntimeError(f"found only {len(files)} stdlib .py files in {root}; the corpus needs at least 20")
    train, val, listing = [], [], []
    for i, p in enumerate(files):
        data = p.read_bytes()
        split = "val" if i % 10 == 5 else "train"
        (val if split == "val" else train).append(data)
        listing.append({"name": p.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                        "split": split})
    digest = hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()
    train_b, val_b = b"\0".join(train), b"\0".join(val)
    info = {
        "rule": "sorted(stdlib/*.py); sorted index i % 10 == 5 -> validation; files joined with b'\\0'; bytes",
        "stdlib_dir": str(root),
        "python": sys.version.split()[0],
        "corpus_sha256": digest,
        "n_files": len(files),
        "train_bytes": len(train_b),
        "val_bytes": len(val_b),
        "files": listing,
    }
    return train_b, val_b, info


# ------------------------------------------------------------------------------------------------ model
def build_model(size: ModelSize, seq_len: int, seed: int) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=256, hidden_size=size.d_model, intermediate_size=size.ffn,
                      num_hidden_layers=size.n_layers, num_attention_heads=size.n_heads,
                      num_key_value_heads=size.n_heads, max_position_embeddings=seq_len,
                      tie_word_embeddings=True, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)


def param_counts(model: Any) -> tuple[int, int]:
    """(non-embedding parameters, all parameters); embeddings are tied with the output head."""
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel()
    return total - emb, total


# -------------------------------------------------------------------------------------------- one run
def train_one(job: dict[str, Any], grid: Any, train_t: Any, val_t: Any) -> dict[str, Any]:
    """Train one model from scratch and return its validation loss and measured costs."""
    import torch

    size = next(s for s in grid.sizes if s.name == job["size"])
    seq, bs = grid.seq_len, job["batch_size"]
    steps = max(1, job["n_tokens"] // (bs * seq))
    model = build_model(size, seq, job["seed"])
    n_params, n_total = param_counts(model)
    # a job may carry its own weight decay and warmup (nanolm-pretrain-v2 varies the warmup)
    opt = torch.optim.AdamW(model.parameters(), lr=job["lr"], betas=(0.9, 0.95),
                            weight_decay=job.get("weight_decay", grid.weight_decay))
    warm = max(1, int(round(job.get("warmup_frac", grid.warmup_frac) * steps)))

    def lr_factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        prog = (step - warm) / max(1, steps - warm)
        return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * prog))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    gen = torch.Generator().manual_seed(10_000 + job["seed"])
    model.train()
    diverged = False
    with Timer() as t:
        for _ in range(steps):
            starts = torch.randint(0, len(train_t) - seq, (bs,), generator=gen)
            x = torch.stack([train_t[s:s + seq] for s in starts.tolist()])
            loss = model(input_ids=x, labels=x).loss
            if not torch.isfinite(loss):
                diverged = True
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
        train_loss = float(loss.detach())
    with Timer() as te:
        val_loss = evaluate(model, val_t, grid) if not diverged else float("nan")
    if not math.isfinite(val_loss):
        diverged = True
    return {
        "n_params": n_params,
        "n_params_total": n_total,
        "steps": steps,
        "tokens_seen": steps * bs * seq,
        "flops_6nd": 6.0 * n_params * job["n_tokens"],
        "train_loss": train_loss if math.isfinite(train_loss) else None,
        "val_loss": val_loss if not diverged else None,
        "diverged": diverged,
        "train_cpu_s": t.cpu,
        "train_wall_s": t.wall,
        "eval_cpu_s": te.cpu,
    }


def evaluate(model: Any, val_t: Any, grid: Any) -> float:
    """Mean next-byte loss over ``grid.val_windows`` evenly spaced, non-overlapping validation windows."""
    import torch

    seq = grid.seq_len
    n = min(grid.val_windows, len(val_t) // seq)
    stride = len(val_t) // n
    x = torch.stack([val_t[i * stride:i * stride + seq] for i in range(n)])
    model.eval()
    total = 0.0
    with torch.no_grad():
        for chunk in x.split(32):
            total += float(model(input_ids=chunk, labels=chunk).loss) * len(chunk)
    return total / n


# ----------------------------------------------------------------------------------------------- grid
def make_jobs(grid: PretrainGrid) -> list[dict[str, Any]]:
    jobs = []
    for size in grid.sizes:
        for d in grid.token_budgets:
            for lr in grid.lrs:
                for j, bs in enumerate(grid.batch_sizes):
                    i = grid.repeat_lrs.index(lr) if lr in grid.repeat_lrs else None
                    repeat = i is not None and (i + j) % grid.repeat_every == 0
                    seeds = [0] + (grid.repeat_seeds if repeat else [])
                    for seed in seeds:
                        jobs.append({"run_id": f"{size.name}-D{d}-lr{lr:g}-bs{bs}-s{seed}", "size": size.name,
                                     "d_model": size.d_model, "n_layers": size.n_layers, "n_tokens": d,
                                     "lr": lr, "batch_size": bs, "seed": seed, "seq_len": grid.seq_len,
                                     "weight_decay": grid.weight_decay})
    # cheapest cells first, so a partial table is already usable and progress estimates are honest
    return sorted(jobs, key=lambda j: (j["n_tokens"] * j["d_model"] ** 2 * j["n_layers"], j["seed"]))


def finalize(out: Path, table_dir: Path, grid: PretrainGrid) -> dict[str, Any]:
    """Write ``table.csv`` (one row per run) and ``metadata.json`` from ``runs.jsonl``."""
    recs = RunLog(out / "runs.jsonl").records()
    if not recs:
        raise RuntimeError(f"no finished runs in {out / 'runs.jsonl'}; run the grid first")
    cols = ["size", "n_params", "n_tokens", "lr", "batch_size", "seed", "val_loss", "diverged",
            "train_cpu_s", "flops_6nd", "steps", "d_model", "n_layers"]
    rows = []
    for r in sorted(recs, key=lambda r: (r["n_params"], r["n_tokens"], r["lr"], r["batch_size"], r["seed"])):
        row = {c: r[c] for c in cols}
        row["val_loss"] = UNIFORM_LOSS if r["diverged"] else round(r["val_loss"], 6)
        row["train_cpu_s"] = round(r["train_cpu_s"], 4)
        rows.append(row)
    meta = _metadata(recs, out, grid)
    write_table(out, table_dir, cols, rows, meta)
    return meta


def _noise(recs: list[dict[str, Any]]) -> dict[str, Any]:
    """Run-to-run noise: |seed 0 - seed 1| validation-loss differences of identical configurations."""
    by: dict[tuple[Any, ...], dict[int, float]] = {}
    for r in recs:
        if not r["diverged"]:
            by.setdefault((r["size"], r["n_tokens"], r["lr"], r["batch_size"]), {})[r["seed"]] = r["val_loss"]
    return seed_noise(by)


def _metadata(recs: list[dict[str, Any]], out: Path, grid: PretrainGrid) -> dict[str, Any]:
    corpus = json.loads((out / "corpus.json").read_text()) if (out / "corpus.json").exists() else {}
    cells: dict[str, dict[str, Any]] = {}
    for r in recs:
        c = cells.setdefault(f"{r['size']},D={r['n_tokens']}", {"n_params": r["n_params"], "n_tokens": r["n_tokens"],
                                                                "runs": 0, "train_cpu_s": 0.0, "best": None})
        c["runs"] += 1
        c["train_cpu_s"] = round(c["train_cpu_s"] + r["train_cpu_s"], 2)
        if r["seed"] == 0 and not r["diverged"] and (c["best"] is None or r["val_loss"] < c["best"]["val_loss"]):
            c["best"] = {"lr": r["lr"], "batch_size": r["batch_size"], "val_loss": round(r["val_loss"], 5)}
    return {
        "task_id": TASK_ID,
        "schema_version": SCHEMA_VERSION,
        "objective": "val_loss",
        "direction": "minimize",
        "cost_column": "train_cpu_s",
        "cost_unit": "CPU seconds (1 thread, measured)",
        "alt_cost_column": "flops_6nd (6 x non-embedding params x token budget)",
        "fidelity": ["n_params", "n_tokens"],
        "params": {"lr": grid.lrs, "batch_size": grid.batch_sizes},
        "table_seed": 0,
        "licence": "Apache-2.0 (generated by the autollm-sampler project)",
        "citation": "autollm-sampler project, nanolm-pretrain-v1 (gym_data/recipes/nanolm_pretrain.py)",
        "how_made": ("gym_data/recipes/nanolm_pretrain.py: byte-level LlamaForCausalLM trained from scratch on "
                     "the Python stdlib sources; one run per row, 1 torch thread, niced, shared 2-core CPU"),
        "description": ("Tiny-LM pretraining on Python stdlib sources: peak lr x batch size (sequences of "
                        f"{grid.seq_len} bytes) per (model size, token budget) cell; objective = validation "
                        "next-byte loss in nats; diverged runs get ln(256)."),
        "grid": asdict(grid),
        "corpus": {k: v for k, v in corpus.items() if k != "files"},
        "n_runs": len(recs),
        "n_diverged": sum(r["diverged"] for r in recs),
        "compute": {"train_cpu_s": round(sum(r["train_cpu_s"] for r in recs), 1),
                    "total_cpu_s": round(sum(r["total_cpu_s"] for r in recs), 1),
                    "total_wall_s": round(sum(r["total_wall_s"] for r in recs), 1),
                    "flops_6nd": sum(r["flops_6nd"] for r in recs)},
        "noise": _noise(recs),
        "cells": cells,
        "software": recs[-1]["software"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "gym_data" / "nanolm_pretrain",
                    help="where runs.jsonl, corpus.json and metadata.json go")
    ap.add_argument("--table-dir", type=Path, default=ROOT / "autollm_sampler" / "gym" / "tables" / "nanolm_pretrain",
                    help="where the finished table.csv and metadata.json go (package data)")
    ap.add_argument("--toy", action="store_true", help="a seconds-long grid that proves the recipe end to end")
    ap.add_argument("--finalize", action="store_true", help="only rebuild table.csv and metadata.json")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps CPU seconds comparable)")
    args = ap.parse_args(argv)
    limit_threads(args.threads)
    import torch

    grid = PretrainGrid.toy() if args.toy else PretrainGrid()
    if not args.finalize:
        train_b, val_b, info = stdlib_corpus()
        args.out.mkdir(parents=True, exist_ok=True)
        corpus_file = args.out / "corpus.json"
        if corpus_file.exists() and json.loads(corpus_file.read_text())["corpus_sha256"] != info["corpus_sha256"]:
            raise RuntimeError(f"{corpus_file} was made from another stdlib (another Python version?); "
                               "use a fresh --out directory to rerun the grid with this interpreter")
        corpus_file.write_text(json.dumps(info, indent=1) + "\n")
        train_t = torch.frombuffer(bytearray(train_b), dtype=torch.uint8).long()
        val_t = torch.frombuffer(bytearray(val_b), dtype=torch.uint8).long()
        common = {"software": software_versions(), "corpus_sha256": info["corpus_sha256"],
                  "grid_hash": config_hash(asdict(grid))}
        t0 = time.perf_counter()
        n = run_grid(make_jobs(grid), lambda j: train_one(j, grid, train_t, val_t), RunLog(args.out / "runs.jsonl"),
                     desc=TASK_ID, common=common)
        print(f"[{TASK_ID}] ran {n} runs in {time.perf_counter() - t0:.0f}s wall", file=sys.stderr)
    meta = finalize(args.out, args.table_dir, grid)
    print(json.dumps({"n_runs": meta["n_runs"], "compute": meta["compute"], "noise": meta["noise"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
