"""Print how long each registered task takes to verify, build and load from the raw data.

Run ``python -m autollm_sampler.benchmark.gym_build [--raw-dir DIR] [--repeat N]``. This is a printed
benchmark, not a timed test: numbers depend on the machine and its load. For each task it reports:

* ``sha256``: hashing the task's raw files (what every first build of a session does);
* ``build``: the recipe from raw files to a :class:`TabularTask` (best of ``--repeat`` runs; the torch
  import that ``hwgpt-arch-v1`` needs is timed once, up front, and not included);
* ``load``: ``gym.make`` once the task is built (the in-memory cache);
* ``reset``: one Setting-A ``reset`` with the full history on the first test target, which builds the
  history trials a policy reads.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from autollm_sampler.gym._data import manifest, resolve_raw_dir, sha256_of
from autollm_sampler.gym._env import LLMConfigEnv
from autollm_sampler.gym._registry import make, registry
from autollm_sampler.gym._splits import experiments

__all__ = ["main"]

#: task id -> the manifest source its recipe reads
SOURCES = {
    "steplaw-dense-v1": "steplaw",
    "steplaw-moe-v1": "steplaw",
    "admire-ift-v1": "admire_ift_runs",
    "regmix-v1": "regmix",
    "hwgpt-arch-v1": "hw_gpt_bench",
}


def _hash_all(paths: list[Path]) -> list[str]:
    return [sha256_of(p) for p in paths]


def _best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autollm_sampler.benchmark.gym_build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raw-dir", help="raw-data directory (default: $AUTOLLM_GYM_RAW, else the fetch cache)")
    parser.add_argument("--repeat", type=int, default=3, help="builds per task; the best time is reported")
    args = parser.parse_args(argv)
    root = resolve_raw_dir(args.raw_dir)
    print(f"raw data: {root}")
    t0 = time.perf_counter()
    try:
        import torch  # noqa: F401  - the hwgpt recipe's only heavy import, timed on its own
    except ImportError:
        print("torch is not installed: hwgpt-arch-v1 cannot be built\n")
    else:
        print(f"torch import (used by hwgpt-arch-v1 only): {time.perf_counter() - t0:.2f} s\n")
    header = f"{'task':18s} {'rows':>6s} {'cells':>5s} {'sha256 s':>9s} {'build s':>8s} {'load ms':>8s} {'reset s':>8s}"
    print(header)
    print("-" * len(header))
    total = 0.0
    for tid, spec in registry().items():
        files = manifest().get(SOURCES.get(tid, ""), [])
        paths = [root / f.source / f.name for f in files]
        t_hash = _best_of(partial(_hash_all, paths), 1)
        t_build = _best_of(partial(spec.builder, raw_dir=args.raw_dir), max(1, args.repeat))
        task = make(tid, raw_dir=args.raw_dir)
        t_load = _best_of(partial(make, tid, raw_dir=args.raw_dir), 5)
        target = experiments(task, "test")[0].target
        env = LLMConfigEnv(task, target, history="full")
        t_reset = _best_of(partial(env.reset, seed=0), 1)
        total += t_hash + t_build
        print(f"{tid:18s} {task.n_rows:6d} {len(task.cells):5d} {t_hash:9.3f} {t_build:8.3f} "
              f"{t_load * 1e3:8.3f} {t_reset:8.3f}")
    print(f"\nall tasks from raw data (sha256 + build): {total:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
