"""Speed of the agent: ``propose`` latency p50/p95 and peak memory at several history sizes, one CPU thread.

    python -m autollm_sampler.benchmark.propose_latency [--agent default] [--repeats 30]

"py heap" is the peak of Python-tracked allocations during one call (tracemalloc; torch tensors are not
included); "max RSS" is the whole process's peak resident memory so far (torch and the model included).
Also prints the import time of the package without any torch-using module. This is a benchmark that prints
figures, not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import tracemalloc

import numpy as np

__all__ = ["main", "synthetic_history"]


def synthetic_history(n: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """A Step-Law-like lr x batch-size history of ``n`` trials over 4 cheaper cells, plus the target space."""
    from autollm_sampler import History, SearchSpace

    rng = np.random.default_rng(seed)
    lrs = [float(f"{2.44e-4 * 2 ** (i / 2):.3g}") for i in range(12)]
    bss = [64 * 2 ** (j / 2) for j in range(10)]
    bss = [int(round(b / 8) * 8) for b in bss]
    space = SearchSpace.from_dict({"params": {"lr": {"type": "categorical", "choices": lrs},
                                              "batch_size": {"type": "categorical", "choices": bss}}})
    h = History(fidelity_axes=("n_params", "n_tokens"))
    cells = [(2.1e8, 4e9), (2.7e8, 5e9), (4.3e8, 8e9), (4.3e8, 2.3e10)]
    for i in range(n):
        N, D = cells[i % len(cells)]
        lr, bs = lrs[int(rng.integers(12))], bss[int(rng.integers(10))]
        loss = 2.5 + 0.05 * (np.log(lr / 2e-3)) ** 2 + 0.01 * (np.log(bs / 256)) ** 2 + rng.normal(0, 0.003)
        h.add({"id": i, "params": {"lr": lr, "batch_size": bs}, "fidelity": {"n_params": N, "n_tokens": D}, "value": float(loss)})
    return h, space, {"n_params": 1.07e9, "n_tokens": 2e10}


def _import_time() -> float:
    code = "import time; t=time.perf_counter(); import autollm_sampler, autollm_sampler.space, autollm_sampler.history, autollm_sampler.agent; print(time.perf_counter()-t); import sys; assert 'torch' not in sys.modules, 'torch imported'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m autollm_sampler.benchmark.propose_latency", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", default="default")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--sizes", default="10,100,200,1000")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    from autollm_sampler.agent import load_agent

    agent = load_agent(args.agent)
    print(f"agent: {args.agent} ({type(agent).__name__}), torch threads: {torch.get_num_threads()}")
    print(f"import time without torch modules: {_import_time() * 1000:.0f} ms")
    import resource

    print(f"{'trials':>7} {'p50 ms':>8} {'p95 ms':>8} {'py heap MiB':>11} {'max RSS MiB':>11}  (free space, no candidate list)")
    for n in (int(x) for x in args.sizes.split(",")):
        hist, space, target = synthetic_history(n)
        agent.propose(hist, space, target, n=1, seed=0)  # warm-up
        times = []
        for r in range(args.repeats):
            t = time.perf_counter()
            agent.propose(hist, space, target, n=1, seed=r)
            times.append((time.perf_counter() - t) * 1000)
        tracemalloc.start()
        agent.propose(hist, space, target, n=1, seed=0)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(f"{n:>7} {np.percentile(times, 50):>8.1f} {np.percentile(times, 95):>8.1f} {peak / 2**20:>11.1f} {rss:>11.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
