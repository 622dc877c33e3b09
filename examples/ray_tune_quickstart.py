"""Ray Tune quickstart: AutoLLMSearcher on a held-out Step Law target, with cheaper runs as history.

Each Tune trial "trains" by looking up the published outcome of its learning rate and batch size in the
target cell (Step Law dense, N = 1.07B, D = 20B), reporting it over a few iterations as if it were a
training curve, under a ConcurrencyLimiter and the ASHA scheduler. The searcher writes the trial's
fidelity into the config (``config["n_params"]``, ``config["n_tokens"]``) and gets the cheaper cells'
runs as ``history=``.

    python examples/ray_tune_quickstart.py          # 10 trials, 2 at a time
    python examples/ray_tune_quickstart.py --fast   # 4 trials, sparse history

Needs the Step Law raw data (``AUTOLLM_GYM_RAW``, ``../shared/gym_data/raw`` in this repository).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from typing import Any

import numpy as np

from autollm_sampler import gym
from autollm_sampler.integrations.ray import AutoLLMSearcher


def trainable(config: dict[str, Any], configs: list[dict[str, Any]], values: list[float]) -> None:
    """Report the measured loss of the nearest target-table row as a short, decaying training curve."""
    from ray import tune

    lr, bs = float(config["lr"]), float(config["batch_size"])
    dist = [(np.log(c["lr"] / lr)) ** 2 + (np.log(c["batch_size"] / bs)) ** 2 for c in configs]
    final = values[int(np.argmin(dist))]
    for i in range(3):
        tune.report({"loss": final + 0.5 / (i + 1) ** 2 - 0.5 / 9, "n_tokens": config["n_tokens"]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="4 trials and a sparse history (for tests)")
    parser.add_argument("--target", default="N=1.07B,D=20B")
    parser.add_argument("--agent", default="default", help="default, classical or a checkpoint path")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter

    task = gym.make("steplaw-dense-v1")
    cell = task.cell(args.target)
    rng = np.random.default_rng(args.seed)
    history = []
    for c in task.cheaper_cells(args.target):
        rows = rng.choice(len(c), size=min(20, len(c)), replace=False) if args.fast else range(len(c))
        history += [{"params": c.configs[int(i)], "fidelity": c.fidelity, "value": float(c.values[int(i)])} for i in rows]
    lrs = sorted({x for c in task.cells for x in c.space.params["lr"].choices})  # type: ignore[union-attr]
    bss = sorted({x for c in task.cells for x in c.space.params["batch_size"].choices})  # type: ignore[union-attr]
    n = 4 if args.fast else 10

    searcher = AutoLLMSearcher(fidelity=task.fidelity_axes, target=cell.fidelity, history=history, agent=args.agent, seed=args.seed)
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    tuner = tune.Tuner(
        tune.with_parameters(trainable, configs=cell.configs, values=[float(v) for v in cell.values]),
        param_space={"lr": tune.choice(lrs), "batch_size": tune.choice(bss)},
        tune_config=tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=2),
            scheduler=ASHAScheduler(max_t=3, grace_period=1),
            metric="loss", mode="min", num_samples=n, reuse_actors=True,
        ),
        run_config=tune.RunConfig(storage_path=tempfile.mkdtemp(prefix="autollm-ray-"), name="quickstart", verbose=0),
    )
    results = tuner.fit()
    print(f"Target {cell.name}: best measured loss {cell.optimum:.4f}; agent {searcher.agent.name}")
    print(f"{'trial':>5} | {'lr':>9} {'batch':>6} | {'loss':>7} | {'state':>8}")
    best = float("inf")
    for i, t in enumerate(t for t in searcher.history.trials if t.fidelity == cell.fidelity):
        if t.state == "complete":
            best = min(best, float(t.value))  # type: ignore[arg-type]
        print(f"{i + 1:>5} | {t.params['lr']:>9.3g} {t.params['batch_size']:>6} | {t.value if t.value is not None else float('nan'):>7.4f} | {t.state:>8}")
    print(f"Best of {len(results)} Tune trials: relative gap {cell.gap(best):.3f}%")
    print("\n" + searcher.explain())
    return 0


if __name__ == "__main__":
    sys.exit(main())
