"""Deprecated alias of :mod:`autollm_sampler.benchmark.gym_build` (the build and load times of the gym's tasks).

The performance scripts live in ``autollm_sampler/benchmark/``; ``python -m autollm_sampler.gym.bench_build`` still runs
``python -m autollm_sampler.benchmark.gym_build`` with the same arguments, with a deprecation warning.
"""

from __future__ import annotations

import sys

from autollm_sampler._moved import forward

__all__ = ["main"]

main, __getattr__ = forward("autollm_sampler.gym.bench_build", "autollm_sampler.benchmark.gym_build")

if __name__ == "__main__":
    sys.exit(main())
