"""An in-house sweep script: a plain loop around ``autollm-sampler suggest``, no Optuna or Ray needed.

This is how a team with its own job launcher uses the agent: keep the search space in a YAML file and
every finished run as one line of a JSONL history, ask the CLI for the next configuration, launch it,
append the outcome, repeat. Here "launching" looks up the measured outcome in the held-out Step Law
target cell (N = 1.07B, D = 20B); the history starts with the cheaper cells' runs.

    python examples/inhouse_sweep.py                 # 6 rounds, full history
    python examples/inhouse_sweep.py --fast          # 2 rounds, sparse history
    python examples/inhouse_sweep.py --workdir sweep # keep space.yaml and runs.jsonl in ./sweep

Needs the Step Law raw data (``AUTOLLM_GYM_RAW``, ``../shared/gym_data/raw`` in this repository).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from autollm_sampler import gym


def write_inputs(workdir: Path, cell: gym.Cell, cheaper: list[gym.Cell], *, sparse: int | None, seed: int) -> tuple[Path, Path]:
    """space.yaml (the target grid) and runs.jsonl (the cheaper cells' runs), as a user would keep them."""
    space = {
        "direction": "minimize",
        "params": {
            "lr": {"type": "categorical", "choices": list(cell.space.params["lr"].choices)},  # type: ignore[union-attr]
            "batch_size": {"type": "categorical", "choices": list(cell.space.params["batch_size"].choices)},  # type: ignore[union-attr]
        },
    }
    space_path = workdir / "space.yaml"
    space_path.write_text(yaml.safe_dump(space, sort_keys=False))
    rng = np.random.default_rng(seed)
    lines = []
    for c in cheaper:
        rows = range(len(c)) if sparse is None else rng.choice(len(c), size=min(sparse, len(c)), replace=False)
        for i in rows:
            lines.append(json.dumps({"params": c.configs[int(i)], "fidelity": c.fidelity, "value": float(c.values[int(i)]), "state": "complete"}))
    history_path = workdir / "runs.jsonl"
    history_path.write_text("\n".join(lines) + "\n")
    return space_path, history_path


def suggest(space: Path, history: Path, target: dict[str, float], *, seed: int, agent: str) -> dict[str, Any]:
    """One call of the CLI, exactly as a shell script would make it."""
    cmd = [
        sys.executable, "-m", "autollm_sampler.cli", "suggest",
        "--space", str(space), "--history", str(history),
        "--target", ",".join(f"{k}={v!r}" for k, v in target.items()),  # exact values: they must match the history
        "-n", "1", "--seed", str(seed), "--agent", agent,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"autollm-sampler suggest failed ({out.returncode}): {out.stderr.strip()}")
    proposals: list[dict[str, Any]] = json.loads(out.stdout)
    return proposals[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="2 rounds and a sparse history (for tests)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--target", default="N=1.07B,D=20B")
    parser.add_argument("--agent", default="default", help="default, classical or a checkpoint path")
    parser.add_argument("--workdir", default=None, help="where space.yaml and runs.jsonl live (default: a temp dir)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    task = gym.make("steplaw-dense-v1")
    cell = task.cell(args.target)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="autollm-sweep-"))
    workdir.mkdir(parents=True, exist_ok=True)
    space, history = write_inputs(workdir, cell, task.cheaper_cells(args.target), sparse=20 if args.fast else None, seed=args.seed)
    rounds = args.rounds or (2 if args.fast else 6)
    target = dict(cell.fidelity)
    print(f"Sweep on {cell.name}: space {space}, history {history} ({sum(1 for _ in history.open())} earlier runs)")
    best = float("inf")
    for k in range(rounds):
        prop = suggest(space, history, target, seed=args.seed + k, agent=args.agent)
        row, _ = cell.snap(prop["params"])  # "launch the job": here, the published outcome of that run
        value = float(cell.values[row])
        best = min(best, value)
        with history.open("a") as fh:
            fh.write(json.dumps({"params": prop["params"], "fidelity": target, "value": value, "state": "complete"}) + "\n")
        pred = prop["predicted_value"]
        print(f"round {k + 1}: lr={prop['params']['lr']:g} batch_size={prop['params']['batch_size']} -> loss {value:.4f}"
              f" (predicted {pred if pred is None else round(pred, 4)}); best gap {cell.gap(best):.3f}%")
        print(f"  why: {prop['rationale']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
