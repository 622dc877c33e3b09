"""The embedded default backend: a small transformer over trial tokens, proposing without torch.

The network is defined once, in torch, in :mod:`autollm_sampler.agent._net` (``PolicyNet``, a
``transformers.LlamaModel`` with a policy head and a value head), which training optimises. A loaded
checkpoint runs through :mod:`autollm_sampler.agent._numpy_net` instead (the same forward pass in numpy,
tested to match torch's outputs), so the sampler, ask/tell and the CLI need neither torch nor transformers
to propose; an agent built around a torch network (training) runs through torch.

The network reads the serialised history (:mod:`autollm_sampler.agent._features`) as context tokens and
candidate configurations at the target as query tokens, and outputs for every candidate:

* a **policy logit** (which candidate to run next; trained by distillation, then multi-turn RL), and
* a **value** prediction (mean and log-std of the normalised target outcome), used for best-of-n
  selection, for the predicted value of each proposal and for its rationale.

Attention is masked so each query sees the context and itself only, and all positions share one position
id, so the model is invariant to the order of trials. Candidates come from the caller's finite list
when there is one (a benchmark grid), else from the space: random samples plus points around the
extrapolated optimum, the nearest cell's optimum and the best target runs (the model then decodes the
next configuration by picking among them, which keeps it valid by construction).

Example:
    >>> from autollm_sampler.agent._model import AgentModelConfig, TransformerAgent
    >>> agent = TransformerAgent.from_config(AgentModelConfig(hidden_size=32, num_layers=1, num_heads=2))
    >>> from autollm_sampler import History, SearchSpace
    >>> space = SearchSpace.from_dict({"params": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}})
    >>> p = agent.propose(History(), space, {"n": 1.0}, seed=0)[0]
    >>> 1e-4 <= p.params["lr"] <= 1e-1
    True
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from autollm_sampler._io import sha256_of
from autollm_sampler.agent._adapt import (
    ADAPT_SPEC,
    TargetEvidence,
    calibrated_spread,
    correct,
    evidence,
    first_run_level,
    first_run_spread,
    fit_residuals,
    select,
    thin,
)
from autollm_sampler.agent._base import Agent, Proposal
from autollm_sampler.agent._classical import tried_keys, tried_units, valid_units
from autollm_sampler.agent._features import (
    D_MAX,
    F_AX,
    N_CH,
    N_SCAL,
    Encoded,
    encode,
    feature_spec,
    with_queries,
)
from autollm_sampler.agent._numpy_net import NumpyEnsembleNet, NumpyPolicyNet
from autollm_sampler.agent._rationale import explain_choice, model_rationale  # noqa: F401  (explain_choice: re-exported)
from autollm_sampler.candidates import CandidateIndex
from autollm_sampler.exceptions import CheckpointError
from autollm_sampler.history import History, Trial, fidelity_key
from autollm_sampler.space import SearchSpace
from autollm_sampler.strategies import grid_configs

__all__ = ["AgentModelConfig", "TransformerAgent", "agent_spec", "pad_arrays", "restamp", "state_arrays", "OODReport"]

logger = logging.getLogger(__name__)

#: 2: config.json records the agent spec (:func:`agent_spec`) and a checkpoint is refused when it differs
FORMAT_VERSION = 2
#: At most this many untried grid points are scored when the generated candidates were all tried.
_GRID_QUERIES = 512
#: spread (unit-cube standard deviation) of the local candidates around the extrapolated optimum, and around
#: the nearest cheap cell's optimum and each cell's best run
LOCAL_SCALES = (0.03, 0.06)


def agent_spec() -> dict[str, Any]:
    """Everything besides the weights that a checkpoint's behaviour depends on, by name: the feature spec
    (:func:`~autollm_sampler.agent._features.feature_spec`), the candidate generator's constants and the
    adaptation step's (:data:`~autollm_sampler.agent._adapt.ADAPT_SPEC`). Saved in config.json; a checkpoint
    whose recorded spec differs is refused at load (:func:`restamp` records a new adaptation or candidate
    section in a checkpoint whose features still match)."""
    return {
        "features": feature_spec(),
        "candidates": {"local_scales": list(LOCAL_SCALES), "grid_queries": _GRID_QUERIES},
        "adapt": dict(ADAPT_SPEC),
    }


@dataclass
class AgentModelConfig:
    """Architecture of the policy network (kept small: it runs on a laptop CPU in milliseconds)."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 128
    max_params: int = D_MAX
    n_random_candidates: int = 192
    n_local_candidates: int = 96
    max_query: int = 256
    #: networks of this architecture whose predictions are combined (an ensemble of training seeds)
    members: int = 1

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} must be divisible by num_heads={self.num_heads}; change one of them"
            )
        if not 1 <= self.max_params <= D_MAX:
            raise ValueError(f"max_params must be in [1, {D_MAX}], got {self.max_params}")


def unit_keys(units: np.ndarray) -> np.ndarray:
    """One hashable key per row of unit points (rounded to 1e-9, so equal snapped points share a key)."""
    r = np.ascontiguousarray(np.round(np.asarray(units, float), 9) + 0.0)
    return r.view(np.dtype((np.void, r.dtype.itemsize * max(r.shape[1], 1)))).ravel() if r.shape[1] else np.zeros(len(r), "V1")


def _untried_grid(space: SearchSpace, seen: set[Any], rng: np.random.Generator) -> np.ndarray:
    """Unit points of untried configurations of a finite space (at most ``_GRID_QUERIES``, random order).

    Random and local candidates can all miss the last untried points of a grid (categorical choices whose
    values lie close together get thin slices of the unit interval); this finds them. Empty when the space
    is not finite or every configuration is in ``seen`` (unit keys).
    """
    configs = grid_configs(space, rng)
    if not configs:
        return np.zeros((0, space.width))
    units = space.snap_unit_many(space.to_unit_many(configs))
    taken = set(seen)
    keep: list[int] = []
    for i, k in enumerate(unit_keys(units).tolist()):
        if k not in taken:
            taken.add(k)
            keep.append(i)
            if len(keep) == _GRID_QUERIES:
                break
    return units[keep]


def _more_candidates(space: SearchSpace, taken: set[Any], rng: np.random.Generator, need: int) -> np.ndarray:
    """Up to ``need`` more untried unit points (not in ``taken``): grid points of a finite space, else
    uniform samples snapped onto the space (a few rounds, for spaces with few distinct values)."""
    if space.grid_size() is not None:
        return _untried_grid(space, taken, rng)[:need]
    out: list[np.ndarray] = []
    seen = set(taken)
    for _ in range(8):
        pts = space.snap_unit_many(rng.random((2 * need + 16, space.width)))
        for u, k in zip(pts, unit_keys(pts).tolist(), strict=True):
            if k not in seen:
                seen.add(k)
                out.append(u)
                if len(out) == need:
                    return np.stack(out)
    return np.stack(out) if out else np.zeros((0, space.width))


def pad_arrays(items: Sequence[Mapping[str, Any]], labels: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """Pad states (mappings of arrays with the :data:`STATE_KEYS`) into one batch of numpy arrays.

    States may differ in width, context length and query count; masks mark the real entries. ``labels``
    names per-query arrays to pad alongside (training targets such as ``"y"``).
    """
    B = len(items)
    W = max(int(s["roles"].shape[0]) for s in items)
    C = max(max(int(s["ctx_dims"].shape[0]) for s in items), 1)
    Q = max(max(int(s["q_dims"].shape[0]) for s in items), 1)
    out: dict[str, np.ndarray] = {
        "ctx_dims": np.zeros((B, C, W, N_CH), np.float32),
        "ctx_scal": np.zeros((B, C, N_SCAL), np.float32),
        "q_dims": np.zeros((B, Q, W, N_CH), np.float32),
        "q_scal": np.zeros((B, Q, N_SCAL), np.float32),
        "roles": np.zeros((B, W), np.int64),
        "slots": np.zeros((B, W), np.int64),
        "dim_mask": np.zeros((B, W), np.float32),
        "ctx_mask": np.zeros((B, C), bool),
        "q_mask": np.zeros((B, Q), bool),
    }
    out.update({k: np.zeros((B, Q), np.float32) for k in labels})
    for b, s in enumerate(items):
        c, q, w = int(s["ctx_dims"].shape[0]), int(s["q_dims"].shape[0]), int(s["roles"].shape[0])
        out["ctx_dims"][b, :c, :w] = np.asarray(s["ctx_dims"])
        out["ctx_scal"][b, :c] = np.asarray(s["ctx_scal"])
        out["q_dims"][b, :q, :w] = np.asarray(s["q_dims"])
        out["q_scal"][b, :q] = np.asarray(s["q_scal"])
        out["roles"][b, :w] = np.asarray(s["roles"])
        out["slots"][b, :w] = np.asarray(s["slots"])
        out["dim_mask"][b, :w] = 1.0
        out["ctx_mask"][b, :c] = True
        out["q_mask"][b, :q] = True
        for k in labels:
            out[k][b, :q] = np.asarray(s[k])
    return out


#: the per-state arrays the network reads
STATE_KEYS = ("ctx_dims", "ctx_scal", "q_dims", "q_scal", "roles", "slots")


def state_arrays(items: Sequence[Encoded]) -> dict[str, np.ndarray]:
    """Pad encoded states into one numpy batch."""
    return pad_arrays([{k: getattr(e, k) for k in STATE_KEYS} for e in items])


@dataclass
class OODReport:
    """Why an input is outside what the model was trained for (empty when it is fine)."""

    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.reasons


class TransformerAgent(Agent):
    """The trained research agent (embedded default backend).

    Load the shipped one with ``load_agent("default")``; see the module docstring for how it works.
    """

    name = "transformer"

    def __init__(self, net: Any, *, cfg: AgentModelConfig | None = None, meta: Mapping[str, Any] | None = None,
                 temperature: float = 0.0, adapt: bool = True) -> None:
        # ``net``: a torch ``PolicyNet`` (training; proposals then run through torch), a ``NumpyPolicyNet``
        # (a loaded checkpoint; proposing imports no torch), or a list of them (an ensemble, ``cfg.members``)
        nets = list(net) if isinstance(net, (list, tuple)) else [net]
        if all(isinstance(n, NumpyPolicyNet) for n in nets):
            if cfg is None:
                raise ValueError("a NumpyPolicyNet needs its AgentModelConfig: TransformerAgent(net, cfg=...)")
            if len(nets) != cfg.members:
                raise ValueError(f"cfg.members={cfg.members} but {len(nets)} network(s) were given")
            self._np: NumpyPolicyNet | None = nets[0]
            #: every member network (one for a single checkpoint)
            self._members: list[NumpyPolicyNet] = nets
            #: the members packed into one network (their forward passes run as one)
            self._stacked: NumpyEnsembleNet | None = NumpyEnsembleNet(nets)
            self._torch: Any = None
            self.cfg = cfg
        elif len(nets) == 1:
            self._np, self._members, self._torch = None, [], net.eval()
            self._stacked = None
            self.cfg = net.cfg
        else:
            raise ValueError("an ensemble is built from loaded (numpy) members: TransformerAgent.ensemble([...])")
        self.meta = dict(meta or {})
        self.temperature = temperature
        #: correct predictions with the target runs, avoid failed regions and spread batches (agent/_adapt.py)
        self.adapt = adapt

    @property
    def net(self) -> Any:
        """The torch ``PolicyNet`` (imports torch; built from the loaded weights on first use).

        Once it is asked for, proposals run through it, so training it changes what the agent proposes.
        """
        if self._torch is None:
            from autollm_sampler.agent._net import PolicyNet

            if len(self._members) > 1:
                raise ValueError(f"this agent is an ensemble of {len(self._members)} networks and has no single torch "
                                 "network to train; train its members (training.pipeline with members: 1) instead")
            assert self._np is not None
            self._torch = PolicyNet.from_arrays(self.cfg, self._np.weights).eval()
            self._np, self._members, self._stacked = None, [], None
        return self._torch

    @property
    def backend(self) -> str:
        """``"numpy"`` (a loaded checkpoint) or ``"torch"`` (a network being trained)."""
        return "numpy" if self._np is not None else "torch"

    # ------------------------------------------------------------------ construction / persistence
    @classmethod
    def ensemble(cls, agents: Sequence[TransformerAgent], *, meta: Mapping[str, Any] | None = None) -> TransformerAgent:
        """One agent from several loaded checkpoints of the same architecture (for example training seeds).

        Its policy is the mean of the members' log-probabilities over the candidates, and its predicted
        outcome the members' mixture: the mean of their means, with the spread of the mixture (their mean
        variance plus the variance of their means), so where the members disagree the agent is less sure.
        """
        if len(agents) < 2:
            raise ValueError(f"an ensemble needs at least 2 agents, got {len(agents)}")
        nets: list[NumpyPolicyNet] = []
        for a in agents:
            if a._np is None:
                raise ValueError("ensemble members must be loaded checkpoints (TransformerAgent.load), not networks in training")
            nets += a._members
        cfg0 = replace(agents[0].cfg, members=1)
        for a in agents[1:]:
            if replace(a.cfg, members=1) != cfg0:
                raise ValueError(f"ensemble members must share one architecture: {asdict(a.cfg)} != {asdict(cfg0)}")
        return cls(nets, cfg=replace(cfg0, members=len(nets)), meta={**(meta or {}), "members": [dict(a.meta) for a in agents]},
                   temperature=agents[0].temperature, adapt=agents[0].adapt)

    @classmethod
    def from_config(cls, cfg: AgentModelConfig, *, seed: int = 0) -> TransformerAgent:
        from autollm_sampler.agent._net import PolicyNet

        return cls(PolicyNet.seeded(cfg, seed))

    def weights(self) -> dict[str, np.ndarray]:
        """Name -> float32 array of every weight (the content of ``model.safetensors``)."""
        if len(self._members) > 1:  # an ensemble: member i's tensors under "member<i>."
            return {f"member{i}.{k}": v for i, net in enumerate(self._members) for k, v in net.weights.items()}
        if self._np is not None:
            return dict(self._np.weights)
        return {k: v.detach().cpu().numpy().copy() for k, v in self._torch.state_dict().items()}

    def save(self, path: str | os.PathLike[str], *, extra_meta: Mapping[str, Any] | None = None) -> Path:
        """Write ``model.safetensors``, ``config.json`` and a ``manifest.json`` with sha256 sums.

        Raises:
            ValueError: if a weight is not finite (such a checkpoint would be refused by :meth:`load`).
        """
        from safetensors.numpy import save_file

        weights = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.weights().items()}
        bad = sorted(k for k, v in weights.items() if not np.isfinite(v).all())
        if bad:
            raise ValueError(f"cannot save a network with non-finite weights (in {bad[:3]})")
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        save_file(weights, str(out / "model.safetensors"))
        (out / "config.json").write_text(json.dumps(
            {"format_version": FORMAT_VERSION, "model": asdict(self.cfg), "spec": agent_spec()}, indent=1))
        meta = {**self.meta, **(extra_meta or {})}
        files = {n: sha256_of(out / n) for n in _READ_FILES}
        (out / _MANIFEST).write_text(json.dumps({"files": files, "meta": meta}, indent=1, default=str))
        return out

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, verify: bool = True, **kwargs: Any) -> TransformerAgent:
        """Load a checkpoint written by :meth:`save`.

        With ``verify`` (the default) the manifest must list ``model.safetensors`` and ``config.json`` with
        their sha256 sums, and every file it lists must match. Whatever the manifest says, the config must
        describe a valid model, the weights must be float32 tensors of exactly the model's names and shapes,
        all finite, and a forward pass on a fixed probe input must give finite outputs.

        Raises:
            CheckpointError: naming the file and what is wrong with it, for every defect found.
        """
        p = Path(path)
        for name in (*_READ_FILES, _MANIFEST):
            if not (p / name).is_file():
                raise CheckpointError(
                    f"checkpoint {str(p)!r} lacks {name}; train one with "
                    "`python -m training.pipeline --config training/configs/default.yaml`"
                )
        manifest = _read_json(p / _MANIFEST)
        if not isinstance(manifest, dict):
            raise CheckpointError(f"{p / _MANIFEST} must be a JSON object with \"files\" (file name -> sha256), "
                                  f"not a {type(manifest).__name__}; the checkpoint is corrupt")
        meta = manifest.get("meta", {})
        if not isinstance(meta, dict):
            raise CheckpointError(f"{p / _MANIFEST}: \"meta\" must be a JSON object, not a {type(meta).__name__}")
        if verify:
            _verify_files(p, manifest)
        cfg = _read_model_config(p / "config.json")
        weights = _read_weights(p / "model.safetensors")
        nets = []
        for part in _member_weights(weights, cfg.members, p / "model.safetensors"):
            try:
                net = NumpyPolicyNet(part, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
                                     num_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size)
            except ValueError as exc:
                raise CheckpointError(f"{p / 'model.safetensors'} does not match the model config.json describes: {exc}") from None
            bad = [k for k, v in net.weights.items() if not np.isfinite(v).all()]
            if bad:
                raise CheckpointError(f"{p / 'model.safetensors'} has non-finite weights in {len(bad)} tensor(s) "
                                      f"({', '.join(sorted(bad)[:3])}); the checkpoint is corrupt")
            _probe(net, cfg, p / "model.safetensors")
            nets.append(net)
        return cls(nets, cfg=cfg, meta=meta, **kwargs)

    # ------------------------------------------------------------------ guardrails
    def check_input(self, history: History, space: SearchSpace, target: Mapping[str, float]) -> OODReport:
        """Detect inputs the model was not trained for (it then falls back to the classical strategy)."""
        r = OODReport()
        if space.width == 0:
            r.reasons.append("the search space is empty")
        if space.width > self.cfg.max_params:
            r.reasons.append(f"the space has {space.width} unit-cube coordinates, more than the {self.cfg.max_params} the model reads")
        if len(target) > F_AX:
            r.reasons.append(f"{len(target)} fidelity axes, more than the {F_AX} the model reads")
        for k, v in target.items():
            if not math.isfinite(float(v)):
                r.reasons.append(f"target fidelity {k}={v!r} is not finite")
        return r

    # ------------------------------------------------------------------ proposing
    def candidates(
        self, enc_probe: Encoded, space: SearchSpace, history: History, rng: np.random.Generator
    ) -> np.ndarray:
        """Candidate points in the unit cube when the caller gives no finite list: snapped onto the space
        (:meth:`SearchSpace.snap_unit_many`) and deduplicated, first occurrence kept."""
        W = space.width
        cfg = self.cfg
        pts = [rng.random((cfg.n_random_candidates, W))]
        centres = [enc_probe.extrap, enc_probe.near]
        centres += [c.best_unit for c in enc_probe.cells]
        for j, centre in enumerate(centres):
            scale = LOCAL_SCALES[0] if j == 0 else LOCAL_SCALES[1]
            pts.append(np.clip(centre + rng.normal(0, scale, (cfg.n_local_candidates // max(len(centres), 1) + 1, W)), 0, 1))
            pts.append(centre[None])
        units = space.snap_unit_many(np.concatenate(pts))
        first = np.unique(unit_keys(units), return_index=True)[1]
        return units[np.sort(first)]  # type: ignore[no-any-return]

    def score(
        self, history: History, space: SearchSpace, target: Mapping[str, float], units: np.ndarray, *, base: Encoded | None = None
    ) -> tuple[Encoded, np.ndarray, np.ndarray, np.ndarray]:
        """Policy logits and value predictions (objective units) for candidate points.

        Raises:
            FloatingPointError: the network produced a non-finite output (never passed on as a proposal).
        """
        if base is None:
            base = encode(history, space, target, units[:0])
        enc = with_queries(base, units)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, not warned about
            n = len(units)
            if self._stacked is not None:
                o = self._stacked.forward(state_arrays([enc]), max_query=self.cfg.max_query)
                outs = [(o["score"][m, 0, :n], o["mu"][m, 0, :n], np.exp(o["log_sigma"][m, 0, :n]))
                        for m in range(self._stacked.members)]
            else:
                from autollm_sampler.agent._net import infer

                t = infer(self._torch, enc, max_query=self.cfg.max_query)
                outs = [(t["score"][0][:n], t["mu"][0][:n], np.exp(t["log_sigma"][0][:n]))]
            score, mu, sigma = _combine(outs)
            finite = np.isfinite(score).all() and np.isfinite(mu).all() and np.isfinite(sigma).all()
            value, std = enc.from_y(mu, sigma)
        if not (finite and np.isfinite(value).all() and np.isfinite(std).all()):
            raise FloatingPointError("the policy network produced non-finite outputs (logits or predicted values)")
        return enc, score.astype(float), value, std

    def _propose(
        self,
        history: History,
        space: SearchSpace,
        target: dict[str, float],
        n: int,
        rng: np.random.Generator,
        candidates: Sequence[Mapping[str, Any]] | None,
        pending: list[Mapping[str, Any]],
    ) -> list[Proposal]:
        report = self.check_input(history, space, target)
        if not report.ok:
            reason = "input outside the training distribution: " + "; ".join(report.reasons)
            return self.fall_back("ood", reason, history, space, target, n, rng, candidates, pending)
        base = encode(history, space, target, np.zeros((0, space.width)))
        configs: list[dict[str, Any]] | None
        if candidates is not None and len(candidates) > 0:
            exclude = tried_keys(history, space, target, pending)
            index = self._candidate_index(space, candidates)
            configs, units = index.configs, index.unit
            untried = [i for i, k in enumerate(index.keys) if k not in exclude]
        else:  # generated candidates: compared with the tried configurations in the unit cube, no dicts
            configs = None
            units = self.candidates(base, space, history, rng)
            seen = set(unit_keys(tried_units(history, space, target, pending)).tolist())
            untried = [i for i, k in enumerate(unit_keys(units).tolist()) if k not in seen]
            if not untried:  # a finite space whose generated candidates were all tried: look at its grid
                grid = _untried_grid(space, seen, rng)
                if len(grid):
                    units, untried = grid, list(range(len(grid)))
            if len(untried) < n:  # a large batch: more candidates, so that proposals stay distinct
                extra = _more_candidates(space, seen | set(unit_keys(units).tolist()), rng, n - len(untried))
                if len(extra):
                    untried += list(range(len(units), len(units) + len(extra)))
                    units = np.concatenate([units, extra])
        if not untried:  # everything tried: allow repeats rather than fail
            untried = list(range(len(units)))
        # one pass scores the candidates, the extrapolated optimum (for the rationale), and for the adaptation
        # step the target runs it reads and the running proposals (queries are independent of each other)
        adapt = self.adapt and self.temperature == 0
        ev, pending_units = self._target_evidence(history, space, target, base, pending) if adapt else (None, None)
        more_q = [u for u in (ev.units if ev is not None else None, pending_units) if u is not None and len(u)]
        ex_unit = space.snap_unit_many(np.asarray(base.extrap, float)[None])
        m = len(untried)
        enc, score, value, std = self.score(history, space, target, np.concatenate([units[untried], ex_unit, *more_q]), base=base)
        model_at_extrap = float(value[m])
        rest, rest_std = value[m + 1 :], std[m + 1 :]
        score, value, std = score[:m], value[:m], std[:m]
        model_value = value.copy()  # the policy's own prediction at each candidate, before the correction
        if adapt:
            assert ev is not None and pending_units is not None
            k = len(ev.units)
            if k:
                ev.mu, ev.sd = space.sign * rest[:k], rest_std[:k]
            value, std, order = self._adapt(space, units[untried], score, value, std, ev, pending_units,
                                            space.sign * rest[k:], n)
            if ev.empty:  # an extrapolation: its reported spread widened, its mean kept plausible (choices are made)
                std = first_run_spread(value, std, base.cells)
                value = first_run_level(value, base.cells)
        else:
            order = self._select(score, n, rng)
        out = []
        for b, j in enumerate(order):
            i = untried[j]
            out.append(Proposal(
                params=configs[i] if configs is not None else space.from_unit(units[i]),
                predicted_value=float(value[j]),
                predicted_std=float(std[j]),
                rationale=model_rationale(self, enc, space, target, units[i], float(value[j]), float(std[j]), history,
                                          model_here=float(model_value[j]), model_at_extrap=model_at_extrap,
                                          batch_index=b),
                source="model",
            ))
        return out

    def _target_evidence(
        self, history: History, space: SearchSpace, target: Mapping[str, float], base: Encoded,
        pending: Sequence[Mapping[str, Any]],
    ) -> tuple[TargetEvidence, np.ndarray]:
        """The target runs the adaptation step reads (diverged runs split off, thinned to the GP's budget;
        their model predictions are filled in by the caller) and the running proposals not yet returned."""
        tkey = fidelity_key(target)
        done_c, done_y, failed_c = [], [], []
        for t in history.trials:
            if (t.fidelity and fidelity_key(t.fidelity) != tkey) or t.state not in ("complete", "failed"):
                continue
            if t.state == "complete" and t.value is not None:
                done_c.append(t.params)
                done_y.append(float(t.value))
            else:
                failed_c.append(t.params)
        done_ok, du = valid_units(space, done_c)
        done_y = [done_y[i] for i in done_ok]
        _, fu = valid_units(space, failed_c)
        ran = set(unit_keys(np.concatenate([du, fu])).tolist())
        _, pu = valid_units(space, list(pending))
        pending_units = pu[[k not in ran for k in unit_keys(pu).tolist()]] if len(pu) else pu
        upward = np.array([r == "lr" for r in space.roles()], bool)
        ev = thin(evidence(du, space.sign * np.asarray(done_y, float), np.zeros(len(du)), list(fu),
                           ref=base.ref if base.n_cheap else None, scale=base.scale if base.n_cheap else None,
                           upward=upward))
        return ev, pending_units

    def _adapt(
        self, space: SearchSpace, units: np.ndarray, score: np.ndarray, value: np.ndarray, std: np.ndarray,
        ev: TargetEvidence, pending_units: np.ndarray, pending_mu: np.ndarray, n: int,
    ) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """Correct the predictions with the target runs, avoid failures, spread batches (``agent/_adapt.py``).

        ``ev`` holds the target runs with the model's predictions there, ``pending_mu`` the model's predictions
        at the running proposals ``pending_units`` (both in minimisation units).
        """
        if ev.empty and not len(pending_units) and n == 1:
            return value, std, self._select(score, n, np.random.default_rng(0))
        sign = space.sign
        gp = fit_residuals(ev, std) if len(ev.y) else None
        mu_c, sd_c = correct(sign * value, std, units, ev, gp)
        # the reported spread, rescaled by how well the correction predicts each run from the others (after
        # the choice, which reads sd_c as it is)
        shown = calibrated_spread(sd_c, ev, gp) if gp is not None else sd_c
        if n == 1 and not len(pending_units):
            return sign * mu_c, shown, select(score, mu_c, sd_c, units, ev, pending_units, n)
        if ev.empty:  # nothing returned yet: the policy's choices, kept first_batch_radius from the running
            # runs and from each other (a believer here would only believe the model's own extrapolation)
            return sign * mu_c, shown, select(score, mu_c, sd_c, units, ev, pending_units, n,
                                              radius=ADAPT_SPEC["first_batch_radius"])
        # several at once, or others running: each next pick sees the earlier picks and the running runs as
        # if they had returned what is predicted for them (a "believer"), so its uncertainty there is spent
        runs = len(ev.y) + len(ev.bad_units)
        believed_u: list[np.ndarray] = []
        believed_y: list[float] = []
        believed_mu: list[float] = []
        if len(pending_units):
            cp, _ = correct(pending_mu, np.full(len(pending_mu), float(np.median(std))), pending_units, ev)
            believed_u, believed_y, believed_mu = list(pending_units), list(cp), list(pending_mu)
        order: list[int] = []
        ev_j = ev.believing(believed_u, believed_y, believed_mu)
        sd_j = correct(sign * value, std, units, ev_j)[1] if believed_u else sd_c
        for _ in range(n):
            if len(order) == len(units):  # fewer candidates than asked for: repeat the last, as select does
                order.append(order[-1] if order else 0)
                continue
            i = select(score, mu_c, sd_j, units, ev_j, pending_units, 1, exclude=order,
                       runs=max(runs + len(believed_u), 1), picked=units[order])[0]
            order.append(i)
            believed_u.append(units[i])
            believed_y.append(mu_c[i])
            believed_mu.append(sign * value[i])
            ev_j = ev.believing(believed_u, believed_y, believed_mu)
            sd_j = correct(sign * value, std, units, ev_j)[1]
        return sign * mu_c, shown, order

    def _candidate_index(self, space: SearchSpace, candidates: Sequence[Mapping[str, Any]]) -> CandidateIndex:
        """The core index of a caller's candidate list, memoised per (list, space) object."""
        memo: CandidateIndex | None = getattr(self, "_cand_memo", None)
        if memo is None or memo.candidates is not candidates or memo.space is not space or len(memo) != len(candidates):
            memo = self._cand_memo = CandidateIndex(space, candidates)
        return memo

    def _select(self, score: np.ndarray, n: int, rng: np.random.Generator) -> list[int]:
        if self.temperature > 0:
            z = score / self.temperature
            p = np.exp(z - z.max())
            p /= p.sum()
            k = min(n, int(np.count_nonzero(p)))
            picks = list(rng.choice(len(score), size=k, replace=False, p=p))
        else:
            picks = list(np.argsort(-score, kind="stable")[:n])
        while len(picks) < n:
            picks.append(picks[-1] if picks else 0)
        return [int(i) for i in picks]


#: the files :meth:`TransformerAgent.load` reads (each must be listed in the manifest) and the manifest
_READ_FILES = ("model.safetensors", "config.json")
_MANIFEST = "manifest.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")
#: accepted range of every config.json integer (outside it a checkpoint is refused rather than run)
_CFG_RANGES = {
    "hidden_size": (1, 4096), "num_layers": (1, 64), "num_heads": (1, 256), "intermediate_size": (1, 16384),
    "max_params": (1, D_MAX), "n_random_candidates": (0, 65536), "n_local_candidates": (0, 65536),
    "max_query": (1, 65536), "members": (1, 16),
}


def _combine(outs: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Members' (logits, mu, sigma) over the same candidates -> the ensemble's: mean log-probability, and the
    mixture's mean and standard deviation (in the network's output units)."""
    if len(outs) == 1:
        return outs[0]
    logp = [s - (s.max() + np.log(np.exp(s - s.max()).sum())) for s, _, _ in outs]
    mus = np.stack([m for _, m, _ in outs]).astype(float)
    var = np.stack([sd for _, _, sd in outs]).astype(float) ** 2
    mean = mus.mean(0)
    return np.mean(logp, 0), mean, np.sqrt(np.maximum((var + mus**2).mean(0) - mean**2, var.min(0)))


def _member_weights(weights: Mapping[str, np.ndarray], members: int, path: Path) -> list[dict[str, np.ndarray]]:
    """The tensors of each member: all of them for one network, ``member<i>.``-prefixed ones for an ensemble."""
    if members == 1:
        return [dict(weights)]
    parts: list[dict[str, np.ndarray]] = [{} for _ in range(members)]
    stray = []
    for key, value in weights.items():
        head, _, rest = key.partition(".")
        i = int(head[6:]) if head.startswith("member") and head[6:].isdigit() else -1
        if 0 <= i < members and rest:
            parts[i][rest] = value
        else:
            stray.append(key)
    if stray:
        raise CheckpointError(f"{path}: config.json says {members} members, but tensor(s) {sorted(stray)[:3]} belong to "
                              f"none of member0..member{members - 1}; the checkpoint is corrupt")
    return parts


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:  # also UnicodeDecodeError
        raise CheckpointError(f"{path} is not valid JSON ({exc}); the checkpoint is corrupt") from None
    except OSError as exc:
        raise CheckpointError(f"{path} cannot be read ({exc})") from None


def _verify_files(p: Path, manifest: Mapping[str, Any]) -> None:
    """Every file the loader reads is listed in the manifest, and every listed file matches its sha256."""
    where = p / _MANIFEST
    files = manifest.get("files")
    if not isinstance(files, dict):
        got = "no \"files\" entry" if files is None else f"\"files\" as a {type(files).__name__}"
        raise CheckpointError(f"{where} has {got}; it must map each file name to its sha256 (the checkpoint is corrupt; "
                              "load with verify=False only if you trust its files)")
    missing = [n for n in _READ_FILES if n not in files]
    if missing:
        raise CheckpointError(f"{where} does not list {' and '.join(missing)}, so it cannot be verified; "
                              "the checkpoint is corrupt (load with verify=False only if you trust its files)")
    for name, digest in files.items():
        if not name or name in (".", "..", _MANIFEST) or "/" in name or "\\" in name:
            raise CheckpointError(f"{where} lists {name!r}, which is not a file of the checkpoint folder")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest.lower()):
            raise CheckpointError(f"{where}: the sha256 of {name} must be 64 hexadecimal digits, got {digest!r}")
        if not (p / name).is_file():
            raise CheckpointError(f"{where} lists {name}, which is missing from {str(p)!r}; the checkpoint is incomplete")
        got = sha256_of(p / name)
        if got != digest.lower():
            raise CheckpointError(f"{p / name} has sha256 {got[:12]}..., the manifest says {digest[:12]}...; the checkpoint is corrupt")


def _read_model_config(path: Path) -> AgentModelConfig:
    """config.json as an :class:`AgentModelConfig`, every field checked."""
    conf = _read_json(path)
    if not isinstance(conf, dict):
        raise CheckpointError(f"{path} must be a JSON object with \"format_version\" and \"model\", not a {type(conf).__name__}")
    version = conf.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        hint = (" (format 1 has no agent spec: retrain with `python -m training.pipeline`, or record this "
                "library's spec with `python -m training.restamp DIR` if its features are unchanged)") if version == 1 else ""
        raise CheckpointError(f"{path}: checkpoint format {version!r} is not supported (expected {FORMAT_VERSION}){hint}")
    _check_spec(path, conf.get("spec"))
    model = conf.get("model")
    if not isinstance(model, dict):
        got = "has no \"model\" section" if "model" not in conf else f"has \"model\" as a {type(model).__name__}"
        raise CheckpointError(f"{path} {got}; it must be an object of the model's settings")
    unknown = sorted(set(model) - set(_CFG_RANGES))
    if unknown:
        raise CheckpointError(f"{path}: unknown model setting(s) {unknown[:5]} (known: {sorted(_CFG_RANGES)})")
    for key, value in model.items():
        lo, hi = _CFG_RANGES[key]
        if type(value) is not int or not lo <= value <= hi:
            raise CheckpointError(f"{path}: model setting {key}={value!r} must be an integer in [{lo}, {hi}]")
    try:
        return AgentModelConfig(**model)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: {exc}") from None


def _spec_diff(got: Any, want: Any, where: str = "") -> list[str]:
    """Paths (``features.constants.ridge_penalty``) where two JSON values differ, with both values."""
    if isinstance(got, dict) and isinstance(want, dict):
        out: list[str] = []
        for k in sorted(set(got) | set(want), key=str):
            sub = f"{where}.{k}" if where else str(k)
            if k not in got:
                out.append(f"{sub}: missing in the checkpoint (this library: {want[k]!r})")
            elif k not in want:
                out.append(f"{sub}: {got[k]!r} in the checkpoint, unknown to this library")
            else:
                out += _spec_diff(got[k], want[k], sub)
        return out
    return [] if got == want else [f"{where}: {got!r} in the checkpoint, {want!r} in this library"]


def _check_spec(path: Path, spec: Any) -> None:
    """The spec a checkpoint was saved with must be this library's (:func:`agent_spec`), key by key."""
    if not isinstance(spec, dict):
        raise CheckpointError(f"{path} has no \"spec\" object (the features, candidates and adaptation constants "
                              "the network was trained with); the checkpoint is corrupt")
    want = json.loads(json.dumps(agent_spec()))
    diff = _spec_diff(spec, want)
    if diff:
        feat = any(d.startswith("features") for d in diff)
        fix = ("its network reads other features: retrain it with `python -m training.pipeline`" if feat else
               "only the candidate or adaptation constants differ: record this library's with "
               "`python -m training.restamp DIR` if that is intended")
        raise CheckpointError(f"{path}: the checkpoint's spec differs from this library's in {len(diff)} place(s): "
                              f"{'; '.join(diff[:4])}{' ...' if len(diff) > 4 else ''}; {fix}")


def restamp(path: str | os.PathLike[str]) -> list[str]:
    """Record this library's candidate and adaptation constants in a checkpoint (config.json, manifest).

    The weights do not depend on those two sections, so a checkpoint stays valid when they change; the
    feature section must match, since the network was trained on those features. Returns what changed.

    Raises:
        CheckpointError: the checkpoint is unreadable or its features differ from this library's.
    """
    p = Path(path)
    conf = _read_json(p / "config.json")
    if not isinstance(conf, dict) or not isinstance(conf.get("model"), dict):
        raise CheckpointError(f"{p / 'config.json'} is not a checkpoint config (no \"model\" object)")
    want = json.loads(json.dumps(agent_spec()))
    recorded = conf.get("spec")
    old: dict[str, Any] = recorded if isinstance(recorded, dict) else {}
    feats = old.get("features", want["features"]) if conf.get("format_version") == FORMAT_VERSION else want["features"]
    if feats != want["features"]:
        raise CheckpointError(f"{p}: the checkpoint's features differ from this library's "
                              f"({'; '.join(_spec_diff(feats, want['features'], 'features')[:4])}); retrain it")
    changed = _spec_diff(old, want) if old else ["spec: recorded for the first time"]
    conf = {**conf, "format_version": FORMAT_VERSION, "spec": want}
    (p / "config.json").write_text(json.dumps(conf, indent=1))
    manifest = _read_json(p / _MANIFEST)
    if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict):
        manifest["files"]["config.json"] = sha256_of(p / "config.json")
        (p / _MANIFEST).write_text(json.dumps(manifest, indent=1, default=str))
    return changed


def _read_weights(path: Path) -> dict[str, np.ndarray]:
    """The tensors of model.safetensors, all float32."""
    from safetensors.numpy import load_file

    try:
        weights = load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own SafetensorError, OSError, ValueError...
        raise CheckpointError(f"{path} is not a readable safetensors file ({type(exc).__name__}: {str(exc)[:200]}); "
                              "the checkpoint is corrupt") from None
    odd = sorted(k for k, v in weights.items() if v.dtype != np.float32)
    if odd:
        raise CheckpointError(f"{path}: tensor(s) {odd[:3]} are {weights[odd[0]].dtype}, expected float32")
    return weights


_PROBE: list[tuple[Encoded, dict[str, np.ndarray]]] = []


def _probe_state() -> tuple[Encoded, dict[str, np.ndarray]]:
    """A fixed small input (two cheap cells, two target runs, 16 candidates), built once per process."""
    if not _PROBE:
        space = SearchSpace.from_dict({"params": {
            "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
            "batch_size": {"type": "categorical", "choices": [64, 128, 256, 512]},
            "warmup": {"type": "float", "low": 0.0, "high": 0.2},
        }})
        rng = np.random.default_rng(0)
        target = {"n_params": 1e9, "n_tokens": 2e10}
        history = History()
        for k, n in enumerate((6, 6, 2)):
            fid = target if k == 2 else {"n_params": 1e8 * 3**k, "n_tokens": 2e9 * 3**k}
            for _ in range(n):
                params = space.sample(rng)
                value = 2.5 - 0.2 * k + float(np.sum((space.to_unit(params) - 0.4) ** 2))
                history.add(Trial(id=history.next_id(), params=params, fidelity=fid, value=value))
        enc = encode(history, space, target, rng.random((16, space.width)))
        _PROBE.append((enc, state_arrays([enc])))
    return _PROBE[0]


def _probe(net: NumpyPolicyNet, cfg: AgentModelConfig, path: Path) -> None:
    """Refuse weights that are finite but make the forward pass overflow (so nothing non-finite is proposed)."""
    enc, batch = _probe_state()
    with np.errstate(all="ignore"):
        out = net.forward(batch, max_query=cfg.max_query)
        mu, sigma = out["mu"][0], np.exp(out["log_sigma"][0].astype(float))
        value, std = enc.from_y(mu.astype(float), sigma)
    if not all(np.isfinite(a).all() for a in (out["score"][0], mu, sigma, value, std)):
        raise CheckpointError(f"{path}: the network's outputs on a probe input are not finite (its weights overflow); "
                              "the checkpoint is corrupt")
