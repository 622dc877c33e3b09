"""``autollm-sampler bench``: run (or resume) the benchmark and write the report.

Examples::

    autollm-sampler bench --out docs/benchmarks                 # everything (make bench)
    autollm-sampler bench --quick --out runs/bench-quick        # a few minutes (make bench-quick)
    autollm-sampler bench --families steplaw-dense-v1 --methods random tpe transfer --setting A --seeds 5
    autollm-sampler bench --latency --out docs/benchmarks       # the cost benchmark only -> LATENCY.md
"""

from __future__ import annotations

import argparse
import os
import shlex
import time
from typing import Any

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``bench`` sub-command to the top-level CLI."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark the agent against classical HPO on held-out experiments",
        description="Run every method on the same held-out experiments with fixed seeds (resumable: finished "
        "episodes are cached in OUT/episodes.jsonl), then write OUT/RESULTS.md, plots and CSVs.",
    )
    p.add_argument("--families", nargs="+", metavar="FAMILY",
                   help="task ids or families (default: every registered task; --quick: a small subset)")
    p.add_argument("--methods", nargs="+", metavar="METHOD",
                   help="methods (default: all); also 'agent:<name-or-path>' for any agent checkpoint")
    p.add_argument("--setting", choices=["A", "B", "all"], default="all", help="default: both")
    p.add_argument("--history", choices=["full", "sparse", "all"], default="all",
                   help="Setting A history variant (default: both)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per (method, target) (default: 20; --quick: 3)")
    p.add_argument("--out", default="bench-results",
                   help="output folder, created if missing (default: ./%(default)s; `make bench` writes the "
                   "project's published tables to docs/benchmarks)")
    p.add_argument("--quick", action="store_true",
                   help="a few minutes: 3 seeds, Step Law dense and ADMIRE only, no latency benchmark")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="worker processes (default: %(default)s); 1 runs in this process")
    p.add_argument("--latency", action="store_true",
                   help="run only the cost benchmark (latency and memory per suggestion) -> OUT/LATENCY.md")
    p.add_argument("--skip-latency", action="store_true",
                   help="do not run the cost benchmark after a full (non --quick) run")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--plan", action="store_true", help="print what would run (and what is skipped), run nothing")
    from autollm_sampler.benchmark.latency import add_latency_arguments

    add_latency_arguments(p, with_out=False)
    p.set_defaults(func=_run)
    _list_methods_in_help(p)
    _offer_methods_to_gym_rollout()
    return p


def _list_methods_in_help(p: argparse.ArgumentParser) -> None:
    """``bench --help`` ends with every method and what it is (imported only when help is asked for, so
    other commands start no slower)."""
    plain = p.format_help

    def format_help() -> str:
        from autollm_sampler.benchmark._methods import METHODS

        width = max(len(n) for n in METHODS)
        lines = [f"  {name.ljust(width)}  {spec.description}" for name, spec in METHODS.items()]
        lines.append(f"  {'agent-llm'.ljust(width)}  the text-LLM agent (where a checkpoint is configured)")
        lines.append(f"  {'agent:NAME'.ljust(width)}  any agent checkpoint: a shipped name or a folder")
        return plain() + "\nmethods:\n" + "\n".join(lines) + "\n"

    p.format_help = format_help  # type: ignore[method-assign]


def _offer_methods_to_gym_rollout() -> None:
    """``gym rollout --policy agent`` (or any benchmark method): the gym layer cannot import the agent, so
    the benchmark layer, which may import both, registers its methods with the gym CLI."""
    from autollm_sampler.gym import _cli as gym_cli

    def build(name: str, seed: int) -> Any:  # the episode passes the seed to the policy's reset
        from autollm_sampler.benchmark._methods import make_policy

        return make_policy(name)

    gym_cli.EXTRA_POLICIES = build


def _command(args: argparse.Namespace) -> str:
    parts = ["autollm-sampler", "bench"]
    if args.quick:
        parts.append("--quick")
    if args.latency:
        parts.append("--latency")
    for flag, value in (("--families", args.families), ("--methods", args.methods)):
        if value:
            parts += [flag, *value]
    if args.setting != "all":
        parts += ["--setting", args.setting]
    if args.history != "all":
        parts += ["--history", args.history]
    if args.seeds is not None:
        parts += ["--seeds", str(args.seeds)]
    parts += ["--out", args.out]
    return shlex.join(parts)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from autollm_sampler.benchmark._report import (
        HEADLINE_CAPTION,
        episode_metrics,
        fallback_lines,
        headline_text,
        machine_description,
        write_report,
    )
    from autollm_sampler.benchmark._runner import QUICK_SEEDS, BenchConfig, plan_episodes, run_benchmark
    from autollm_sampler.benchmark.latency import run_latency_cli

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    command = _command(args)
    if args.latency:
        return run_latency_cli(args, command=command)
    cfg = BenchConfig(
        families=args.families,
        methods=args.methods,
        settings=("A", "B") if args.setting == "all" else (args.setting,),
        histories=("full", "sparse") if args.history == "all" else (args.history,),
        seeds=args.seeds if args.seeds is not None else (QUICK_SEEDS if args.quick else 20),
        out=Path(args.out),
        workers=args.workers,
        quick=args.quick,
    )
    try:
        plan = plan_episodes(cfg)
    except ValueError as exc:  # an unknown method or task: one clean line that lists the valid ones
        from autollm_sampler.exceptions import ConfigError

        raise ConfigError(str(exc)) from None
    for s in plan.skipped:
        if not s.scope.startswith("setting"):
            print(f"skipped {s.method} ({s.scope}): {s.reason}")
    print(f"{len(plan.episodes)} episodes on {', '.join(plan.tasks) or 'no tasks'}; cache: {cfg.out / 'episodes.jsonl'}")
    if args.plan:
        return 0
    t0 = time.perf_counter()
    records, errors = run_benchmark(cfg, plan=plan, on_error=lambda k, e: print(f"episode {k} failed: {e}"))
    elapsed = time.perf_counter() - t0
    compute = sum(float(r.get("wall_s", 0.0)) for r in records)
    meta = {
        "command": command,
        "machine": machine_description(),
        "elapsed": f"{elapsed / 60:.1f} min this invocation (episode compute time {compute / 60:.1f} min in total)",
        "workers": cfg.workers,
        "seeds": cfg.seeds,
    }
    summ, notes = write_report(records, cfg.out, meta=meta, skipped=plan.skipped, errors=errors,
                               plots=not args.no_plots)
    for n in notes:
        print(n)
    print()
    print(HEADLINE_CAPTION)
    print(headline_text(summ))
    print()
    print("fallbacks (agents run strict):")
    for line in fallback_lines([episode_metrics(r) for r in records]):
        print(f"  {line}")
    print()
    print(f"wrote {cfg.out / 'RESULTS.md'} ({len(records)} episodes, {elapsed / 60:.1f} min)")
    if not args.quick and not args.skip_latency and not args.methods and not args.families:
        args.out = str(cfg.out)
        run_latency_cli(args, command=shlex.join(["autollm-sampler", "bench", "--latency", "--out", str(cfg.out)]))
    return 1 if errors else 0
