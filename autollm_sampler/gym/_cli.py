"""``autollm-sampler gym ...``: list, inspect, fetch and roll out the LLMConfig-Gym tasks.

Sub-commands (added to the top-level parser by :func:`add_parser`):

* ``gym list``: every registered task with its cells, rows, objective and licence;
* ``gym info ID``: a task's metadata, cells (fidelity, rows, cost, optimum) and train/test split;
* ``gym fetch [--dest DIR] [--mirror URL]``: download the pinned raw files and verify their sha256;
* ``gym rollout ID --policy random|transfer|agent|... --target CELL --seed S [--setting A|B] [--history full|sparse]``:
  run one episode and print every step and the regret (benchmark methods, the agent among them, are
  offered by the benchmark layer's CLI, which registers them in :data:`EXTRA_POLICIES`).

Bad input raises :class:`~autollm_sampler.exceptions.AutoLLMSamplerError` subclasses, which the top-level
CLI turns into exit code 2 with the message.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
from typing import Any

from autollm_sampler.exceptions import ConfigError, RawDataError
from autollm_sampler.gym._data import (
    RAW_ENV,
    default_cache_dir,
    fetch,
    manifest,
    resolve_raw_dir,
    source_info,
)
from autollm_sampler.gym._env import LLMConfigEnv
from autollm_sampler.gym._policies import POLICIES, run_cost_episode, run_episode
from autollm_sampler.gym._registry import make, registry
from autollm_sampler.gym._splits import experiments
from autollm_sampler.gym._table import Cell, TabularTask

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> None:
    """Add the ``gym`` command and its sub-commands to the top-level ``subparsers``."""
    gym = subparsers.add_parser("gym", help="LLMConfig-Gym: list, inspect, fetch and roll out tasks",
                                description="LLMConfig-Gym: offline multi-fidelity tasks built from published "
                                "LLM experiment tables.")
    sub = gym.add_subparsers(dest="gym_command", metavar="SUBCOMMAND")
    gym.set_defaults(func=lambda args: _help(gym))

    p = sub.add_parser("list", help="list the registered tasks (ids, cells, rows, objective, licence)")
    _raw_arg(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("info", help="show a task's metadata, cells and train/test split")
    p.add_argument("id", help="task id, e.g. steplaw-dense-v1")
    p.add_argument("--objective", help="another objective column (ADMIRE, RegMix)")
    _raw_arg(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("fetch", help="download the pinned raw files and verify their sha256")
    p.add_argument("--dest", help=f"target directory (default: {default_cache_dir()})")
    p.add_argument("--mirror", help="base URL serving <source>/<file>, e.g. file:///data/gym_raw")
    p.add_argument("--source", action="append", choices=sorted(manifest()), help="only this source (repeatable)")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("rollout", help="run one episode with a reference policy and print each step")
    p.add_argument("id", help="task id, e.g. admire-ift-v1")
    p.add_argument("--policy", default="transfer", metavar="POLICY",
                   help=f"a reference policy ({', '.join(sorted(POLICIES))}) or any `bench` method, e.g. agent "
                   "(see `autollm-sampler bench --help`); default: %(default)s")
    p.add_argument("--target", help="target cell (default: the task's first test target)")
    p.add_argument("--seed", type=int, default=0, help="episode and policy seed")
    p.add_argument("--setting", choices=["A", "B"], default="A",
                   help="A: low-fidelity history + k target runs; B: no history, cost budget")
    p.add_argument("--history", choices=["full", "sparse"], default="full",
                   help="Setting A history: every cheaper run, or 20 random runs per cheaper cell")
    p.add_argument("--budget", type=int, default=10, help="Setting A: number of target evaluations")
    p.add_argument("--budget-runs", type=float, default=5.0, help="Setting B: budget in target-run costs")
    p.add_argument("--objective", help="another objective column (ADMIRE, RegMix)")
    p.add_argument("--show-config", action="store_true", help="print each evaluated configuration")
    _raw_arg(p)
    p.set_defaults(func=cmd_rollout)


def _raw_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--raw-dir", help=f"raw-data directory (default: ${RAW_ENV}, else the fetch cache)")


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _make(args: argparse.Namespace) -> TabularTask:
    options = {"objective": args.objective} if getattr(args, "objective", None) else {}
    spec = registry().get(args.id)
    if options and spec is not None and "objective" not in inspect.signature(spec.builder).parameters:
        raise ConfigError(f"task {args.id!r} has a fixed objective; drop --objective")
    return make(args.id, raw_dir=args.raw_dir, **options)


# ------------------------------------------------------------------------------------------- list / info
def cmd_list(args: argparse.Namespace) -> int:
    rows: list[list[str]] = []
    missing = False
    for tid, spec in registry().items():
        try:
            task = make(tid, raw_dir=args.raw_dir)
        except RawDataError:
            missing = True
            licence = source_info(spec.source)["licence"] if spec.source else ""
            rows.append([tid, str(spec.expected_cells or "?"), str(spec.expected_rows or "?"),
                         "(raw data missing)", "", licence])
            continue
        meta = task.metadata
        rows.append([tid, str(len(task.cells)), str(task.n_rows), meta.objective,
                     "max" if meta.direction == "maximize" else "min", meta.licence])
    _table(["id", "cells", "rows", "objective", "dir", "licence"], rows)
    if missing:
        print(f"\nsome raw files are missing under {resolve_raw_dir(args.raw_dir)}: run `autollm-sampler gym "
              f"fetch` or set {RAW_ENV}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    task = _make(args)
    meta = task.metadata
    spec = registry().get(task.id)
    print(f"{task.id}: {meta.description}")
    print(f"  objective    {meta.objective} ({meta.direction})")
    print(f"  cost unit    {meta.cost_unit}")
    print(f"  fidelity     {', '.join(task.fidelity_axes)}")
    print(f"  rows, cells  {task.n_rows} rows in {len(task.cells)} cells"
          + (f" (expected {spec.expected_rows} / {spec.expected_cells})" if spec and spec.expected_rows else ""))
    print(f"  licence      {meta.licence}")
    print(f"  citation     {meta.citation}")
    print(f"  source       {meta.source}")
    print(f"  schema       v{meta.schema_version}")
    print()
    _table(["cell", "fidelity", "rows", "cost/run", "optimum", "p90", "params"],
           [[c.name, _fid(c), str(len(c)), f"{c.cost:.4g}", f"{c.optimum:.5g}", f"{c.p90:.5g}",
             str(len(c.space.params))] for c in task.cells])
    print()
    for split in ("test", "train"):
        for e in experiments(task, split):  # type: ignore[arg-type]
            hist = ", ".join(e.history_cells) if e.history_cells else "none"
            print(f"  {split:5s} target {e.target}  (history: {hist})")
    target = task.cells[-1]
    print(f"\nsearch space of {target.name}:")
    for name, p in target.space.params.items():
        print(f"  {name}: {_describe_param(p)}")
    return 0


def _fid(cell: Cell) -> str:
    return ",".join(f"{k}={v:.4g}" for k, v in cell.fidelity.items())


def _describe_param(p: Any) -> str:
    if getattr(p, "type", "") == "simplex":
        return f"simplex over {len(p.components)} components"
    if getattr(p, "type", "") == "categorical":
        vals = list(p.choices)
        shown = ", ".join(repr(v) for v in vals[:8]) + (", ..." if len(vals) > 8 else "")
        return f"categorical ({len(vals)}): {shown}"
    return p.model_dump_json()  # type: ignore[no-any-return]


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True)).rstrip())


# ------------------------------------------------------------------------------------------- fetch
def cmd_fetch(args: argparse.Namespace) -> int:
    root = fetch(args.dest, mirror=args.mirror, sources=args.source, progress=True)
    n = sum(len(fs) for s, fs in manifest().items() if not args.source or s in args.source)
    print(f"{n} raw files verified in {root}")
    if args.dest is not None and os.path.abspath(args.dest) != os.path.abspath(default_cache_dir()):
        print(f"use them with: export {RAW_ENV}={os.path.abspath(root)}")
    return 0


# ------------------------------------------------------------------------------------------- rollout
def cmd_rollout(args: argparse.Namespace) -> int:
    task = _make(args)
    target = args.target or experiments(task, "test")[0].target
    if target not in task.cell_names:
        import difflib

        close = difflib.get_close_matches(target, task.cell_names, n=3, cutoff=0.3)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"task {task.id!r} has no cell {target!r}{hint} Cells: {task.cell_names}")
    if args.budget < 1 or args.budget_runs <= 0:
        raise ConfigError(f"--budget must be >= 1 and --budget-runs > 0, got {args.budget} and {args.budget_runs}")
    env = LLMConfigEnv(task, target, setting=args.setting, history=args.history, budget=args.budget,
                       budget_runs=args.budget_runs)
    policy = _policy(args.policy, args.seed)
    print(f"rollout {task.id}  target={target}  setting={args.setting}  history={args.history}  "
          f"policy={args.policy}  seed={args.seed}")
    hist_cells = ", ".join(c.name for c in env.history_cells) or "none"
    if args.setting == "A":
        print(f"history cells: {hist_cells}; budget: {args.budget} target evaluations")
        steps = run_episode(env, policy, seed=args.seed)
        rec = None
    else:
        print(f"cells: {', '.join(c.name for c in env.cells)}; budget: {args.budget_runs:g} x target cost "
              f"= {args.budget_runs * env.target.cost:.4g} {task.metadata.cost_unit}")
        steps, rec = run_cost_episode(env, policy, seed=args.seed)
    _print_steps(env, steps, args.show_config)
    last = steps[-1] if steps else {"regret": 1.0, "gap": float("inf"), "best_value": None, "invalid_count": 0,
                                     "cost_spent": 0.0}
    opt = env.target.optimum
    best = last["best_value"]
    print(f"final: best {_num(best)} (optimum {opt:.6g}), regret {last['regret']:.4f}, gap {last['gap']:.3f}%, "
          f"invalid proposals {last['invalid_count']}, cost {last['cost_spent']:.4g}")
    if rec is not None:
        print(f"recommendation: value {rec['value']:.6g}, regret {rec['regret']:.4f}, gap {rec['gap']:.3f}%, "
              f"cost spent {rec['cost_spent']:.4g} ({rec['cost_spent'] / env.target.cost:.2f} target runs)")
    return 0


#: set by the benchmark layer's CLI: ``(method name, seed) -> policy`` for names beyond the reference policies
#: (raises ValueError for an unknown name); None when that layer is not loaded
EXTRA_POLICIES: Any = None


def _policy(name: str, seed: int) -> Any:
    if name in POLICIES:
        return POLICIES[name](seed=seed)
    if EXTRA_POLICIES is not None:
        try:
            return EXTRA_POLICIES(name, seed)
        except ValueError as exc:
            raise ConfigError(f"--policy: {exc}") from None
    raise ConfigError(f"--policy {name!r} is not a reference policy ({', '.join(sorted(POLICIES))})")


def _print_steps(env: LLMConfigEnv, steps: list[dict[str, Any]], show_config: bool) -> None:
    rows = []
    for k, s in enumerate(steps, start=1):
        rows.append([str(k), str(s["cell"]), str(s["row"]), _num(s["value"]), _num(s["best_value"]),
                     f"{s['regret']:.4f}", f"{s['gap']:.3f}" if s["best_value"] is not None else "-",
                     f"{s['cost_spent']:.4g}", "yes" if s["invalid"] else "no"])
    _table(["step", "cell", "row", "value", "best", "regret", "gap%", "cost", "snapped"], rows)
    if show_config:
        for k, s in enumerate(steps, start=1):
            cell = env.task.cell(str(s["cell"]))
            print(f"  step {k}: {json.dumps(_round(cell.configs[int(s['row'])]), sort_keys=False)}")


def _num(x: Any) -> str:
    return "-" if x is None else f"{float(x):.6g}"


def _round(cfg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if isinstance(v, dict):
            out[k] = {c: round(float(w), 4) for c, w in v.items() if w > 0}
        elif isinstance(v, float):
            out[k] = float(f"{v:.6g}")
        else:
            out[k] = v
    return out
