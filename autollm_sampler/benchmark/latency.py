"""The cost benchmark: per-suggestion latency and peak memory of every method, as ratios to TPE.

Scenario: the Step Law dense target N = 1.07B, D = 20B, with a history of n = 10, 100 and 1,000 completed
trials drawn (seeded, with replacement beyond the ~1,400 available) from its cheaper cells. Every method
gets the same n trials:

* target-only Optuna samplers (``tpe``, ``gp``, ``cmaes``, ``qmc``, ``random``): the trials, carried into the
  target space, are completed trials of their study;
* warm-started samplers, transfer, the Step Law rule and the agents: the trials are their history.

*Setup* is the policy's ``reset`` (building the study, fitting the rule, ...), done once per episode.
*Latency* is the median wall time of one suggestion (``act``) after a warm-up suggestion. *Peak memory* is
the largest extra memory during setup plus one suggestion: the maximum of Python/NumPy allocations
(``tracemalloc``) and of the process's resident-set growth sampled every millisecond (which also sees
native allocations such as torch's). Ratios divide by TPE's figure at the same n, measured in the same run.

Run it with ``autollm-sampler bench --latency --out DIR`` or ``python -m autollm_sampler.benchmark.latency --out DIR``
(both write ``DIR/LATENCY.md``; ``DIR`` defaults to ``./bench-results``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import math
import os
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["SIZES", "LATENCY_METHODS", "measure_method", "run_latency", "render_latency", "main"]

SIZES = (10, 100, 1000)
#: Methods measured (Setting-A methods; ``sh`` is a Setting-B schedule with no per-suggestion model).
LATENCY_METHODS = ("random", "tpe", "gp", "cmaes", "qmc", "tpe-warm", "cmaes-warm", "transfer", "steplaw-rule",
                   "agent", "agent-distilled", "agent-nohist", "agent-extrap")
TASK, TARGET = "steplaw-dense-v1", "N=1.07B,D=20B"


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class _RssSampler:
    """Samples the resident set size in a thread; ``peak`` is the maximum growth over the start value."""

    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.start = _rss_bytes()
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes() - self.start)
            time.sleep(self.interval)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes() - self.start)


def _history_pool() -> tuple[Any, list[Any]]:
    from autollm_sampler.gym import LLMConfigEnv, experiments, make

    task = make(TASK)
    exp = next(e for e in experiments(task, "test") if e.target == TARGET)
    env = LLMConfigEnv(task, TARGET, history="full", history_cells=list(exp.history_cells))
    obs, _ = env.reset(seed=0)
    return exp, list(obs.history.trials)


def _observation(exp: Any, pool: Sequence[Any], n: int, seed: int = 0) -> Any:
    from autollm_sampler.gym import LLMConfigEnv, make
    from autollm_sampler.history import Trial

    env = LLMConfigEnv(make(TASK), TARGET, history="none", history_cells=list(exp.history_cells))
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(pool), size=n, replace=n > len(pool))
    obs.history.trials[0:0] = [Trial(**{**pool[int(i)].model_dump(), "id": j}) for j, i in enumerate(picks)]
    return obs


def _policy_and_setup(method: str, obs: Any) -> tuple[Any, Callable[[], None]]:
    from autollm_sampler.benchmark._methods import make_policy
    from autollm_sampler.benchmark._policies import OptunaSearch

    policy = make_policy(method)

    def setup() -> None:
        policy.reset(obs, seed=0)
        if isinstance(policy, OptunaSearch) and not policy.warm:
            policy.add_history_as_trials(obs)  # target-only samplers: n completed trials in the study

    return policy, setup


def measure_method(method: str, obs: Any, *, repeats: int = 3) -> dict[str, float]:
    """Setup seconds, median seconds per suggestion and peak extra bytes of one method on one history.

    A first, untimed setup and suggestion warms the process (imports, shared library caches) so that the
    order in which methods are measured does not matter; the benchmark's own per-method caches are then
    cleared, so the timed setup builds everything a method needs.
    """
    from autollm_sampler.benchmark._policies import clear_method_caches

    policy, setup = _policy_and_setup(method, obs)
    setup()
    policy.act(obs)
    clear_method_caches()
    policy, setup = _policy_and_setup(method, obs)
    t0 = time.perf_counter()
    setup()
    setup_s = time.perf_counter() - t0
    policy.act(obs)  # warm-up: lazy imports, caches
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        policy.act(obs)
        times.append(time.perf_counter() - t)
    # memory: a fresh policy, setup + one suggestion, under tracemalloc and the RSS sampler
    clear_method_caches()
    policy, setup = _policy_and_setup(method, obs)
    gc.collect()
    tracemalloc.start()
    with _RssSampler() as rss:
        setup()
        policy.act(obs)
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"setup_s": setup_s, "latency_s": statistics.median(times), "peak_bytes": float(max(traced, rss.peak))}


def run_latency(
    *,
    methods: Sequence[str] | None = None,
    sizes: Sequence[int] = SIZES,
    repeats: int = 3,
    progress: bool = True,
) -> tuple[dict[tuple[str, int], dict[str, float]], list[tuple[str, str]]]:
    """Measure every available method at every history size.

    Returns:
        ``({(method, n): figures}, [(method, reason skipped)])``. TPE is always measured (the reference).
    """
    from autollm_sampler.benchmark._methods import method_spec
    from autollm_sampler.benchmark._policies import _quiet_optuna

    _quiet_optuna()
    names = list(methods) if methods else list(LATENCY_METHODS)
    if "tpe" not in names:
        names.insert(0, "tpe")
    skipped: list[tuple[str, str]] = []
    usable = []
    for m in names:
        reason = method_spec(m).unavailable()
        if reason:
            skipped.append((m, reason))
        elif "A" not in method_spec(m).settings:
            skipped.append((m, "Setting-B method; no per-suggestion model to time"))
        else:
            usable.append(m)
    exp, pool = _history_pool()
    results: dict[tuple[str, int], dict[str, float]] = {}
    jobs = [(m, n) for n in sizes for m in usable]
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="latency", unit="method")
    for n in sizes:
        obs = _observation(exp, pool, n)
        for m in usable:
            results[(m, n)] = measure_method(m, obs, repeats=repeats)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return results, skipped


def _ms(s: float) -> str:
    ms = s * 1000
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def _ratio(x: float, ref: float) -> str:
    if ref <= 0 or math.isnan(ref):
        return "n/a"
    r = x / ref
    return f"{r:.2g}×" if r < 10 else f"{r:.0f}×"


def render_latency(
    results: dict[tuple[str, int], dict[str, float]],
    skipped: Sequence[tuple[str, str]],
    *,
    command: str,
    machine: str,
    sizes: Sequence[int] = SIZES,
) -> str:
    """LATENCY.md: latency and peak memory per method and history size, with ratios to TPE."""
    methods = list(dict.fromkeys(m for m, _ in results))
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# Cost benchmark: latency and memory per suggestion", "",
        f"- **Command:** `{command}`", f"- **Date:** {date}", f"- **Machine:** {machine}", "",
        f"Scenario: Step Law dense, target {TARGET}, with n completed low-fidelity trials. Latency: median wall "
        "time of one suggestion after a warm-up one. Setup: building the method's state once per episode (the "
        "Optuna study with n trials, the rule fit, ...). Peak memory: the larger of traced Python/NumPy "
        "allocations and resident-set growth during setup plus one suggestion. Ratios are to TPESampler at "
        "the same n in this run.", "",
        "## Latency per suggestion (ms, ratio to TPE)", "",
        "| method | " + " | ".join(f"n={n}" for n in sizes) + " | " + " | ".join(f"setup n={n}" for n in sizes) + " |",
        "|---|" + "---:|" * (2 * len(sizes)),
    ]
    for m in methods:
        cells = []
        for n in sizes:
            r, ref = results.get((m, n)), results.get(("tpe", n))
            cells.append(f"{_ms(r['latency_s'])} ({_ratio(r['latency_s'], ref['latency_s'])})" if r and ref else "")
        for n in sizes:
            r = results.get((m, n))
            cells.append(_ms(r["setup_s"]) if r else "")
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    out += ["", "## Peak extra memory (MiB, ratio to TPE)", "",
            "| method | " + " | ".join(f"n={n}" for n in sizes) + " |", "|---|" + "---:|" * len(sizes)]
    for m in methods:
        cells = []
        for n in sizes:
            r, ref = results.get((m, n)), results.get(("tpe", n))
            cells.append(f"{r['peak_bytes'] / 2**20:.3g} ({_ratio(r['peak_bytes'], ref['peak_bytes'])})" if r and ref else "")
        out.append(f"| {m} | " + " | ".join(cells) + " |")
    if skipped:
        out += ["", "## Not measured", ""] + [f"- `{m}`: {why}" for m, why in skipped]
    return "\n".join(out) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autollm_sampler.benchmark.latency", description=__doc__.split("\n")[0])
    add_latency_arguments(parser)
    args = parser.parse_args(argv)
    return run_latency_cli(args, command="python -m autollm_sampler.benchmark.latency " + " ".join(argv or sys.argv[1:]))


def add_latency_arguments(parser: argparse.ArgumentParser, *, with_out: bool = True) -> None:
    if with_out:
        # the same default as `autollm-sampler bench --out`: a folder of its own under the working directory
        # (the project's published LATENCY.md is written with --out docs/benchmarks)
        parser.add_argument("--out", default="bench-results", help="folder for LATENCY.md, created if missing "
                            "(default: ./%(default)s)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="history sizes (default: 10 100 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="timed suggestions per measurement (default: 3)")
    if with_out:
        parser.add_argument("--methods", nargs="+", default=None, help="methods to measure (default: all)")


def run_latency_cli(args: argparse.Namespace, *, command: str) -> int:
    from autollm_sampler.benchmark._report import machine_description

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    results, skipped = run_latency(methods=args.methods, sizes=args.sizes, repeats=args.repeats)
    for m, why in skipped:
        print(f"skipped {m}: {why}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = render_latency(results, skipped, command=command.strip(), machine=machine_description(), sizes=args.sizes)
    (out / "LATENCY.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {out / 'LATENCY.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
