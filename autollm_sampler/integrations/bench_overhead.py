"""Per-trial sampler overhead: AutoLLMSampler against Optuna's TPESampler, side by side.

Run ``python -m autollm_sampler.integrations.bench_overhead`` (``--agent classical`` to time the
classical agent, ``--sizes 10 100 1000`` to choose the history sizes). It prints one row per number of
completed trials with the mean milliseconds per trial of each sampler and their ratio. The measurement
itself lives in :func:`autollm_sampler.integrations.optuna.measure_overhead`.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autollm_sampler.integrations.bench_overhead", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000], help="completed trials in the study")
    parser.add_argument("--measured", type=int, default=20, help="timed ask/tell rounds per size (default 20)")
    parser.add_argument("--agent", default="default", help="agent of AutoLLMSampler: default, classical or a path")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from autollm_sampler.integrations.optuna import measure_overhead

    print(f"# python {platform.python_version()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    rows = measure_overhead(args.sizes, n_measured=args.measured, seed=args.seed, agent=args.agent,
                            progress=lambda msg: print(f"# {msg}", file=sys.stderr))
    agent = rows[0].get("agent", args.agent) if rows else args.agent
    print(f"{'completed trials':>16} | {'AutoLLMSampler ms/trial':>23} | {'TPESampler ms/trial':>19} | {'ratio':>6}")
    print(f"{'-' * 16}-+-{'-' * 23}-+-{'-' * 19}-+-{'-' * 6}")
    for r in rows:
        print(f"{int(r['n_completed']):>16} | {r['autollm_ms']:>23.2f} | {r['tpe_ms']:>19.2f} | {r['ratio']:>6.2f}")
    print(f"# agent: {agent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
