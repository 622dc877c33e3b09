"""The training pipeline, one entry point: curate -> simulate -> distill -> RL -> export.

    python -m training.pipeline --config training/configs/default.yaml
    python -m training.pipeline --config training/configs/tiny.yaml --out runs/tiny --stages distill,rl

Each stage writes its output under ``out_dir`` and is skipped when that output exists (``--force`` reruns
it), so an interrupted run resumes where it stopped. Seeds are fixed by the config.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from autollm_sampler.agent._model import AgentModelConfig, TransformerAgent
from autollm_sampler.exceptions import ConfigError
from training.config import PipelineConfig, load_config, parse_stages
from training.curate import ExperimentSpec, curate
from training.distill import distill
from training.rl import TransformerRLPolicy, grpo
from training.simulate import load_states, save_states, simulate

__all__ = ["run", "main", "STAGES"]

logger = logging.getLogger("training")

STAGES = ("curate", "simulate", "distill", "rl", "export")


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, default=str))


def stage_curate(cfg: PipelineConfig, force: bool) -> list[ExperimentSpec]:
    path = cfg.out / "curate.json"
    if path.exists() and not force:
        return [ExperimentSpec.from_dict(d) for d in json.loads(path.read_text())["experiments"]]
    specs = curate(cfg)
    real = sum(1 for s in specs if not s.source.startswith("synthetic:"))
    _write(path, {"experiments": [s.to_dict() for s in specs], "real": real, "synthetic": len(specs) - real})
    logger.info("curate: %d experiments (%d real, %d synthetic)", len(specs), real, len(specs) - real)
    return specs


def stage_simulate(cfg: PipelineConfig, specs: list[ExperimentSpec], force: bool, progress: bool) -> list[dict[str, torch.Tensor]]:
    path = cfg.out / "states.pt"
    if not path.exists() or force:
        states, summary = simulate(specs, cfg, progress=progress)
        save_states(states, str(path))
        _write(cfg.out / "simulate.json", summary)
        logger.info("simulate: %s", summary)
    return load_states(str(path))


def _model_cfg(cfg: PipelineConfig) -> AgentModelConfig:
    m = cfg.model
    return AgentModelConfig(hidden_size=m.hidden_size, num_layers=m.num_layers, num_heads=m.num_heads,
                            intermediate_size=m.intermediate_size)


def stage_distill(cfg: PipelineConfig, states: list[dict[str, torch.Tensor]], force: bool, progress: bool) -> TransformerAgent:
    path = cfg.out / "distilled"
    if (path / "manifest.json").exists() and not force:
        return TransformerAgent.load(path)
    agent = TransformerAgent.from_config(_model_cfg(cfg), seed=cfg.seed)
    summary = distill(agent.net, states, cfg, progress=progress)
    _write(cfg.out / "distill.json", summary)
    logger.info("distill: before %s after %s in %.1f min", summary["before"], summary["after"], summary["minutes"])
    agent.save(path, extra_meta={"stage": "distilled", "config": cfg.name, "distill": {k: summary[k] for k in ("before", "after", "steps", "minutes")}})
    return TransformerAgent.load(path)


def stage_rl(cfg: PipelineConfig, agent: TransformerAgent, specs: list[ExperimentSpec], force: bool, progress: bool) -> TransformerAgent:
    path = cfg.out / "final"
    if (path / "manifest.json").exists() and not force:
        return TransformerAgent.load(path)
    policy = TransformerRLPolicy(agent.net, max_queries=cfg.curate.max_queries)
    summary = grpo(policy, specs, cfg, progress=progress)
    _write(cfg.out / "rl.json", summary)
    logger.info("rl: %d iterations in %.1f min, return %.4f -> %.4f", summary["iterations"], summary["minutes"],
                summary["return_first_fifth"] or 0.0, summary["return_last_fifth"] or 0.0)
    agent.net.eval()
    agent.save(path, extra_meta={"stage": "rl", "config": cfg.name, "rl": {k: v for k, v in summary.items() if k != "curve"}})
    return TransformerAgent.load(path)


def stage_export(cfg: PipelineConfig) -> None:
    for src, dst in ((cfg.out / "final", cfg.export_dir), (cfg.out / "distilled", cfg.export_distilled_dir)):
        if dst is None or not (src / "manifest.json").exists():
            continue
        d = Path(dst)
        d.mkdir(parents=True, exist_ok=True)
        for name in ("model.safetensors", "config.json", "manifest.json"):
            shutil.copy2(src / name, d / name)
        logger.info("exported %s -> %s", src, d)


def member_config(cfg: PipelineConfig, i: int) -> PipelineConfig:
    """The single-network run of ensemble member ``i``: seed ``cfg.seed + i``, under ``out_dir/member<i>``."""
    return dataclasses.replace(cfg, name=f"{cfg.name}-member{i}", seed=cfg.seed + i, members=1,
                               out_dir=str(cfg.out / f"member{i}"), export_dir=None, export_distilled_dir=None)


def stage_ensemble(cfg: PipelineConfig) -> None:
    """Combine the members' ``final`` and ``distilled`` checkpoints into ``out_dir/final`` and ``out_dir/distilled``."""
    for stage in ("distilled", "final"):
        parts = [cfg.out / f"member{i}" / stage for i in range(cfg.members)]
        missing = [str(p) for p in parts if not (p / "manifest.json").exists()]
        if missing:
            raise FileNotFoundError(f"ensemble: member checkpoint(s) {missing} are missing; run their stages first")
        agent = TransformerAgent.ensemble([TransformerAgent.load(p) for p in parts])
        agent.save(cfg.out / stage, extra_meta={"stage": f"ensemble of {cfg.members} {stage}", "config": cfg.name})
        logger.info("ensemble: %d members -> %s", cfg.members, cfg.out / stage)


def run(cfg: PipelineConfig, *, stages: tuple[str, ...] = STAGES, force: bool = False, progress: bool = True) -> dict[str, Any]:
    """Run the selected stages (earlier outputs are loaded from disk when a stage is skipped).

    With ``cfg.members > 1`` every member runs the training stages in its own folder, then the members are
    combined (:func:`stage_ensemble`) before the export."""
    if cfg.members > 1:
        return _run_ensemble(cfg, stages=stages, force=force, progress=progress)
    cfg.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, cfg.threads))
    torch.manual_seed(cfg.seed)
    _write(cfg.out / "config.json", cfg.to_dict())
    t0 = time.time()
    timings: dict[str, float] = {}

    def timed(name: str, fn: Any, *a: Any) -> Any:
        s = time.time()
        r = fn(*a)
        timings[name] = round((time.time() - s) / 60, 2)
        return r

    specs = timed("curate", stage_curate, cfg, force and "curate" in stages)
    agent = None
    if any(s in stages for s in ("simulate", "distill", "rl")):
        states = timed("simulate", stage_simulate, cfg, specs, force and "simulate" in stages, progress)
        agent = timed("distill", stage_distill, cfg, states, force and "distill" in stages, progress)
        del states
    if "rl" in stages and agent is not None:
        agent = timed("rl", stage_rl, cfg, agent, specs, force, progress)
    if "export" in stages:
        stage_export(cfg)
    summary = {"config": cfg.name, "minutes_total": round((time.time() - t0) / 60, 2), "minutes_by_stage": timings}
    path = cfg.out / "summary.json"
    if path.exists():  # keep the timings of stages that were skipped (reused) in this invocation
        old = json.loads(path.read_text()).get("minutes_by_stage", {})
        merged = {k: (timings[k] if timings.get(k) else v) for k, v in old.items()} | {k: v for k, v in timings.items() if k not in old}
        summary["minutes_by_stage"] = merged
        summary["minutes_total"] = round(sum(merged.values()), 2)
    _write(path, summary)
    return summary


def _run_ensemble(cfg: PipelineConfig, *, stages: tuple[str, ...], force: bool, progress: bool) -> dict[str, Any]:
    cfg.out.mkdir(parents=True, exist_ok=True)
    _write(cfg.out / "config.json", cfg.to_dict())
    t0 = time.time()
    train = tuple(s for s in stages if s != "export")
    members = []
    for i in range(cfg.members):
        logger.info("ensemble member %d of %d (seed %d)", i + 1, cfg.members, cfg.seed + i)
        members.append(run(member_config(cfg, i), stages=train, force=force, progress=progress) if train else {})
    s = time.time()
    if "rl" in stages or "distill" in stages or not (cfg.out / "final" / "manifest.json").exists():
        stage_ensemble(cfg)
    timings = {"members": round((s - t0) / 60, 2), "ensemble": round((time.time() - s) / 60, 2)}
    if "export" in stages:
        stage_export(cfg)
    summary = {"config": cfg.name, "members": members, "minutes_total": round((time.time() - t0) / 60, 2),
               "minutes_by_stage": timings}
    _write(cfg.out / "summary.json", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="YAML config (training/configs/tiny.yaml or default.yaml)")
    ap.add_argument("--out", default=None, help="override out_dir")
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    ap.add_argument("--force", action="store_true", help="rerun the selected stages even if outputs exist")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    ap.add_argument("--no-export", action="store_true", help="do not copy checkpoints to export dirs")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides: dict[str, Any] = {"out_dir": args.out}
    if args.no_export:
        overrides.update(export_dir=None, export_distilled_dir=None)
    cfg = load_config(args.config, **overrides)
    if args.no_export:
        cfg.export_dir = cfg.export_distilled_dir = None
    try:
        stages = parse_stages(args.stages, STAGES)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    summary = run(cfg, stages=stages, force=args.force, progress=not args.no_progress)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
