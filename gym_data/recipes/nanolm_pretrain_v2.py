"""Recipe for ``nanolm-pretrain-v2``: tiny byte-level LMs, lr x batch size x warmup, 4 sizes x 2 budgets.

``nanolm-pretrain-v1`` had a monotone axis: at its 16k- and 65k-token budgets the smallest batch size (2)
was best in every cell. This version uses budgets four times larger (65,536 and 262,144 tokens), a
batch-size range that reaches down to a single sequence and up to 64, a fourth, larger model, and varies
a third parameter that interacts with the learning rate: the warmup share of the run.

What it does (corpus, models, training loop and evaluation are those of ``nanolm_pretrain.py``):

1. Corpus: the Python standard library's top-level ``*.py`` files, every 10th held out (see v1).
2. Models: ``LlamaForCausalLM`` from scratch at 4 sizes (d_model 24 / 48 / 96 / 128).
3. Design shared by every (size, budget) cell: ``n_configs`` points of a scrambled Sobol sequence (seed
   fixed) over peak learning rate (log, 3e-4 to 0.1), batch size (1-64 sequences of 64 bytes, powers of
   2) and warmup share (0 to 0.4 of the steps, linear), rounded to three significant figures; a fixed
   subset of ``n_repeat`` configurations also runs with seed 1 to measure noise.
4. Each run: AdamW (betas 0.9/0.95, weight decay 0.1), linear warmup over the configured share, cosine to
   10% of the peak, clipping at 1.0; objective: validation next-byte loss (nats); a diverged run gets
   ln 256. Cost: measured CPU seconds.
5. ``<out>/runs.jsonl`` (resumable) -> ``--finalize`` writes ``table.csv`` and ``metadata.json``.

Usage::

    nohup nice -n 10 .venv/bin/python gym_data/recipes/nanolm_pretrain_v2.py > /tmp/nanolm_v2.log 2>&1 &
    .venv/bin/python gym_data/recipes/nanolm_pretrain_v2.py --toy --out /tmp/toy2 --table-dir /tmp/toy2/t
"""

from __future__ import annotations

import argparse
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
    config_hash,
    limit_threads,
    run_grid,
    seed_noise,
    software_versions,
    write_table,
)
from nanolm_pretrain import UNIFORM_LOSS, ModelSize, stdlib_corpus, train_one  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TASK_ID = "nanolm-pretrain-v2"
SCHEMA_VERSION = 1
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


@dataclass
class Design:
    """Sizes x token budgets x a Sobol design of (lr, batch size, warmup share), with repeat seeds."""

    sizes: list[ModelSize] = field(default_factory=lambda: [
        ModelSize("xs", 24, 2, 2, 64),
        ModelSize("s", 48, 2, 4, 128),
        ModelSize("m", 96, 2, 4, 256),
        ModelSize("l", 128, 2, 4, 352),
    ])
    token_budgets: list[int] = field(default_factory=lambda: [65_536, 262_144])
    n_configs: int = 24
    n_repeat: int = 4
    design_seed: int = 2027
    lr_range: tuple[float, float] = (3e-4, 0.1)
    warmup_range: tuple[float, float] = (0.0, 0.4)
    seq_len: int = 64
    weight_decay: float = 0.1
    warmup_frac: float = 0.1  # unused: every job carries its own warmup share
    val_windows: int = 96

    @classmethod
    def toy(cls) -> Design:
        return cls(sizes=[ModelSize("toy", 16, 1, 2, 32)], token_budgets=[2_048], n_configs=3, n_repeat=1,
                   seq_len=32, val_windows=8)


def _sig3(x: float) -> float:
    return float(f"{x:.3g}")


def configurations(d: Design) -> list[dict[str, Any]]:
    """The shared design: Sobol points mapped to (lr, batch size, warmup share)."""
    import warnings

    from scipy.stats import qmc

    with warnings.catch_warnings():  # n_configs need not be a power of 2 here
        warnings.simplefilter("ignore", UserWarning)
        u = qmc.Sobol(d=3, scramble=True, seed=d.design_seed).random(d.n_configs)
    lo, hi = (math.log10(v) for v in d.lr_range)
    out = []
    for i, (ul, ub, uw) in enumerate(u):
        out.append({"config": i,
                    "lr": _sig3(10 ** (lo + (hi - lo) * ul)),
                    "batch_size": BATCH_SIZES[min(int(ub * len(BATCH_SIZES)), len(BATCH_SIZES) - 1)],
                    "warmup_frac": _sig3(d.warmup_range[0] + (d.warmup_range[1] - d.warmup_range[0]) * uw)})
    return out


def make_jobs(d: Design) -> list[dict[str, Any]]:
    configs = configurations(d)
    step = max(1, len(configs) // max(1, d.n_repeat))
    repeat = {c["config"] for c in configs[::step][: d.n_repeat]}
    jobs = []
    for size in d.sizes:
        for n_tokens in d.token_budgets:
            for c in configs:
                for seed in [0] + ([1] if c["config"] in repeat else []):
                    jobs.append({"run_id": f"{size.name}-D{n_tokens}-c{c['config']:02d}-s{seed}", "size": size.name,
                                 "d_model": size.d_model, "n_layers": size.n_layers, "n_tokens": n_tokens,
                                 **c, "seed": seed, "seq_len": d.seq_len, "weight_decay": d.weight_decay})
    # cheapest cells first, so a partial table is already usable
    return sorted(jobs, key=lambda j: (j["n_tokens"] * j["d_model"] ** 2 * j["n_layers"], j["seed"], j["config"]))


COLS = ["size", "n_params", "n_tokens", "config", "lr", "batch_size", "warmup_frac", "seed", "val_loss",
        "diverged", "train_cpu_s", "flops_6nd", "steps", "d_model", "n_layers"]


def finalize(out: Path, table_dir: Path, d: Design) -> dict[str, Any]:
    recs = RunLog(out / "runs.jsonl").records()
    if not recs:
        raise RuntimeError(f"no finished runs in {out / 'runs.jsonl'}; run the design first")
    rows = []
    for r in sorted(recs, key=lambda r: (r["n_params"], r["n_tokens"], r["config"], r["seed"])):
        row = {c: r[c] for c in COLS}
        row["val_loss"] = UNIFORM_LOSS if r["diverged"] else round(r["val_loss"], 6)
        row["train_cpu_s"] = round(r["train_cpu_s"], 4)
        rows.append(row)
    meta = _metadata(recs, rows, out, d)
    write_table(out, table_dir, COLS, rows, meta)
    return meta


def _cells(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    cells: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["seed"] != 0:
            continue
        c = cells.setdefault(f"{r['size']},D={r['n_tokens']}", {"n_params": r["n_params"], "n_tokens": r["n_tokens"],
                                                                "losses": [], "train_cpu_s": 0.0, "best": None})
        c["losses"].append(r["val_loss"])
        c["train_cpu_s"] = round(c["train_cpu_s"] + r["train_cpu_s"], 2)
        if c["best"] is None or r["val_loss"] < c["best"]["val_loss"]:
            c["best"] = {k: r[k] for k in ("config", "lr", "batch_size", "warmup_frac", "val_loss")}
    for c in cells.values():
        losses = sorted(c.pop("losses"))
        c["runs"] = len(losses)
        c["p90"] = losses[min(len(losses) - 1, int(0.9 * len(losses)))]
        c["p90_gap"] = c["p90"] - losses[0]
        c["median"] = losses[len(losses) // 2]
    return cells


def _metadata(recs: list[dict[str, Any]], rows: list[dict[str, Any]], out: Path, d: Design) -> dict[str, Any]:
    corpus = json.loads((out / "corpus.json").read_text()) if (out / "corpus.json").exists() else {}
    by: dict[tuple[Any, ...], dict[int, float]] = {}
    for r in recs:
        if not r["diverged"]:
            by.setdefault((r["size"], r["n_tokens"], r["config"]), {})[r["seed"]] = r["val_loss"]
    configs = configurations(d)
    return {
        "task_id": TASK_ID,
        "schema_version": SCHEMA_VERSION,
        "objective": "val_loss",
        "direction": "minimize",
        "cost_column": "train_cpu_s",
        "cost_unit": "CPU seconds (1 thread, measured)",
        "alt_cost_column": "flops_6nd (6 x non-embedding params x token budget)",
        "fidelity": ["n_params", "n_tokens"],
        "params": {k: sorted({c[k] for c in configs}) for k in ("lr", "batch_size", "warmup_frac")},
        "table_seed": 0,
        "licence": "Apache-2.0 (generated by the autollm-sampler project)",
        "citation": "autollm-sampler project, nanolm-pretrain-v2 (gym_data/recipes/nanolm_pretrain_v2.py)",
        "how_made": ("gym_data/recipes/nanolm_pretrain_v2.py: byte-level LlamaForCausalLM trained from scratch on "
                     "the Python stdlib sources over a Sobol design of (lr, batch size, warmup share) shared by "
                     "every cell; one run per row, 1 torch thread, niced, shared 2-core CPU"),
        "description": ("Tiny-LM pretraining on Python stdlib sources: peak lr x batch size (sequences of "
                        f"{d.seq_len} bytes) x warmup share per (model size, token budget) cell; objective = "
                        "validation next-byte loss in nats; diverged runs get ln(256)."),
        "design": {**asdict(d), "configurations": configs},
        "corpus": {k: v for k, v in corpus.items() if k != "files"},
        "n_runs": len(recs),
        "n_diverged": sum(r["diverged"] for r in recs),
        "compute": {"train_cpu_s": round(sum(r["train_cpu_s"] for r in recs), 1),
                    "total_cpu_s": round(sum(r["total_cpu_s"] for r in recs), 1),
                    "total_wall_s": round(sum(r["total_wall_s"] for r in recs), 1),
                    "flops_6nd": sum(r["flops_6nd"] for r in recs)},
        "noise": seed_noise(by),
        "cells": _cells(rows),
        "software": recs[-1]["software"],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "gym_data" / "nanolm_pretrain_v2",
                    help="where runs.jsonl, corpus.json and metadata.json go")
    ap.add_argument("--table-dir", type=Path,
                    default=ROOT / "autollm_sampler" / "gym" / "tables" / "nanolm_pretrain_v2",
                    help="where the finished table.csv and metadata.json go (package data)")
    ap.add_argument("--toy", action="store_true", help="a seconds-long design that proves the recipe end to end")
    ap.add_argument("--finalize", action="store_true", help="only rebuild table.csv and metadata.json")
    ap.add_argument("--no-finalize", action="store_true", help="run, but do not write the table")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 keeps CPU seconds comparable)")
    args = ap.parse_args(argv)
    limit_threads(args.threads)
    import torch

    d = Design.toy() if args.toy else Design()
    if not args.finalize:
        train_b, val_b, info = stdlib_corpus()
        args.out.mkdir(parents=True, exist_ok=True)
        corpus_file = args.out / "corpus.json"
        if corpus_file.exists() and json.loads(corpus_file.read_text())["corpus_sha256"] != info["corpus_sha256"]:
            raise RuntimeError(f"{corpus_file} was made from another stdlib (another Python version?); "
                               "use a fresh --out directory to rerun the design with this interpreter")
        corpus_file.write_text(json.dumps(info, indent=1) + "\n")
        train_t = torch.frombuffer(bytearray(train_b), dtype=torch.uint8).long()
        val_t = torch.frombuffer(bytearray(val_b), dtype=torch.uint8).long()
        common = {"software": software_versions(), "corpus_sha256": info["corpus_sha256"],
                  "design_hash": config_hash(asdict(d))}
        t0 = time.perf_counter()
        n = run_grid(make_jobs(d), lambda j: train_one(j, d, train_t, val_t), RunLog(args.out / "runs.jsonl"),
                     desc=TASK_ID, common=common)
        print(f"[{TASK_ID}] ran {n} runs in {time.perf_counter() - t0:.0f}s wall", file=sys.stderr)
    if args.no_finalize:
        return 0
    meta = finalize(args.out, args.table_dir, d)
    print(json.dumps({"n_runs": meta["n_runs"], "compute": meta["compute"], "noise": meta["noise"],
                      "cells": meta["cells"]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
