"""A small multi-fidelity study with the OptunaHub AutoLLMSampler.

Twelve cheap runs (a 120M-parameter model on 2B tokens) are added as finished trials with their fidelity in
the user attributes; the sampler then proposes five runs at the expensive target (1.07B parameters, 20B
tokens). The objective is a made-up loss standing in for a training run.

From the registry the package loads with ``optunahub.load_module("samplers/autollm")``; this script loads
the copy next to it, so it runs the same in this repository and in a registry checkout.
"""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import optunahub
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import create_trial

HERE = Path(__file__).resolve().parent
module = optunahub.load_local_module("/".join(HERE.parts[-2:]), registry_root=str(HERE.parents[1]))

TARGET = {"n_params": 1.07e9, "n_tokens": 2e10}
CHEAP = {"n_params": 1.2e8, "n_tokens": 2e9}


def train(lr: float, batch_size: int, n_params: float, n_tokens: float) -> float:
    """A made-up final loss whose best learning rate shrinks as the model grows."""
    best_lr = 3e-3 * (n_params / 1.2e8) ** -0.3
    return (1.8 + 40 / n_params**0.2 + 20 / n_tokens**0.15 + 0.15 * math.log10(lr / best_lr) ** 2
            + 0.01 * abs(math.log2(batch_size / 128)))


def objective(trial: optuna.Trial) -> float:
    lr = trial.suggest_float("lr", 1e-4, 1e-2, log=True)
    batch_size = trial.suggest_categorical("batch_size", [64, 128, 256])
    return train(lr, batch_size, **TARGET)


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = module.AutoLLMSampler(target=TARGET, seed=0)
    study = optuna.create_study(sampler=sampler)
    dists = {"lr": FloatDistribution(1e-4, 1e-2, log=True), "batch_size": CategoricalDistribution([64, 128, 256])}
    study.add_trials([
        create_trial(params={"lr": lr, "batch_size": bs}, distributions=dists, value=train(lr, bs, **CHEAP),
                     user_attrs={"fidelity": CHEAP})
        for lr in (3e-4, 1e-3, 3e-3, 1e-2) for bs in (64, 128, 256)
    ])
    study.optimize(objective, n_trials=5)
    for t in study.trials[12:]:
        predicted = t.user_attrs.get("autollm:predicted_value")
        print(f"trial {t.number}: lr={t.params['lr']:.2e} batch_size={t.params['batch_size']} -> {t.value:.4f}"
              + ("" if predicted is None else f"  (predicted {predicted:.3f})"))
    best = sampler.recommend(study)  # the best run at the target (study.best_trial would mix in the cheap runs)
    print(f"best target run: {best.params} -> {best.predicted_value:.4f}")


if __name__ == "__main__":
    main()
