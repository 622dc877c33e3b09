"""Record this library's candidate and adaptation constants in trained checkpoints.

A checkpoint's config.json holds the agent spec it was saved with (features, candidates, adaptation) and is
refused at load when that differs from the library's. When only the candidate generator's or the adaptation
step's constants change (they act at proposal time, not on the weights), this rewrites the recorded spec and
the manifest's checksum instead of retraining::

    python -m training.restamp autollm_sampler/agent/checkpoints/default autollm_sampler/agent/checkpoints/distilled

It refuses a checkpoint whose feature section differs: that network was trained on other inputs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from autollm_sampler.agent._model import TransformerAgent, restamp
from autollm_sampler.exceptions import CheckpointError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.restamp", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", help="checkpoint folders (model.safetensors, config.json, manifest.json)")
    args = parser.parse_args(argv)
    for path in args.checkpoints:
        try:
            changed = restamp(path)
            TransformerAgent.load(path)  # the result must load
        except CheckpointError as exc:
            print(f"{path}: {exc}", file=sys.stderr)
            return 1
        print(f"{path}: " + ("; ".join(changed) if changed else "already current"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
