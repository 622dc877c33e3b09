"""Optuna quickstart: tune a held-out Step Law target from cheaper runs, AutoLLMSampler beside TPESampler.

The target is a real pretraining setting never used to train the agent (Step Law dense, N = 1.07B
parameters, D = 20B tokens). The objective looks up the published outcome (smoothed final loss) of the
learning rate and batch size it is given, so every "run" is a real measured run. The runs of the cheaper
cells (smaller N or D) are added to each study as finished trials with their fidelity in the user
attributes; that is the low-fidelity evidence. Both samplers get the same evidence and the same budget
of target runs, and the script prints them side by side, with the relative gap to the best run in the
target table (lower is better; 0% is the optimum).

    python examples/optuna_quickstart.py           # all cheaper runs as history, 10 target trials, 5 seeds
    python examples/optuna_quickstart.py --fast    # 20 random runs per cheaper cell, 5 target trials, 2 seeds

Seed 0 is printed trial by trial; then the best gap after k target runs over every seed (median and
range), so one lucky or unlucky seed does not make the picture.

Needs the Step Law raw data: ``AUTOLLM_GYM_RAW`` (``make demo`` sets it to ``../shared/gym_data/raw`` when that
exists), else the cache that ``autollm-sampler gym fetch`` fills.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import create_trial

from autollm_sampler import gym
from autollm_sampler.exceptions import RawDataError
from autollm_sampler.integrations.optuna import AutoLLMSampler


def build_history(task: gym.TabularTask, target: str, *, sparse: int | None, seed: int) -> tuple[list[Any], dict[str, Any]]:
    """The cheaper cells' runs as finished Optuna trials, and the distributions shared by all trials."""
    cells = task.cheaper_cells(target)
    lrs = sorted({c for cell in task.cells for c in cell.space.params["lr"].choices})  # type: ignore[union-attr]
    bss = sorted({c for cell in task.cells for c in cell.space.params["batch_size"].choices})  # type: ignore[union-attr]
    dists = {"lr": CategoricalDistribution(lrs), "batch_size": CategoricalDistribution(bss)}
    rng = np.random.default_rng(seed)
    trials = []
    for cell in cells:
        rows = range(len(cell)) if sparse is None else rng.choice(len(cell), size=min(sparse, len(cell)), replace=False)
        for i in rows:
            trials.append(create_trial(
                params=dict(cell.configs[int(i)]), distributions=dists, value=float(cell.values[int(i)]),
                user_attrs={"fidelity": dict(cell.fidelity), "cell": cell.name},
            ))
    return trials, dists


def make_objective(cell: gym.Cell, dists: dict[str, CategoricalDistribution]) -> Any:
    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_categorical("lr", dists["lr"].choices)
        bs = trial.suggest_categorical("batch_size", dists["batch_size"].choices)
        row, exact = cell.snap({"lr": lr, "batch_size": bs})  # off the target grid: the nearest measured run
        if not exact:
            trial.set_user_attr("snapped_to", dict(cell.configs[row]))
        return float(cell.values[row])

    return objective


def run_study(sampler: optuna.samplers.BaseSampler, history: list[Any], dists: dict[str, CategoricalDistribution],
              cell: gym.Cell, n_trials: int) -> optuna.Study:
    study = optuna.create_study(sampler=sampler, direction="minimize")
    study.add_trials(history)
    study.optimize(make_objective(cell, dists), n_trials=n_trials)
    return study


AGENTS = {
    "transformer": "the shipped research agent: a trained in-context transformer policy (it reads "
                   "the whole history, one token per run, and scores candidate configurations for the target; "
                   "trained by training/pipeline.py on other tasks' cheap-to-expensive histories, never on this "
                   "target) plus an adaptation step that corrects its predictions with the target runs as they "
                   "come back (a small GP on its residuals)",
    "classical": "the classical agent: transfers the best configurations of the nearest cheaper cell (no model)",
}


def _best_gaps(study: optuna.Study, cell: gym.Cell, ks: tuple[int, ...]) -> list[float]:
    vals = [float(t.value) for t in study.trials if "fidelity" not in t.user_attrs]  # type: ignore[arg-type]
    return [cell.gap(min(vals[:k])) for k in ks]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="sparse history, 5 target trials, 2 seeds (for tests)")
    parser.add_argument("--target", default="N=1.07B,D=20B", help="Step Law dense cell to tune (default N=1.07B,D=20B)")
    parser.add_argument("--trials", type=int, default=None, help="target trials per sampler (default 10, --fast 5)")
    parser.add_argument("--agent", default="default", help="agent of AutoLLMSampler: default, classical or a checkpoint path")
    parser.add_argument("--seeds", type=int, default=None, help="seeds of the summary (default 5, --fast 2); seed 0 is shown in full")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    try:
        task = gym.make("steplaw-dense-v1")
    except RawDataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cell = task.cell(args.target)
    n_trials = args.trials or (5 if args.fast else 10)
    n_seeds = args.seeds or (2 if args.fast else 5)
    split = "held-out test target" if gym.is_test_target(task, cell) else "training target"
    print(f"Target: steplaw-dense-v1 cell {cell.name} ({split}); {len(cell)} measured runs, best loss {cell.optimum:.4f}")

    ks = tuple(k for k in (1, 3, 5, 10) if k <= n_trials)
    gaps: dict[str, list[list[float]]] = {"ours": [], "tpe": []}
    for seed in range(n_seeds):
        history, dists = build_history(task, args.target, sparse=20 if args.fast else None, seed=seed)
        sampler = AutoLLMSampler(fidelity=task.fidelity_axes, target=cell.fidelity, agent=args.agent, seed=seed)
        ours = run_study(sampler, history, dists, cell, n_trials)
        tpe = run_study(optuna.samplers.TPESampler(seed=seed), history, dists, cell, n_trials)
        gaps["ours"].append(_best_gaps(ours, cell, ks))
        gaps["tpe"].append(_best_gaps(tpe, cell, ks))
        if seed == 0:
            print(f"History: {len(history)} runs from {len(task.cheaper_cells(args.target))} cheaper cells, added as finished trials")
            name = sampler.agent.name
            print(f"Agent: {name}, {AGENTS.get(name, 'loaded from ' + str(args.agent))}\n")
            print("Seed 0, trial by trial (TPESampler gets the same finished cheap trials, i.e. warm-started):")
            show_trajectories(ours, tpe, cell)
            first = [t for t in ours.trials if "fidelity" not in t.user_attrs][0]
            print(f"\nWhy AutoLLMSampler's first proposal: {first.user_attrs.get('autollm:rationale')}")

    print(f"\nOver {n_seeds} seed(s) (samplers' seeds{', and the sparse history' if args.fast else ''}): best relative gap "
          "to the table optimum after k target runs, median [min, max]")
    head = f"{'k':>3} | {'AutoLLMSampler':>24} | {'TPESampler (warm)':>24}"
    print(head)
    print("-" * len(head))
    for j, k in enumerate(ks):
        cols = []
        for key in ("ours", "tpe"):
            col = np.array([g[j] for g in gaps[key]])
            cols.append(f"{np.median(col):.3f}% [{col.min():.3f}, {col.max():.3f}]")
        print(f"{k:>3} | {cols[0]:>24} | {cols[1]:>24}")
    print("\nsampler.explain(study) returns every proposal with its prediction and rationale.")
    return 0


def show_trajectories(ours: optuna.Study, tpe: optuna.Study, cell: gym.Cell) -> None:
    def rows(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
        return [t for t in study.trials if "fidelity" not in t.user_attrs]

    head = f"{'k':>2} | {'AutoLLMSampler (lr, bs)':>24} {'loss':>7} {'best gap':>8} | {'TPESampler (lr, bs)':>22} {'loss':>7} {'best gap':>8}"
    print(head)
    print("-" * len(head))
    best = {"ours": float("inf"), "tpe": float("inf")}
    for k, (a, b) in enumerate(zip(rows(ours), rows(tpe), strict=True), 1):
        best["ours"] = min(best["ours"], float(a.value))  # type: ignore[arg-type]
        best["tpe"] = min(best["tpe"], float(b.value))  # type: ignore[arg-type]
        print(
            f"{k:>2} | {a.params['lr']:>14.3g}, {a.params['batch_size']:>7} {a.value:>7.4f} {cell.gap(best['ours']):>7.3f}% |"
            f" {b.params['lr']:>12.3g}, {b.params['batch_size']:>7} {b.value:>7.4f} {cell.gap(best['tpe']):>7.3f}%"
        )
    print(f"Final relative gap after {len(rows(ours))} target runs: AutoLLMSampler {cell.gap(best['ours']):.3f}%, "
          f"TPESampler {cell.gap(best['tpe']):.3f}%")
    distinct = {name: len({(t.params["lr"], t.params["batch_size"]) for t in rows(s)}) for name, s in (("ours", ours), ("tpe", tpe))}
    print(f"Distinct configurations run: AutoLLMSampler {distinct['ours']}, TPESampler {distinct['tpe']} "
          "(every repeat is an expensive run spent on a known outcome)")


if __name__ == "__main__":
    sys.exit(main())
