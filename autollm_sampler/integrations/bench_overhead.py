"""Deprecated alias of :mod:`autollm_sampler.benchmark.overhead` (the per-trial sampler overhead against TPESampler).

The performance scripts live in ``autollm_sampler/benchmark/``; ``python -m autollm_sampler.integrations.bench_overhead`` still runs
``python -m autollm_sampler.benchmark.overhead`` with the same arguments, with a deprecation warning.
"""

from __future__ import annotations

import sys

from autollm_sampler._moved import forward

__all__ = ["main"]

main, __getattr__ = forward("autollm_sampler.integrations.bench_overhead", "autollm_sampler.benchmark.overhead")

if __name__ == "__main__":
    sys.exit(main())
