"""Where the cost-aware mode spends its budget: the docs' snippet (docs/integrations.md, "Cost-aware mode"),
counted per fidelity level.

    python examples/cost_aware_budget.py            # seeds 0 1 2, the default agent
    python examples/cost_aware_budget.py 0 1 2 3 4 --agent classical

For each seed it prints the number of trials per level in the order they ran, the budget spent, and the
regret of the best target run against the made-up loss's optimum.
"""

from __future__ import annotations

import argparse
import math

import optuna

from autollm_sampler import AutoLLMSampler

TARGET = {"n_params": 1.07e9, "n_tokens": 2e10}
LEVELS = [
    {"n_params": 1.2e8, "n_tokens": 2e9, "cost": 1.0, "name": "small"},
    {"n_params": 3.5e8, "n_tokens": 7e9, "cost": 8.0, "name": "medium"},
    {**TARGET, "cost": 70.0, "name": "target"},
]


def train(lr: float, *, n_params: float, n_tokens: float) -> float:
    """The docs' made-up final loss: its best lr shrinks as the model grows."""
    best_lr = 3e-3 * (n_params / 1.2e8) ** -0.3
    return 1.8 + 40 / n_params**0.2 + 20 / n_tokens**0.15 + 0.15 * math.log10(lr / best_lr) ** 2


def run(seed: int, agent: str) -> None:
    sampler = AutoLLMSampler(fidelity=("n_params", "n_tokens"), target=TARGET, fidelity_levels=LEVELS,
                             budget=350.0, seed=seed, agent=agent)

    def objective(trial: optuna.Trial) -> float:
        fid = trial.user_attrs["fidelity"]
        return train(trial.suggest_float("lr", 1e-4, 1e-2, log=True), n_params=fid["n_params"], n_tokens=fid["n_tokens"])

    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=1000, callbacks=[sampler.stop_when_budget_spent])
    runs: list[list[object]] = []
    for t in study.trials:
        level = t.user_attrs["fidelity_level"]
        if runs and runs[-1][0] == level:
            runs[-1][1] = int(runs[-1][1]) + 1  # type: ignore[call-overload]
        else:
            runs.append([level, 1])
    targets = [t.value for t in study.trials if t.user_attrs["fidelity_level"] == "target" and t.value is not None]
    optimum = train(3e-3 * (TARGET["n_params"] / 1.2e8) ** -0.3, **TARGET)
    regret = f"{min(targets) - optimum:.2e}" if targets else "n/a"
    order = ", ".join(f"{level} x{n}" for level, n in runs)
    print(f"seed {seed}: {len(study.trials)} trials ({order}); spent {sampler.budget_spent(study):.4g} of 350; "
          f"regret of the best target run {regret}")
    print(f"  last trial: {study.trials[-1].user_attrs.get('autollm:schedule', '')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--agent", default="default")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for seed in args.seeds:
        run(seed, args.agent)


if __name__ == "__main__":
    main()
