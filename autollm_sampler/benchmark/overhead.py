"""Per-trial sampler overhead: AutoLLMSampler against Optuna's TPESampler, side by side.

Run ``python -m autollm_sampler.benchmark.overhead`` (``--agent classical`` to time the
classical agent, ``--sizes 10 100 1000`` to choose the history sizes). It prints one row per number of
completed trials with the mean milliseconds per trial of each sampler and their ratio (and how much of
AutoLLMSampler's time is spent inside the agent's ``propose``; the rest is the sampler reading the study and
writing its proposal, plus Optuna's own ask/tell, which TPE pays too), under two
conditions: ``alone`` (nothing else started by the benchmark) and ``beside a busy process`` (a CPU-bound
Python process runs for the whole measurement, as a training job or another worker would). ``--conditions
alone`` runs one; ``--storage sqlite`` keeps each study in a SQLite file. The measurement itself lives in :func:`autollm_sampler.integrations.optuna.measure_overhead`.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autollm_sampler.benchmark.overhead", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000], help="completed trials in the study")
    parser.add_argument("--measured", type=int, default=20, help="timed ask/tell rounds per size (default 20)")
    parser.add_argument("--agent", default="default", help="agent of AutoLLMSampler: default, classical or a path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conditions", nargs="+", choices=list(CONDITIONS), default=list(CONDITIONS),
                        help="alone, busy (a CPU-bound process beside the measurement), or both (default)")
    parser.add_argument("--storage", choices=["memory", "sqlite"], default="memory",
                        help="where the studies live: in memory (default) or a SQLite file per study")
    args = parser.parse_args(argv)
    from autollm_sampler.integrations.optuna import measure_overhead

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# python {platform.python_version()}, {os.cpu_count()} CPUs, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, 1-minute load average at start {load:.2f}")
    print(f"{'condition':>22} | {'completed trials':>16} | {'AutoLLMSampler ms/trial':>23} | {'of which agent.propose':>22} | "
          f"{'TPESampler ms/trial':>19} | {'ratio':>6}")
    print(f"{'-' * 22}-+-{'-' * 16}-+-{'-' * 23}-+-{'-' * 22}-+-{'-' * 19}-+-{'-' * 6}")
    agent = args.agent
    for cond in args.conditions:
        label = CONDITIONS[cond]

        def report(msg: str, label: str = label) -> None:
            print(f"# {label}: {msg}", file=sys.stderr)

        with (_busy_process() if cond == "busy" else _nothing()):
            rows = measure_overhead(args.sizes, n_measured=args.measured, seed=args.seed, agent=args.agent,
                                    progress=report, storage=args.storage)
        agent = rows[0].get("agent", args.agent) if rows else args.agent
        for r in rows:
            print(f"{CONDITIONS[cond]:>22} | {int(r['n_completed']):>16} | {r['autollm_ms']:>23.2f} | "
                  f"{r.get('propose_ms', float('nan')):>22.2f} | {r['tpe_ms']:>19.2f} | {r['ratio']:>6.2f}")
    print(f"# agent: {agent}")
    return 0


CONDITIONS = {"alone": "alone", "busy": "beside a busy process"}


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def _busy_process() -> Iterator[None]:
    """A CPU-bound Python process (a pure busy loop) for the duration of the block."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":
    sys.exit(main())
