"""Stage 2, simulate: expert trajectories in the gym, each state labelled for distillation.

Experts act in the training experiments:

* ``hindsight``: a privileged expert that knows the target table. It picks among untried candidates with
  a softmax over their true quantile in the target table, tie-broken towards the extrapolated optimum
  (so its choices stay explainable from the history);
* ``transfer``: the classical transfer policy (best configurations of the nearest cheaper cell);
* ``random``: uniformly random untried candidates (for state diversity).

Every visited state is labelled, whichever expert produced it, with: the hindsight expert's action
distribution over the untried candidates (the policy target, DAgger-style), the true normalised outcome
of every scored candidate (the value target), and the step's reward (reduction of normalised regret).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from autollm_sampler.agent._features import Encoded, encode
from autollm_sampler.gym import Cell, Observation, TransferPolicy
from training.config import PipelineConfig
from training.curate import ExperimentSpec, materialize

__all__ = ["State", "Visit", "label_state", "run_experts", "simulate", "save_states", "load_states", "query_rows"]

logger = logging.getLogger(__name__)


@dataclass
class State:
    """One labelled decision point."""

    enc: Encoded
    y: np.ndarray  # true normalised outcome per query
    quantile: np.ndarray  # true quantile in the target table per query (0 = best)
    untried: np.ndarray  # 1 where the query is a legal action
    expert: np.ndarray  # hindsight action distribution over queries
    rows: np.ndarray  # target-table row of each query


def query_rows(cell: Cell, tried: set[int], max_queries: int, rng: np.random.Generator) -> np.ndarray:
    """Which target rows to score: all when few, else the best rows, tried rows and a random rest."""
    n = len(cell)
    if n <= max_queries:
        return np.arange(n)
    order = np.argsort(cell.losses)
    must = list(dict.fromkeys([*order[:8].tolist(), *sorted(tried)]))[: max_queries // 2]
    rest = np.setdiff1d(np.arange(n), must)
    extra = rng.choice(rest, size=max_queries - len(must), replace=False)
    return np.sort(np.concatenate([np.array(must, dtype=int), extra]))


def label_state(obs: Observation, cell: Cell, rows: np.ndarray, temperature: float) -> State:
    """Encode a state and attach its labels (needs the privileged target table)."""
    enc = encode(obs.history, obs.space, obs.target.fidelity, cell.unit[rows])
    quant_all = np.empty(len(cell))
    quant_all[np.argsort(cell.losses, kind="stable")] = np.arange(len(cell)) / max(len(cell) - 1, 1)
    quant = quant_all[rows]
    tried = obs.tried.get(cell.name, set())
    untried = np.array([r not in tried for r in rows], dtype=np.float32)
    y = np.clip(enc.to_y(cell.values[rows]), -4.0, 8.0)
    dist = np.sqrt(np.mean((cell.unit[rows] - enc.extrap) ** 2, axis=1))
    logits = -(quant + 0.05 * dist) / temperature
    logits[untried == 0] = -np.inf
    if np.all(untried == 0):
        expert = np.zeros(len(rows))
    else:
        expert = np.exp(logits - logits[untried > 0].max())
        expert[untried == 0] = 0.0
        expert /= expert.sum()
    return State(enc, y.astype(np.float32), quant.astype(np.float32), untried, expert.astype(np.float32), rows)


def _expert_action(kind: str, state: State, obs: Observation, cell: Cell, rng: np.random.Generator,
                   transfer: TransferPolicy) -> tuple[dict[str, Any], int | None]:
    """The expert's action and its target row (``None`` for the transfer expert, which acts by configuration)."""
    if kind == "hindsight" and state.expert.sum() > 0:
        j = int(rng.choice(len(state.rows), p=state.expert / state.expert.sum()))
        row = int(state.rows[j])
        return dict(cell.configs[row]), row
    if kind == "transfer":
        return transfer.act(obs), None
    row = int(rng.choice(obs.untried()))
    return dict(cell.configs[row]), row


@dataclass
class Visit:
    """One decision of an expert episode, seen before the expert's action is run."""

    spec_index: int
    spec: ExperimentSpec
    episode: int
    expert: str
    obs: Observation
    cell: Cell
    state: State
    action: dict[str, Any]
    row: int | None  # the action's target row, when the expert chose a row


def run_experts(specs: list[ExperimentSpec], cfg: PipelineConfig, visit: Callable[[Visit], None], *, stream: int = 2,
                progress: bool = True) -> dict[str, float]:
    """Drive the experts over every curated experiment, calling ``visit`` at every decision.

    ``stream`` picks the random stream (``[cfg.seed, stream]``), so two consumers of the same experiments do not
    share draws. Returns the mean final regret of each expert.
    """
    from tqdm import tqdm

    sim = cfg.simulate
    rng = np.random.default_rng([cfg.seed, stream])
    final_regret: dict[str, list[float]] = {e: [] for e in sim.experts}
    for si, spec in enumerate(tqdm(specs, desc="simulate", disable=not progress, mininterval=2.0)):
        try:
            _, env = materialize(spec, cfg.raw_dir)
        except Exception as exc:
            logger.warning("simulate: skipping %s:%s (%s)", spec.source, spec.target, exc)
            continue
        cell = env.target
        for ep in range(sim.episodes_per_experiment):
            kind = sim.experts[(ep + spec.seed) % len(sim.experts)]
            obs, info = env.reset(seed=int(rng.integers(1 << 30)))
            # the transfer expert breaks ties at random: seed it per episode (without drawing from rng)
            transfer = TransferPolicy(seed=int(np.random.SeedSequence([cfg.seed, stream, si, ep]).generate_state(1)[0]))
            for _ in range(min(sim.steps, len(cell))):
                tried = obs.tried.get(cell.name, set())
                rows = query_rows(cell, tried, cfg.curate.max_queries, rng)
                st = label_state(obs, cell, rows, sim.hindsight_temperature)
                action, row = _expert_action(kind, st, obs, cell, rng, transfer)
                visit(Visit(si, spec, ep, kind, obs, cell, st, action, row))
                obs, reward, terminated, truncated, info = env.step(action)
                if terminated:
                    break
            final_regret[kind].append(float(info["regret"]))
    return {f"final_regret_{k}": float(np.mean(v)) for k, v in final_regret.items() if v}


def simulate(specs: list[ExperimentSpec], cfg: PipelineConfig, *, progress: bool = True) -> tuple[list[State], dict[str, float]]:
    """Run the experts over every curated experiment; returns the labelled states and a summary."""
    states: list[State] = []
    summary = run_experts(specs, cfg, lambda v: states.append(v.state), progress=progress)
    summary["states"] = float(len(states))
    return states, summary


_KEYS = ("ctx_dims", "ctx_scal", "q_dims", "q_scal", "roles", "slots", "y", "quantile", "untried", "expert")


def save_states(states: list[State], path: str) -> None:
    """Save labelled states packed into a few flat tensors (fast to load with ``weights_only=True``)."""
    per: dict[str, list[np.ndarray]] = {k: [] for k in _KEYS}
    shapes: dict[str, list[tuple[int, ...]]] = {k: [] for k in _KEYS}
    for s in states:
        e = s.enc
        arrays = {
            "ctx_dims": e.ctx_dims.astype(np.float16), "ctx_scal": e.ctx_scal.astype(np.float16),
            "q_dims": e.q_dims.astype(np.float16), "q_scal": e.q_scal.astype(np.float16),
            "roles": e.roles, "slots": e.slots, "y": s.y, "quantile": s.quantile, "untried": s.untried,
            "expert": s.expert,
        }
        for k, a in arrays.items():
            per[k].append(a.reshape(-1))
            shapes[k].append(a.shape)
    blob: dict[str, torch.Tensor] = {"n": torch.tensor(len(states))}
    for k in _KEYS:
        blob[k] = torch.from_numpy(np.concatenate(per[k]) if per[k] else np.zeros(0))
        dims = max((len(sh) for sh in shapes[k]), default=1)
        blob[k + "/shape"] = torch.tensor([list(sh) + [0] * (dims - len(sh)) for sh in shapes[k]], dtype=torch.long).reshape(len(states), dims)
    torch.save(blob, path)


def load_states(path: str) -> list[dict[str, torch.Tensor]]:
    """Inverse of :func:`save_states`: a list of per-state dicts of tensors (views into the packed ones)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    n = int(blob["n"])
    out: list[dict[str, torch.Tensor]] = [{} for _ in range(n)]
    for k in _KEYS:
        shapes = blob[k + "/shape"].tolist()
        sizes = [int(np.prod(sh)) for sh in shapes]
        parts = torch.split(blob[k], sizes)
        for i, (part, sh) in enumerate(zip(parts, shapes, strict=True)):
            out[i][k] = part.view(*sh)
    return out
