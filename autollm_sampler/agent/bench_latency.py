"""Deprecated alias of :mod:`autollm_sampler.benchmark.propose_latency` (the agent's propose latency).

The performance scripts live in ``autollm_sampler/benchmark/``; ``python -m autollm_sampler.agent.bench_latency`` still runs
``python -m autollm_sampler.benchmark.propose_latency`` with the same arguments, with a deprecation warning.
"""

from __future__ import annotations

import sys

from autollm_sampler._moved import forward

__all__ = ["main"]

main, __getattr__ = forward("autollm_sampler.agent.bench_latency", "autollm_sampler.benchmark.propose_latency")

if __name__ == "__main__":
    sys.exit(main())
