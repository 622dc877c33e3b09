"""Stage 4, RL: multi-turn, GRPO-style fine-tuning of the distilled policy in the gym.

For each iteration: draw a curated training experiment, reset it once (one shared initial history), and
roll out ``G`` episodes of ``steps`` target evaluations by sampling from the policy. The episode return is
the reduction of normalised regret at the target averaged over the steps (an anytime measure, so the first
proposal matters most). Advantages are group-relative: ``(R - mean_G) / std_G``. The loss is the policy
gradient over every decision of every rollout, plus ``kl_coef`` times the KL divergence from the distilled
(reference) policy at the visited states.

The loop talks to the policy through :class:`RLPolicy` (``sample`` without gradients, ``logprob_kl`` with
them), so the text-LLM backend can reuse it unchanged with its own implementation of those two methods.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from autollm_sampler.agent._features import Encoded, encode
from autollm_sampler.agent._net import PolicyNet, collate
from autollm_sampler.gym import Observation
from training.config import PipelineConfig
from training.curate import ExperimentSpec, materialize

__all__ = ["RLPolicy", "TransformerRLPolicy", "grpo", "group_advantages"]

logger = logging.getLogger(__name__)


class RLPolicy(Protocol):
    """What the GRPO loop needs from a policy backend."""

    def sample(self, obs: Observation, rng: np.random.Generator, temperature: float) -> tuple[dict[str, Any], Any]:
        """Pick an action for ``obs``; returns the action and a record to score later."""
        ...

    def logprob_kl(self, records: Sequence[Any], temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probabilities of the recorded actions (with gradients) and KL to the reference policy."""
        ...

    def parameters(self) -> Any: ...


def group_advantages(returns: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Group-relative advantages ``(R - mean) / std``; zeros when every rollout scored the same."""
    r = np.asarray(returns, dtype=float)
    std = r.std()
    if std < eps:
        return np.zeros_like(r)
    return (r - r.mean()) / (std + eps)  # type: ignore[no-any-return]


@dataclass
class _Record:
    enc: Encoded
    choice: int


class TransformerRLPolicy:
    """:class:`RLPolicy` for the embedded transformer: candidates are the untried target rows."""

    def __init__(self, net: PolicyNet, *, max_queries: int = 128) -> None:
        self.net = net
        self.ref = copy.deepcopy(net).eval()
        for p in self.ref.parameters():
            p.requires_grad_(False)
        self.max_queries = max_queries

    def parameters(self) -> Any:
        return self.net.parameters()

    @torch.no_grad()
    def sample(self, obs: Observation, rng: np.random.Generator, temperature: float) -> tuple[dict[str, Any], _Record]:
        untried = obs.untried()
        if len(untried) > self.max_queries:
            untried = sorted(rng.choice(untried, size=self.max_queries, replace=False).tolist())
        cands = obs.candidates
        units = np.stack([obs.space.to_unit(cands[i]) for i in untried])
        enc = encode(obs.history, obs.space, obs.target.fidelity, units)
        self.net.eval()
        score = self.net(collate([enc]))["score"][0].numpy() / temperature
        p = np.exp(score - score.max())
        p /= p.sum()
        j = int(rng.choice(len(untried), p=p))
        return dict(cands[untried[j]]), _Record(enc, j)

    def logprob_kl(self, records: Sequence[_Record], temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
        self.net.train()
        batch = collate([r.enc for r in records])
        mask = batch["q_mask"]
        logits = self.net(batch)["score"].masked_fill(~mask, -1e9) / temperature
        with torch.no_grad():
            ref_logits = self.ref(batch)["score"].masked_fill(~mask, -1e9) / temperature
        logp = torch.log_softmax(logits, dim=1)
        ref_logp = torch.log_softmax(ref_logits, dim=1)
        choice = torch.tensor([r.choice for r in records])
        chosen = logp.gather(1, choice[:, None]).squeeze(1)
        kl = (logp.exp() * (logp - ref_logp)).masked_fill(~mask, 0.0).sum(dim=1)
        return chosen, kl


def _rollout(policy: RLPolicy, env: Any, seed: int, steps: int, rng: np.random.Generator, temperature: float) -> tuple[float, list[Any], float]:
    obs, info = env.reset(seed=seed)
    records = []
    regrets = []
    for _ in range(steps):
        action, rec = policy.sample(obs, rng, temperature)
        records.append(rec)
        obs, reward, terminated, truncated, info = env.step(action)
        regrets.append(float(info["regret"]))
        if terminated:
            break
    # return: regret reduction from 1 (no target run yet), averaged over the steps (anytime)
    ret = float(np.mean([1.0 - r for r in regrets]))
    return ret, records, regrets[0]


def grpo(policy: RLPolicy, specs: list[ExperimentSpec], cfg: PipelineConfig, *, progress: bool = True) -> dict[str, Any]:
    """Run the RL stage; returns a summary with the return curve."""
    from tqdm import tqdm

    rl = cfg.rl
    rng = np.random.default_rng([cfg.seed, 4])
    opt = torch.optim.AdamW(policy.parameters(), lr=rl.lr, weight_decay=0.0)
    start = time.time()
    curve = []
    bar = tqdm(range(rl.iterations), desc="rl", disable=not progress, mininterval=2.0)
    for it in bar:
        spec = specs[int(rng.integers(len(specs)))]
        try:
            _, env = materialize(spec, cfg.raw_dir)
        except Exception as exc:
            logger.warning("rl: skipping %s (%s)", spec.source, exc)
            continue
        seed = int(rng.integers(1 << 30))
        returns, all_records, group_of, first = [], [], [], []
        for g in range(rl.group_size):
            ret, records, r1 = _rollout(policy, env, seed, rl.steps, rng, rl.temperature)
            returns.append(ret)
            first.append(r1)
            all_records.extend(records)
            group_of.extend([g] * len(records))
        adv = group_advantages(np.array(returns))
        curve.append({"iteration": it, "mean_return": float(np.mean(returns)), "mean_first_regret": float(np.mean(first))})
        if np.all(adv == 0):
            continue
        logp, kl = policy.logprob_kl(all_records, rl.temperature)
        a = torch.tensor(adv[group_of], dtype=torch.float32)
        loss = -(a * logp).mean() + rl.kl_coef * kl.mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()
        if it % 10 == 0:
            recent = curve[-20:]
            bar.set_postfix(ret=f"{np.mean([c['mean_return'] for c in recent]):.3f}", kl=f"{float(kl.mean().detach()):.4f}")
        if (time.time() - start) / 60 > rl.max_minutes:
            logger.warning("rl: wall-clock cap of %.1f min reached at iteration %d", rl.max_minutes, it)
            break
    n = len(curve)
    head = curve[: max(n // 5, 1)]
    tail = curve[-max(n // 5, 1):]
    return {
        "iterations": n,
        "minutes": (time.time() - start) / 60,
        "return_first_fifth": float(np.mean([c["mean_return"] for c in head])) if curve else None,
        "return_last_fifth": float(np.mean([c["mean_return"] for c in tail])) if curve else None,
        "curve": curve,
    }
