"""A user's study with learning-rate walls on both sides: how many expensive runs go to waste.

An Optuna study of a synthetic pretraining loss (a log-float learning rate, a float weight decay and a
categorical batch size) whose optimum learning rate drifts lower with scale. Sixteen noisy cheap runs at 1e8
and 3e8 parameters are added as finished trials; then 12 target trials run at 1e9. A learning rate above
8e-3 raises an exception (a divergence: the trial fails), one far below the optimum trains too little (a
much higher loss). Each seed is a different draw of the cheap runs and of the noise.

It prints, per seed, how many of the 12 target runs failed, how many came back worse than 3.2 (the optimum is
3.1), and the best loss found; then the median and range over the seeds.

    python examples/lr_walls_trial.py            # 10 seeds (3-12), the default agent, about a minute
    python examples/lr_walls_trial.py --fast     # 2 seeds, 6 target trials (the test)
    python examples/lr_walls_trial.py --agent classical
"""

from __future__ import annotations

import argparse
import math
import statistics

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution

from autollm_sampler.history import History, Trial
from autollm_sampler.integrations.optuna import AutoLLMSampler, add_history

DISTS = {"lr": FloatDistribution(1e-5, 1e-1, log=True), "wd": FloatDistribution(0.0, 0.3),
         "bs": CategoricalDistribution([64, 128, 256])}
BAD = 3.2  # a run worse than this is a wasted target run (the optimum is 3.1)


def loss(lr: float, wd: float, bs: int, n: float) -> float:
    opt = -2.8 - 0.25 * math.log10(n / 1e8)
    return 3.2 - 0.1 * math.log10(n / 1e8) + 0.3 * (math.log10(lr) - opt) ** 2 + 0.5 * (wd - 0.1) ** 2 + 0.01 * (bs == 64)


def one_seed(seed: int, agent: str, n_target: int) -> tuple[int, int, float]:
    """(failed runs, runs worse than BAD, best loss) of one study."""
    rng = np.random.default_rng(seed)
    cheap = []
    for n in (1e8, 3e8):
        for i in range(8):
            p = {"lr": float(10 ** rng.uniform(-4.5, -1.5)), "wd": float(rng.uniform(0, 0.3)),
                 "bs": int(rng.choice([64, 128, 256]))}
            cheap.append(Trial(id=f"c{n:g}-{i}", params=p, fidelity={"n_params": n},
                               value=loss(p["lr"], p["wd"], int(p["bs"]), n) + rng.normal(0, 0.01)))
    sampler = AutoLLMSampler(fidelity=("n_params",), target={"n_params": 1e9}, agent=agent, seed=0)
    study = optuna.create_study(sampler=sampler)
    add_history(study, History(trials=cheap), distributions=DISTS, sampler=sampler)

    def objective(t: optuna.Trial) -> float:
        lr = t.suggest_float("lr", 1e-5, 1e-1, log=True)
        wd = t.suggest_float("wd", 0.0, 0.3)
        bs = t.suggest_categorical("bs", [64, 128, 256])
        if lr > 8e-3:
            raise RuntimeError(f"diverged at lr {lr:.3g}")
        return loss(lr, wd, bs, 1e9) + rng.normal(0, 0.01)

    study.optimize(objective, n_trials=n_target, catch=(RuntimeError,))
    runs = study.trials[len(cheap):]
    failed = sum(t.state == optuna.trial.TrialState.FAIL for t in runs)
    worse = sum(t.value is not None and t.value > BAD for t in runs)
    best = min((t.value for t in runs if t.value is not None), default=math.inf)
    return failed, worse, best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", default="default", help="default (the shipped agent) or classical")
    ap.add_argument("--fast", action="store_true", help="2 seeds, 6 target trials")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    seeds = [3, 4] if args.fast else list(range(3, 13))
    n_target = 6 if args.fast else 12
    print(f"{n_target} target trials per seed; a run worse than {BAD} is counted as wasted (optimum 3.1)")
    rows = []
    for s in seeds:
        failed, worse, best = one_seed(s, args.agent, n_target)
        rows.append((failed, worse, best))
        print(f"seed {s:2d}: failed {failed}, worse than {BAD} {worse}, best {best:.4f}")
    for i, name in enumerate(("failed", f"worse than {BAD}", "best")):
        vals = [r[i] for r in rows]
        print(f"{name}: median {statistics.median(vals):.4g} [{min(vals):.4g}, {max(vals):.4g}], "
              f"total {sum(vals):.4g}" if i < 2 else
              f"{name}: median {statistics.median(vals):.4f} [{min(vals):.4f}, {max(vals):.4f}]")


if __name__ == "__main__":
    main()
