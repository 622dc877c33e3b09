"""The user-objective suite: the agent on objectives a user brings, not on the gym's grids.

Run ``python -m autollm_sampler.benchmark.userobj --seeds 20 --out docs/benchmarks/user-objectives``
(``make bench-user``). It prints the tables and writes ``RESULTS.md`` and ``episodes.csv`` into ``--out``.

Each task is a synthetic multi-fidelity family held out from the agent's training (its functional forms are
not those of ``training/synthetic.py``, and its seeds are drawn here): a continuous or mixed space, a true
noise-free objective at every fidelity, and a target fidelity above every cheap one. Families:

``adamw``
    log learning rate, integer warmup on a step-100 grid, categorical batch size and a weakly relevant
    weight decay over a model-size ladder. The lr optimum falls with size as a power law, the batch-size
    and warmup optima grow; lr and batch size interact; runs diverge beyond a wall above the lr optimum
    that warmup pushes out (a loss of 7.0, or a failed run, by family seed).
``saturating``
    three floats whose optima move with (N, D) along a saturating curve (fast at small scale, flat near the
    target), plus an irrelevant float; two fidelity axes; a divergence wall on the first parameter.
``nonmonotone``
    a log-scaled float whose optimum moves up and then down with size, an integer depth whose optimum
    depends on a float ratio (interacting parameters), and a failure wall at high lr.
``mixture``
    a 5-component data mixture (simplex) plus a log learning rate; the ideal weights drift with size.

Methods: ``agent`` (the shipped checkpoint), ``agent-noadapt`` (the same without the in-context adaptation of
``agent/_adapt.py``), ``classical`` (the classical agent: transfer, then random), ``random``, and Optuna's
TPE, GP and CMA-ES samplers warm-started with the cheap runs (TPE and GP: the cheap runs added as finished
trials; CMA-ES: as ``source_trials`` over the numeric parameters).

The cheap history is a random search of 5-20 runs per cheap cell, with noise, divergence and failures as
the objective gives them. A method proposes k = 1..10 target runs one after another and sees each noisy
outcome (or failure). A proposal is scored by its true noise-free outcome (no snapping); the optimum is a
dense search of the true function (40,000 samples refined locally). Figures:

* median relative gap at k = 1, 2, 3, 5, 10 (a failed or diverged run does not improve the best; an
  episode with no successful run has an infinite gap);
* **all-failed episodes**: every target run failed or diverged (a non-failing region always exists here);
* **repeat after failure**: share of proposals within 0.05 (unit-cube distance over sqrt(width)) of an
  earlier failed or diverged target run;
* **coverage**: share of proposals whose observed outcome lies in the method's 80% predictive interval
  (methods that predict), with the median interval width, and the same share for the first proposal alone
  (made before any target run returned: an extrapolation);
* **crashes**: the agent, its no-adaptation ablation, the classical agent and warm TPE again with the first
  target run and 15% of the later ones crashing whatever their configuration (``run_episode(crash=True)``);
* **parallel**: q = 4 proposals at a time with the pending ones known, median normalised regret at k = 8
  against the same method's sequential k = 8;
* **fallbacks**: proposals an agent handed to its classical strategy (the suite runs strict).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autollm_sampler.history import History, Trial, TrialState
from autollm_sampler.space import SearchSpace

__all__ = ["FAMILIES", "METHODS", "UserTask", "make_task", "run_episode", "run_suite", "main"]

logger = logging.getLogger(__name__)

FAMILIES = ("adamw", "saturating", "nonmonotone", "mixture")
METHODS = ("agent", "agent-noadapt", "classical", "random", "tpe-warm", "gp-warm", "cmaes-warm")
KS = (1, 2, 3, 5, 10)
#: seeds of the suite's tasks start here, far from any training seed of ``training/synthetic.py``
SEED_BASE = 90_000
DIVERGED = 7.0
Z80 = 1.2815515655446004  # the 90% quantile of a standard normal: an 80% central interval is mu +- Z80 sigma
FAIL_RADIUS = 0.05

Values = dict[str, np.ndarray]


# --------------------------------------------------------------------------------------------- tasks
@dataclass
class UserTask:
    """One held-out multi-fidelity objective."""

    family: str
    seed: int
    space: SearchSpace
    cheap: list[dict[str, float]]
    target: dict[str, float]
    noise: float
    true_fn: Callable[[Values, Mapping[str, float]], np.ndarray]  # noise-free loss; NaN = failed run
    sampler: Callable[[np.random.Generator, int], Values]
    optimum: float = math.nan
    p90: float = math.nan
    info: dict[str, Any] = field(default_factory=dict)

    def values_of(self, configs: Sequence[Mapping[str, Any]]) -> Values:
        out: Values = {}
        for name, p in self.space.params.items():
            if p.type == "simplex":
                out[name] = np.array([[float(c[name][k]) for k in p.components] for c in configs])
            else:
                out[name] = np.array([c[name] for c in configs], dtype=float)
        return out

    def configs_of(self, vals: Values) -> list[dict[str, Any]]:
        n = len(next(iter(vals.values())))
        out = []
        for i in range(n):
            c: dict[str, Any] = {}
            for name, p in self.space.params.items():
                v = vals[name][i]
                if p.type == "simplex":
                    c[name] = {k: float(w) for k, w in zip(p.components, v, strict=True)}
                elif p.type == "int":
                    c[name] = int(round(float(v)))
                elif p.type == "categorical":
                    c[name] = type(p.choices[0])(v)
                else:
                    c[name] = float(v)
            out.append(c)
        return out

    def true(self, config: Mapping[str, Any], fid: Mapping[str, float] | None = None) -> float:
        return float(self.true_fn(self.values_of([config]), fid or self.target)[0])

    def observe(self, config: Mapping[str, Any], fid: Mapping[str, float], rng: np.random.Generator) -> float:
        """A noisy run: the true loss plus noise; NaN for a failed run; diverged runs report 7.0 exactly."""
        v = self.true(config, fid)
        if not math.isfinite(v) or v >= DIVERGED:
            return v
        return v + float(rng.normal(0, self.noise))


def _log_levels(rng: np.random.Generator, n: int, lo: float, hi: float) -> list[float]:
    return sorted(float(x) for x in np.exp(rng.uniform(math.log(lo), math.log(hi), n)))


def _adamw(rng: np.random.Generator) -> dict[str, Any]:
    space = SearchSpace.from_dict({"params": {
        "lr": {"type": "float", "low": 1e-5, "high": 3e-2, "log": True},
        "warmup_steps": {"type": "int", "low": 0, "high": 3000, "step": 100},
        "batch_size": {"type": "categorical", "choices": [64, 128, 256, 512, 1024]},
        "weight_decay": {"type": "float", "low": 0.0, "high": 0.3},
    }})
    nt = float(np.exp(rng.uniform(math.log(8e8), math.log(3e9))))
    cheap = [{"n_params": n} for n in _log_levels(rng, int(rng.integers(4, 7)), 1.5e7, nt / 4)]
    lr_t, alpha = float(np.exp(rng.uniform(math.log(2e-4), math.log(1.5e-3)))), rng.uniform(0.3, 0.7)
    lbs_t, gamma = rng.uniform(7.0, 9.5), rng.uniform(0.1, 0.4)
    w_t, wd_t = rng.uniform(500, 2000), rng.uniform(0.03, 0.15)
    a1, a2, a3, a4 = rng.uniform(0.02, 0.05), rng.uniform(0.006, 0.015), rng.uniform(0.005, 0.02), rng.uniform(0.1, 0.5)
    a5 = rng.uniform(-0.8, 0.8) * math.sqrt(a1 * a2)
    wall, fail_nan = float(np.exp(rng.uniform(math.log(4), math.log(10)))), bool(rng.random() < 0.5)
    e_t = rng.uniform(2.2, 2.8)

    def fn(v: Values, fid: Mapping[str, float]) -> np.ndarray:
        t = math.log(fid["n_params"] / nt)
        dl = np.log(v["lr"]) - (math.log(lr_t) - alpha * t)
        db = np.log2(v["batch_size"]) - (lbs_t + gamma * t / math.log(2))
        dw = (v["warmup_steps"] - w_t * math.exp(0.3 * t)) / 1000.0
        loss = (e_t + 0.35 * (math.exp(-0.3 * t) - 1) + a1 * dl**2 + a2 * db**2 + a3 * dw**2
                + a4 * (v["weight_decay"] - wd_t) ** 2 + a5 * dl * db)
        diverged = dl > math.log(wall) + 0.4 * v["warmup_steps"] / 1000.0
        return np.where(diverged, np.nan if fail_nan else DIVERGED, loss)

    def sample(r: np.random.Generator, n: int) -> Values:
        return {"lr": np.exp(r.uniform(math.log(1e-5), math.log(3e-2), n)),
                "warmup_steps": 100.0 * r.integers(0, 31, n),
                "batch_size": r.choice([64.0, 128.0, 256.0, 512.0, 1024.0], n),
                "weight_decay": r.uniform(0, 0.3, n)}

    return {"space": space, "cheap": cheap, "target": {"n_params": nt}, "fn": fn, "sample": sample,
            "noise": float(rng.uniform(0.002, 0.01)), "info": {"wall": wall, "fail": "nan" if fail_nan else "7.0"}}


def _saturating(rng: np.random.Generator) -> dict[str, Any]:
    space = SearchSpace.from_dict({"params": {
        "x1": {"type": "float", "low": 0.0, "high": 1.0},
        "x2": {"type": "float", "low": 0.0, "high": 1.0},
        "x3": {"type": "float", "low": 0.0, "high": 1.0},
        "dropout": {"type": "float", "low": 0.0, "high": 0.3},
    }})
    nt, dt = 2e9, 4e10
    pairs = [(n, d) for n in _log_levels(rng, 3, 2e7, 3e8) for d in (nt * 2.0, dt / 8)]
    cheap = [{"n_params": n, "n_tokens": float(d * n / nt)} for n, d in pairs]
    c0, cinf = rng.uniform(0.15, 0.85, 3), rng.uniform(0.15, 0.85, 3)
    k = rng.uniform(0.4, 1.2, 3)
    a = rng.uniform(0.3, 1.5, 3)
    e_t = rng.uniform(2.0, 3.0)

    def centre(fid: Mapping[str, float]) -> np.ndarray:
        s = math.log(fid["n_params"] / 2e7) + 0.5 * math.log(fid["n_tokens"] / 4e8)
        return cinf + (c0 - cinf) * np.exp(-k * s)  # type: ignore[no-any-return]

    def fn(v: Values, fid: Mapping[str, float]) -> np.ndarray:
        c = centre(fid)
        x = np.stack([v["x1"], v["x2"], v["x3"]], axis=1)
        t = math.log(fid["n_params"] / nt)
        loss = e_t + 0.3 * (math.exp(-0.3 * t) - 1) + ((x - c) ** 2 * a).sum(axis=1)
        return np.where(v["x1"] > c[0] + 0.35, np.nan, loss)

    def sample(r: np.random.Generator, n: int) -> Values:
        return {"x1": r.random(n), "x2": r.random(n), "x3": r.random(n), "dropout": r.uniform(0, 0.3, n)}

    return {"space": space, "cheap": cheap, "target": {"n_params": nt, "n_tokens": dt}, "fn": fn, "sample": sample,
            "noise": float(rng.uniform(0.002, 0.01)), "info": {}}


def _nonmonotone(rng: np.random.Generator) -> dict[str, Any]:
    space = SearchSpace.from_dict({"params": {
        "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "depth": {"type": "int", "low": 2, "high": 24},
        "ratio": {"type": "float", "low": 1.0, "high": 8.0},
    }})
    nt = 1e9
    cheap = [{"n_params": n} for n in _log_levels(rng, int(rng.integers(4, 7)), 1e7, 2.5e8)]
    m_t, amp, omega, phi = math.log(rng.uniform(1e-3, 1e-2)), rng.uniform(0.5, 1.2), rng.uniform(0.5, 1.0), rng.uniform(0, 3)
    d0, d1 = rng.uniform(2, 6), rng.uniform(1.0, 2.5)
    r_t = rng.uniform(2, 6)
    e_t = rng.uniform(2.0, 3.0)

    def fn(v: Values, fid: Mapping[str, float]) -> np.ndarray:
        t = math.log(fid["n_params"] / nt)
        m = m_t + amp * (math.sin(omega * t + phi) - math.sin(phi))
        dl = np.log(v["lr"]) - m
        d_star = d0 + d1 * v["ratio"]  # the depth optimum follows the ratio: the two interact
        loss = (e_t + 0.3 * (math.exp(-0.3 * t) - 1) + 0.04 * dl**2 + 0.004 * (v["depth"] - d_star) ** 2
                + 0.02 * (v["ratio"] - r_t) ** 2)
        return np.where(dl > math.log(6.0), np.nan, loss)

    def sample(r: np.random.Generator, n: int) -> Values:
        return {"lr": np.exp(r.uniform(math.log(1e-4), math.log(1e-1), n)), "depth": r.integers(2, 25, n).astype(float),
                "ratio": r.uniform(1, 8, n)}

    return {"space": space, "cheap": cheap, "target": {"n_params": nt}, "fn": fn, "sample": sample,
            "noise": float(rng.uniform(0.002, 0.01)), "info": {}}


def _mixture(rng: np.random.Generator) -> dict[str, Any]:
    comps = ["web", "code", "books", "papers", "dialog"]
    space = SearchSpace.from_dict({"params": {
        "mix": {"type": "simplex", "components": comps},
        "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    }})
    nt = 1e9
    cheap = [{"n_params": n} for n in _log_levels(rng, int(rng.integers(3, 6)), 1e7, 2.5e8)]
    z0, z1 = rng.normal(0, 0.8, 5), rng.normal(0, 0.25, 5)
    lr_t, alpha = math.log(rng.uniform(5e-4, 3e-3)), rng.uniform(0.2, 0.5)
    e_t, c = rng.uniform(2.0, 3.0), rng.uniform(0.2, 0.6)

    def fn(v: Values, fid: Mapping[str, float]) -> np.ndarray:
        t = math.log(fid["n_params"] / nt)
        z = z0 + z1 * t
        ideal = np.exp(z) / np.exp(z).sum()
        w = np.clip(v["mix"], 1e-6, None)
        kl = (ideal * np.log(ideal / w)).sum(axis=1)
        dl = np.log(v["lr"]) - (lr_t - alpha * t)
        return e_t + 0.3 * (math.exp(-0.3 * t) - 1) + c * kl + 0.03 * dl**2  # type: ignore[no-any-return]

    def sample(r: np.random.Generator, n: int) -> Values:
        return {"mix": r.dirichlet(np.ones(5), n), "lr": np.exp(r.uniform(math.log(1e-4), math.log(1e-2), n))}

    return {"space": space, "cheap": cheap, "target": {"n_params": nt}, "fn": fn, "sample": sample,
            "noise": float(rng.uniform(0.002, 0.01)), "info": {}}


_BUILDERS = {"adamw": _adamw, "saturating": _saturating, "nonmonotone": _nonmonotone, "mixture": _mixture}


def _dense_optimum(task: UserTask, rng: np.random.Generator) -> tuple[float, float]:
    vals = task.sampler(rng, 40_000)
    y = task.true_fn(vals, task.target)
    ok = np.isfinite(y) & (y < DIVERGED)
    best = float(np.min(y[ok]))
    p90 = float(np.quantile(y[ok], 0.9))  # of the runs that did not fail or diverge (regret's scale)
    # refine around the best samples: every proposal is scored against the true optimum, not a sample of it
    order = np.argsort(np.where(ok, y, np.inf))[:20]
    for i in order:
        for scale in (0.05, 0.01, 0.002):
            local = _perturb(task, {k: v[i : i + 1] for k, v in vals.items()}, rng, 200, scale)
            yl = task.true_fn(local, task.target)
            okl = np.isfinite(yl) & (yl < DIVERGED)
            if okl.any():
                best = min(best, float(np.min(yl[okl])))
    return best, max(p90, best + 1e-9)


def _perturb(task: UserTask, one: Values, rng: np.random.Generator, n: int, scale: float) -> Values:
    out: Values = {}
    for name, p in task.space.params.items():
        v = one[name]
        if p.type == "simplex":
            w = np.clip(v + rng.normal(0, scale, (n, v.shape[1])), 1e-6, None)
            out[name] = w / w.sum(axis=1, keepdims=True)
        elif p.type == "categorical":
            out[name] = np.repeat(v, n)
        elif p.type == "float" and p.log:
            lo, hi = math.log(p.low), math.log(p.high)
            out[name] = np.exp(np.clip(np.log(v) + rng.normal(0, scale * (hi - lo), n), lo, hi))
        else:
            step = getattr(p, "step", None) or (1 if p.type == "int" else None)
            x = np.clip(v + rng.normal(0, scale * (p.high - p.low), n), p.low, p.high)
            if step:
                x = p.low + np.round((x - p.low) / step) * step
            out[name] = x
    return out


def make_task(family: str, seed: int) -> UserTask:
    """Draw the held-out task ``family`` #``seed`` (deterministic)."""
    if family not in _BUILDERS:
        raise ValueError(f"unknown user-objective family {family!r}; use one of {', '.join(FAMILIES)}")
    rng = np.random.default_rng([SEED_BASE + seed, FAMILIES.index(family)])
    spec = _BUILDERS[family](rng)
    task = UserTask(family=family, seed=seed, space=spec["space"], cheap=spec["cheap"], target=spec["target"],
                    noise=spec["noise"], true_fn=spec["fn"], sampler=spec["sample"], info=spec["info"])
    task.optimum, task.p90 = _dense_optimum(task, rng)
    return task


def cheap_history(task: UserTask, seed: int) -> list[Trial]:
    """A random search of 5-20 runs per cheap cell (noisy; failures recorded as failed trials)."""
    rng = np.random.default_rng([SEED_BASE + task.seed, 7, seed])
    trials: list[Trial] = []
    for fid in task.cheap:
        n = int(rng.integers(5, 21))
        for c in task.configs_of(task.sampler(rng, n)):
            v = task.observe(c, fid, rng)
            state: TrialState = "complete" if math.isfinite(v) else "failed"
            trials.append(Trial(id=len(trials), params=c, fidelity=dict(fid), value=v if state == "complete" else None,
                                state=state))
    return trials


# --------------------------------------------------------------------------------------------- methods
@dataclass
class Step:
    params: dict[str, Any]
    observed: float  # NaN: failed
    true: float  # NaN: failed
    mu: float = math.nan
    sigma: float = math.nan
    fallback: bool = False


class _Proposer:
    name = "method"

    def start(self, task: UserTask, history: list[Trial], seed: int) -> None:
        self.task, self.history, self.seed = task, list(history), seed
        self.rng = np.random.default_rng([seed, 11])

    def ask(self, q: int, pending: list[dict[str, Any]]) -> list[tuple[dict[str, Any], float, float, bool]]:
        raise NotImplementedError

    def tell(self, params: dict[str, Any], observed: float) -> None:
        state: TrialState = "complete" if math.isfinite(observed) else "failed"
        self.history.append(Trial(id=len(self.history), params=params, fidelity=dict(self.task.target),
                                  value=observed if state == "complete" else None, state=state))


class _AgentProposer(_Proposer):
    def __init__(self, agent: Any, name: str) -> None:
        self.agent, self.name = agent, name

    def ask(self, q: int, pending: list[dict[str, Any]]) -> list[tuple[dict[str, Any], float, float, bool]]:
        props = self.agent.propose(History(trials=self.history), self.task.space, self.task.target, n=q,
                                   seed=int(self.rng.integers(2**31)), pending=pending)
        return [(dict(p.params), float(p.predicted_value), float(p.predicted_std), p.source == "fallback") for p in props]


class _RandomProposer(_Proposer):
    name = "random"

    def ask(self, q: int, pending: list[dict[str, Any]]) -> list[tuple[dict[str, Any], float, float, bool]]:
        return [(self.task.space.sample(self.rng), math.nan, math.nan, False) for _ in range(q)]


class _OptunaProposer(_Proposer):
    def __init__(self, kind: str) -> None:
        self.kind, self.name = kind, f"{kind}-warm"

    def start(self, task: UserTask, history: list[Trial], seed: int) -> None:
        import optuna
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        super().start(task, history, seed)
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.dists: dict[str, Any] = {}
        for name, p in task.space.params.items():
            if p.type == "float":
                self.dists[name] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
            elif p.type == "int":
                self.dists[name] = IntDistribution(p.low, p.high, log=p.log, step=p.step)
            elif p.type == "categorical":
                self.dists[name] = CategoricalDistribution(list(p.choices))
            else:  # a simplex: one float per component, normalised
                for comp in p.components:
                    self.dists[f"{name}.{comp}"] = FloatDistribution(0.0, 1.0)
        warm = [optuna.trial.create_trial(params=self._flat(t.params), distributions=self.dists,
                                          value=t.value if t.state == "complete" else None,
                                          state=optuna.trial.TrialState.COMPLETE if t.state == "complete"
                                          else optuna.trial.TrialState.FAIL)
                for t in history]
        if self.kind == "tpe":
            sampler: Any = optuna.samplers.TPESampler(seed=seed, n_startup_trials=3)
        elif self.kind == "gp":
            sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=3)
        else:  # CMA-ES models the numeric parameters only (Optuna samples categoricals independently for it)
            numeric = {k: d for k, d in self.dists.items() if not isinstance(d, CategoricalDistribution)}
            source = [optuna.trial.create_trial(params={k: t.params[k] for k in numeric}, distributions=numeric,
                                                value=t.value) for t in warm if t.value is not None]
            sampler = optuna.samplers.CmaEsSampler(seed=seed, source_trials=source or None, warn_independent_sampling=False)
        self.study = optuna.create_study(sampler=sampler, direction="minimize")
        if self.kind != "cmaes":
            self.study.add_trials(warm)
        self.live: dict[str, Any] = {}

    def _flat(self, params: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, p in self.task.space.params.items():
            if p.type == "simplex":
                out.update({f"{name}.{c}": float(params[name][c]) for c in p.components})
            else:
                out[name] = params[name]
        return out

    def ask(self, q: int, pending: list[dict[str, Any]]) -> list[tuple[dict[str, Any], float, float, bool]]:
        out = []
        for _ in range(q):
            trial = self.study.ask(self.dists)
            params: dict[str, Any] = {}
            for name, p in self.task.space.params.items():
                if p.type == "simplex":
                    w = np.array([trial.params[f"{name}.{c}"] for c in p.components]) + 1e-9
                    params[name] = {c: float(x) for c, x in zip(p.components, w / w.sum(), strict=True)}
                else:
                    params[name] = trial.params[name]
            key = repr(self.task.space.config_key(params))
            self.live[key] = trial
            out.append((params, math.nan, math.nan, False))
        return out

    def tell(self, params: dict[str, Any], observed: float) -> None:
        import optuna

        trial = self.live.pop(repr(self.task.space.config_key(params)))
        if math.isfinite(observed):
            self.study.tell(trial, observed)
        else:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)


_AGENTS: dict[str, Any] = {}
#: the checkpoint that ``agent`` and ``agent-noadapt`` load (a name or a folder; ``--agent`` sets it)
AGENT_CHECKPOINT = "default"


def make_method(name: str) -> _Proposer:
    if name in ("agent", "agent-noadapt", "classical"):
        if name not in _AGENTS:
            from autollm_sampler.agent import load_agent

            agent = load_agent("classical" if name == "classical" else AGENT_CHECKPOINT)
            agent.strict = True
            if name == "agent-noadapt":  # the ablation: the model's own predictions and choices
                agent.adapt = False  # type: ignore[attr-defined]
            _AGENTS[name] = agent
        return _AgentProposer(_AGENTS[name], name)
    if name == "random":
        return _RandomProposer()
    if name in ("tpe-warm", "gp-warm", "cmaes-warm"):
        return _OptunaProposer(name.split("-")[0])
    raise ValueError(f"unknown method {name!r}; use one of {', '.join(METHODS)}")


# --------------------------------------------------------------------------------------------- episodes
#: the crash scenario: the first target run and this share of the later ones crash whatever their configuration
CRASH_RATE = 0.15


def run_episode(task: UserTask, method: str, seed: int, *, k: int = 10, q: int = 1, crash: bool = False) -> dict[str, Any]:
    """One episode: ``k`` target runs, ``q`` proposals at a time; returns its record.

    ``crash``: infrastructure failures (a lost node, an out-of-memory kill) unrelated to the configuration:
    the first target run and ``CRASH_RATE`` of the later ones fail (reported as failed runs) whatever they
    are, and a crashed run scores as no run. A method should retry near a crashed run, not retreat from it
    as from a divergence wall."""
    history = cheap_history(task, seed)
    m = make_method(method)
    m.start(task, history, seed)
    obs_rng = np.random.default_rng([SEED_BASE + task.seed, 13, seed])
    crash_rng = np.random.default_rng([SEED_BASE + task.seed, 17, seed])
    steps: list[Step] = []
    t0 = time.perf_counter()
    while len(steps) < k:
        batch: list[Step] = []
        for params, mu, sigma, fb in m.ask(min(q, k - len(steps)), []):
            observed, true = task.observe(params, task.target, obs_rng), task.true(params)
            if crash and (not steps and not batch or crash_rng.random() < CRASH_RATE):
                observed = true = math.nan
            batch.append(Step(params, observed, true, mu, sigma, fb))
        steps += batch
        for s in batch:  # the whole batch ran in parallel: its outcomes arrive together
            m.tell(s.params, s.observed)
    return {**_record(task, method, seed, q, steps, time.perf_counter() - t0), "crash": crash}


def _bad(v: float) -> bool:
    return not math.isfinite(v) or v >= DIVERGED


def _record(task: UserTask, method: str, seed: int, q: int, steps: list[Step], wall: float) -> dict[str, Any]:
    best, gaps, regrets = math.inf, [], []
    for s in steps:
        if not _bad(s.true):
            best = min(best, s.true)
        gaps.append(100.0 * (best / task.optimum - 1) if math.isfinite(best) else math.inf)
        regrets.append(min(max((best - task.optimum) / (task.p90 - task.optimum), 0.0), 1.0) if math.isfinite(best) else 1.0)
    units = [task.space.to_unit(s.params) for s in steps]
    width = math.sqrt(task.space.width)
    near_fail = 0
    for i in range(1, len(steps)):
        failed = [units[j] for j in range(i) if _bad(steps[j].observed)]
        if failed and min(float(np.linalg.norm(units[i] - f)) / width for f in failed) <= FAIL_RADIUS:
            near_fail += 1
    inside, n_pred, widths, first_in, first_n = 0, 0, [], 0, 0
    for j, s in enumerate(steps):
        if math.isfinite(s.mu) and math.isfinite(s.sigma) and math.isfinite(s.observed):
            n_pred += 1
            hit = abs(s.observed - s.mu) <= Z80 * s.sigma
            inside += hit
            widths.append(2 * Z80 * s.sigma)
            if j < q:  # proposed before any target run had returned
                first_in, first_n = first_in + hit, first_n + 1
    return {"family": task.family, "task_seed": task.seed, "method": method, "seed": seed, "q": q,
            **{f"gap_k{j}": gaps[j - 1] for j in range(1, len(steps) + 1)},
            **{f"regret_k{j}": regrets[j - 1] for j in range(1, len(steps) + 1)},
            "all_failed": all(_bad(s.observed) for s in steps), "near_fail": near_fail, "n_steps": len(steps),
            "covered": inside, "n_pred": n_pred, "width": float(np.median(widths)) if widths else math.nan,
            "covered_first": first_in, "n_pred_first": first_n,
            "fallbacks": sum(s.fallback for s in steps), "wall_s": round(wall, 3)}


#: methods run in the crash scenario as well (``run_suite(crashes=...)``)
CRASH_METHODS = ("agent", "agent-noadapt", "classical", "tpe-warm")


def run_suite(seeds: int, methods: Sequence[str], families: Sequence[str], *, progress: bool = True,
              parallel: Sequence[str] = ("agent",), seed_start: int = 0,
              crashes: Sequence[str] = CRASH_METHODS) -> list[dict[str, Any]]:
    """Every (family, task seed, method) episode, sequential; plus q = 4 episodes of ``parallel`` methods and
    crash-scenario episodes (:func:`run_episode` ``crash=True``) of ``crashes`` methods.

    Task seeds are ``seed_start .. seed_start + seeds - 1`` (the report uses 0-19; constants are chosen on
    100 and up)."""
    span = range(seed_start, seed_start + seeds)
    jobs = [(f, s, m, 1, False) for f in families for s in span for m in methods]
    jobs += [(f, s, m, 4, False) for f in families for s in span for m in parallel if m in methods]
    jobs += [(f, s, m, 1, True) for f in families for s in span for m in crashes if m in methods]
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), desc="user-objective suite", unit="episode")
    tasks: dict[tuple[str, int], UserTask] = {}
    out = []
    for f, s, m, q, crash in jobs:
        if (f, s) not in tasks:
            tasks[(f, s)] = make_task(f, s)
        out.append(run_episode(tasks[(f, s)], m, s, q=q, k=8 if q > 1 else 10, crash=crash))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return out


# --------------------------------------------------------------------------------------------- report
def _med(xs: Sequence[float]) -> float:
    return float(np.median(xs)) if len(xs) else math.nan


def _fmt_gap(x: float) -> str:
    return "inf" if math.isinf(x) else f"{x:.2f}"


def report(rows: Sequence[Mapping[str, Any]], *, command: str, elapsed: float) -> str:
    seq = [r for r in rows if r["q"] == 1 and not r.get("crash")]
    families = [f for f in FAMILIES if any(r["family"] == f for r in seq)]
    methods = [m for m in METHODS if any(r["method"] == m for r in seq)]
    seeds = len({r["seed"] for r in seq})
    lines = ["# User-objective suite", "",
             f"- **Command:** `{command}`",
             f"- **Episodes:** {len(rows)} ({seeds} task seeds per family; wall time {elapsed / 60:.1f} min)",
             "- Protocol: `autollm_sampler/benchmark/userobj.py` (module docstring) and BENCHMARK.md, "
             "\"User objectives\". Median relative gap in % of the best true outcome so far to the dense-search "
             "optimum (lower is better; inf = no successful run yet).", ""]
    for scope, fams in [("all families", families)] + [(f, [f]) for f in families]:
        sub = [r for r in seq if r["family"] in fams]
        lines += [f"## {scope}", "", "| method | " + " | ".join(f"k={k}" for k in KS)
                  + " | all-failed | near-failure | 80% coverage (width) | of which first run | fallbacks |",
                  "|---|" + "---:|" * (len(KS) + 5)]
        for m in methods:
            rm = [r for r in sub if r["method"] == m]
            if not rm:
                continue
            gaps = [_fmt_gap(_med([r[f"gap_k{k}"] for r in rm])) for k in KS]
            n_steps = sum(r["n_steps"] - 1 for r in rm)
            npred = sum(r["n_pred"] for r in rm)
            cov = (f"{100 * sum(r['covered'] for r in rm) / npred:.0f}% ({_med([r['width'] for r in rm if r['n_pred']]):.3g})"
                   if npred else "-")
            nfirst = sum(r.get("n_pred_first", 0) for r in rm)
            first = f"{100 * sum(r.get('covered_first', 0) for r in rm) / nfirst:.0f}%" if nfirst else "-"
            lines.append(f"| {m} | " + " | ".join(gaps) + f" | {sum(bool(r['all_failed']) for r in rm)} of {len(rm)}"
                         f" | {100 * sum(r['near_fail'] for r in rm) / max(n_steps, 1):.1f}% | {cov} | {first}"
                         f" | {sum(r['fallbacks'] for r in rm)} |")
        lines.append("")
    par = [r for r in rows if r["q"] == 4]
    if par:
        lines += ["## Parallel: q = 4 at a time (pending known) against sequential, normalised regret at k = 8", "",
                  "| method | family | sequential k=8 | q=4 k=8 |", "|---|---|---:|---:|"]
        for m in sorted({r["method"] for r in par}):
            for f in families:
                p = [r["regret_k8"] for r in par if r["method"] == m and r["family"] == f]
                s = [r["regret_k8"] for r in seq if r["method"] == m and r["family"] == f]
                if p and s:
                    lines.append(f"| {m} | {f} | {_med(s):.4f} | {_med(p):.4f} |")
        lines.append("")
    crashed = [r for r in rows if r.get("crash")]
    if crashed:
        lines += [f"## Crashes: the first target run and {100 * CRASH_RATE:.0f}% of the later ones fail whatever "
                  "their configuration", "",
                  "Median gap as above (a crashed run is no run). \"near-failure\": share of proposals within the "
                  "failure radius of an earlier failed run; after a crash, retrying near it is right.", "",
                  "| method | family | " + " | ".join(f"k={k}" for k in KS if k > 1) + " | near-failure |",
                  "|---|---|" + "---:|" * (len([k for k in KS if k > 1]) + 1)]
        for m in [m for m in METHODS if any(r["method"] == m for r in crashed)]:
            for scope, fams in [("all", families)] + [(f, [f]) for f in families]:
                rm = [r for r in crashed if r["method"] == m and r["family"] in fams]
                if not rm:
                    continue
                gaps = [_fmt_gap(_med([r[f"gap_k{k}"] for r in rm])) for k in KS if k > 1]
                n_steps = sum(r["n_steps"] - 1 for r in rm)
                lines.append(f"| {m} | {scope} | " + " | ".join(gaps)
                             + f" | {100 * sum(r['near_fail'] for r in rm) / max(n_steps, 1):.1f}% |")
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autollm_sampler.benchmark.userobj", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20, help="task seeds per family (default 20)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, metavar="METHOD",
                        help=f"methods (default all: {', '.join(METHODS)})")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES, metavar="FAMILY",
                        help=f"families (default all: {', '.join(FAMILIES)})")
    parser.add_argument("--seed-start", type=int, default=0,
                        help="first task seed (default 0: the reported seeds 0-19; validation work uses 100 and up)")
    parser.add_argument("--out", default=None, help="folder for RESULTS.md and episodes.csv (default: print only)")
    parser.add_argument("--agent", default="default", metavar="CHECKPOINT",
                        help="checkpoint name or folder for the agent methods (default: the shipped 'default')")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    if args.seed_start < 0:
        parser.error("--seed-start must be >= 0")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    global AGENT_CHECKPOINT
    AGENT_CHECKPOINT = args.agent
    _AGENTS.clear()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    rows = run_suite(args.seeds, args.methods, args.families, seed_start=args.seed_start)
    command = "python -m autollm_sampler.benchmark.userobj " + " ".join(sys.argv[1:] if argv is None else argv)
    text = report(rows, command=command.strip(), elapsed=time.perf_counter() - t0)
    print(text)
    if args.out:
        import csv

        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "RESULTS.md").write_text(text, encoding="utf-8")
        keys = sorted({k for r in rows for k in r})
        with open(out / "episodes.csv", "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
