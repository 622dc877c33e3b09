"""Quick held-out evaluation of an agent checkpoint on the gym's *test* experiments (Setting A).

    python -m training.evaluate --agent runs/default/final --tasks steplaw-dense-v1 --seeds 5

Prints median relative gap and mean normalised regret at k = 1, 3, 5 for the agent beside the transfer and
random policies, and for a text-LLM agent how often its answers needed repair. The full benchmark (all baselines, confidence intervals, plots) is ``autollm-sampler bench``;
this is the training loop's fast check.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from autollm_sampler import gym
from autollm_sampler.agent import Agent, load_agent

__all__ = ["AgentGymPolicy", "ExtrapolatedPolicy", "evaluate", "main"]

KS = (1, 3, 5)


class AgentGymPolicy(gym.Policy):
    """Drive an :class:`Agent` through the gym's policy interface (the target grid as candidates)."""

    def __init__(self, agent: Agent, *, name: str = "agent", use_history: bool = True) -> None:
        super().__init__()
        self.agent = agent
        self.name = name
        self.use_history = use_history
        self._seed = 0
        # a greedy model on a fixed candidate grid gives the same episode for every seed
        temp = getattr(agent, "temperature", getattr(getattr(agent, "settings", None), "temperature", None))
        self.deterministic = temp == 0

    def reset(self, obs: gym.Observation, *, seed: int | None = None) -> None:
        super().reset(obs, seed=seed)
        self._seed = seed or 0

    def act(self, obs: gym.Observation) -> dict[str, Any]:
        hist = obs.history
        if not self.use_history:
            from autollm_sampler.history import History

            hist = History(trials=[t for t in obs.history.trials if t.attrs.get("cell") == obs.target.name])
        props = self.agent.propose(hist, obs.space, obs.target.fidelity, n=1, seed=self._seed + obs.step,
                                   candidates=obs.candidates)
        return props[0].params


class ExtrapolatedPolicy(gym.Policy):
    """The untried target configuration nearest to the serializer's extrapolated optimum (no model).

    This is what a text-LLM agent does when none of its answers can be read (the parser's fallback), so it
    is the baseline a text agent has to beat.
    """

    name = "extrapolated"
    deterministic = True

    def act(self, obs: gym.Observation) -> dict[str, Any]:
        from autollm_sampler.agent._features import encode

        space = obs.space
        extrap = encode(obs.history, space, obs.target.fidelity, np.zeros((0, space.width))).extrap
        untried = obs.untried()
        units = np.stack([space.to_unit(obs.candidates[i]) for i in untried])
        return dict(obs.candidates[untried[int(np.argmin(np.sum((units - extrap) ** 2, axis=1)))]])


def evaluate(policies: dict[str, gym.Policy], tasks: list[str], seeds: int, history: str = "full", raw_dir: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tid in tasks:
        task = gym.make(tid, raw_dir=raw_dir)
        for name, pol in policies.items():
            gaps: dict[int, list[float]] = {k: [] for k in KS}
            regs: dict[int, list[float]] = {k: [] for k in KS}
            n_seeds = 1 if (pol.deterministic and history == "full") else seeds
            for exp in gym.experiments(task, "test"):
                for s in range(n_seeds):
                    env = gym.LLMConfigEnv(task, exp.target, history=history, budget=max(KS))  # type: ignore[arg-type]
                    steps = gym.run_episode(env, pol, seed=s)
                    for k in KS:
                        st = steps[min(k, len(steps)) - 1]
                        gaps[k].append(st["gap"])
                        regs[k].append(st["regret"])
            out[f"{tid}/{name}"] = {f"k={k}": {"median_gap_pct": float(np.median(gaps[k])), "mean_gap_pct": float(np.mean(gaps[k])),
                                               "mean_regret": float(np.mean(regs[k]))} for k in KS}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", action="append", default=[], help="checkpoint dir or 'default' (repeatable)")
    ap.add_argument("--tasks", default="steplaw-dense-v1", help="comma-separated task ids")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--history", default="full", choices=["full", "sparse"])
    args = ap.parse_args(argv)
    pols: dict[str, gym.Policy] = {"random": gym.RandomPolicy(), "transfer": gym.TransferPolicy(),
                                   "extrapolated": ExtrapolatedPolicy()}
    for a in args.agent:
        pols[f"agent:{a}"] = AgentGymPolicy(load_agent(a), name=a)
    res = evaluate(pols, [t for t in args.tasks.split(",") if t], args.seeds, args.history)
    for key, v in res.items():
        print(f"{key:60s} " + "  ".join(f"{k}: gap {m['median_gap_pct']:.3f}% (mean {m['mean_gap_pct']:.3f}) reg {m['mean_regret']:.4f}" for k, m in v.items()))
    for name, pol in pols.items():  # text-LLM agents count how their answers had to be repaired
        stats = getattr(getattr(pol, "agent", None), "stats", None)
        if stats is not None:
            res[f"{name}/answers"] = stats.to_dict()
            print(f"{name}: answers {stats.to_dict()}")
    print(json.dumps(res), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
