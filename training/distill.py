"""Stage 3, distill: supervised training of the policy on the simulated, labelled states.

Loss = cross-entropy between the policy's distribution over untried candidates and the hindsight expert's
distribution, plus ``value_weight`` times the Gaussian negative log-likelihood of the true normalised
outcome of every scored candidate (the outcome-prediction target alongside the policy).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import torch

from autollm_sampler.agent._net import PolicyNet
from training.batching import collate_states
from training.config import PipelineConfig

__all__ = ["losses", "distill", "evaluate_states"]

logger = logging.getLogger(__name__)


def losses(net: PolicyNet, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = net(batch)
    legal = (batch["untried"] > 0) & batch["q_mask"]
    score = out["score"].masked_fill(~legal, -1e9)
    logp = torch.log_softmax(score, dim=1)
    has = legal.any(dim=1)
    policy = -(batch["expert"] * logp.masked_fill(~legal, 0.0)).sum(dim=1)
    policy = policy[has].mean() if has.any() else policy.sum() * 0
    sigma = out["log_sigma"].exp()
    nll = 0.5 * ((batch["y"] - out["mu"]) / sigma) ** 2 + out["log_sigma"]
    m = batch["q_mask"].float()
    value = (nll * m).sum() / m.sum().clamp(min=1)
    pick = score.argmax(dim=1)
    chosen_q = batch["quantile"].gather(1, pick[:, None]).squeeze(1)
    return {"policy": policy, "value": value, "chosen_quantile": chosen_q[has].mean() if has.any() else chosen_q.mean()}


@torch.no_grad()
def evaluate_states(net: PolicyNet, states: list[dict[str, torch.Tensor]], batch_size: int = 64) -> dict[str, float]:
    net.eval()
    tot: dict[str, float] = {"policy": 0.0, "value": 0.0, "chosen_quantile": 0.0}
    n = 0
    for s in range(0, len(states), batch_size):
        chunk = states[s : s + batch_size]
        out = losses(net, collate_states(chunk))
        for k in tot:
            tot[k] += float(out[k]) * len(chunk)
        n += len(chunk)
    net.train()
    return {k: v / max(n, 1) for k, v in tot.items()}


def distill(net: PolicyNet, states: list[dict[str, torch.Tensor]], cfg: PipelineConfig, *, progress: bool = True) -> dict[str, Any]:
    """Train ``net`` in place; returns a summary (losses before/after, steps, minutes)."""
    from tqdm import tqdm

    d = cfg.distill
    rng = np.random.default_rng([cfg.seed, 3])
    order = rng.permutation(len(states))
    n_val = max(1, len(states) // 10)
    val = [states[i] for i in order[:n_val]]
    train = [states[i] for i in order[n_val:]] or val
    # group states of similar width into batches: cheaper padding
    opt = torch.optim.AdamW(net.parameters(), lr=d.lr, weight_decay=d.weight_decay)
    steps_per_epoch = math.ceil(len(train) / d.batch_size)
    total = steps_per_epoch * d.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=d.lr, total_steps=max(total, 1), pct_start=0.1)
    before = evaluate_states(net, val)
    start = time.time()
    net.train()
    step = 0
    history = []
    bar = tqdm(total=total, desc="distill", disable=not progress, mininterval=2.0)
    stop = False
    for epoch in range(d.epochs):
        widths = np.array([int(train[i]["roles"].shape[0]) for i in range(len(train))])
        perm = rng.permutation(len(train))
        perm = perm[np.argsort(widths[perm], kind="stable")]
        batches = [perm[i : i + d.batch_size] for i in range(0, len(perm), d.batch_size)]
        rng.shuffle(batches)  # type: ignore[arg-type]
        for idx in batches:
            batch = collate_states([train[i] for i in idx])
            out = losses(net, batch)
            loss = out["policy"] + d.value_weight * out["value"]
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            if step < total:
                sched.step()
            step += 1
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(policy=f"{float(out['policy']):.3f}", value=f"{float(out['value']):.3f}")
            if (time.time() - start) / 60 > d.max_minutes:
                logger.warning("distill: wall-clock cap of %.1f min reached at step %d", d.max_minutes, step)
                stop = True
                break
        history.append({"epoch": epoch, **evaluate_states(net, val)})
        logger.info("distill epoch %d: %s", epoch, history[-1])
        if stop:
            break
    bar.close()
    net.eval()
    return {"before": before, "after": history[-1] if history else before, "epochs": history, "steps": step,
            "minutes": (time.time() - start) / 60, "train_states": len(train), "val_states": len(val)}
