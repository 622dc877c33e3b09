"""Shared plumbing of the project-made nano recipes: resumable JSONL logs, timing, versions, progress.

Every finished run appends one JSON line to ``runs.jsonl``; a restarted recipe reads that file and skips
the runs whose ``run_id`` is already there, so an interrupted grid resumes where it stopped. Each line
carries the run's configuration, seed, outcome, measured CPU and wall seconds, and the software versions.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "RunLog",
    "Timer",
    "config_hash",
    "limit_threads",
    "software_versions",
    "run_grid",
]


def limit_threads(n: int = 1) -> None:
    """Pin torch (and BLAS via the environment) to ``n`` threads so CPU seconds are comparable."""
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    os.environ.setdefault("MKL_NUM_THREADS", str(n))
    import torch

    torch.set_num_threads(n)


def software_versions() -> dict[str, str]:
    """Python, torch, transformers and numpy versions plus the machine, recorded with every run."""
    import numpy
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "torch_threads": str(torch.get_num_threads()),
    }


def config_hash(obj: Any) -> str:
    """A short stable hash of a JSON-serialisable object (used in run ids and checkpoint names)."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class Timer:
    """Measures process CPU seconds and wall seconds of a block (``with Timer() as t: ...; t.cpu``)."""

    def __init__(self) -> None:
        self.cpu = 0.0
        self.wall = 0.0

    def __enter__(self) -> Timer:
        self._c0 = time.process_time()
        self._w0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = time.process_time() - self._c0
        self.wall = time.perf_counter() - self._w0


class RunLog:
    """An append-only JSONL file of finished runs, keyed by ``run_id``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        with open(self.path) as fh:
            for line in fh:
                line = line.strip()
                if line:
                    try:
                        out.append(json.loads(line))
                    except json.JSONDecodeError:  # a line cut by a kill: the run is simply redone
                        continue
        return out

    def done(self) -> set[str]:
        return {r["run_id"] for r in self.records()}

    def append(self, record: dict[str, Any]) -> None:
        cut = False  # a line left unfinished by a kill must not swallow the next record
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                cut = fh.read(1) != b"\n"
        with open(self.path, "a") as fh:
            fh.write(("\n" if cut else "") + json.dumps(record, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


@contextmanager
def _progress(total: int, desc: str) -> Iterator[Callable[[str], None]]:
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, file=sys.stderr, mininterval=5.0, dynamic_ncols=False, ncols=100)

    def step(postfix: str) -> None:
        bar.set_postfix_str(postfix, refresh=False)
        bar.update(1)

    try:
        yield step
    finally:
        bar.close()


def run_grid(
    jobs: Sequence[dict[str, Any]],
    run_one: Callable[[dict[str, Any]], dict[str, Any]],
    log: RunLog,
    *,
    desc: str,
    common: dict[str, Any],
) -> int:
    """Run every job whose ``run_id`` is not yet in ``log``; append one record per finished run.

    Args:
        jobs: job dicts, each with a unique ``run_id``.
        run_one: runs one job and returns its outcome fields.
        log: where finished runs go.
        desc: progress-bar label.
        common: fields added to every record (software versions, corpus hash, ...).

    Returns:
        How many runs were executed now (not counting the skipped, already finished ones).
    """
    ids = [j["run_id"] for j in jobs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{desc}: duplicate run ids in the job list")
    done = log.done()
    todo = [j for j in jobs if j["run_id"] not in done]
    print(f"[{desc}] {len(jobs)} runs in the grid, {len(jobs) - len(todo)} already done, {len(todo)} to run",
          file=sys.stderr, flush=True)
    with _progress(len(todo), desc) as step:
        for job in todo:
            with Timer() as t:
                result = run_one(job)
            record = {**job, **result, **common, "total_cpu_s": t.cpu, "total_wall_s": t.wall,
                      "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            log.append(record)
            step(f"{job['run_id'][:40]} {t.cpu:.1f}s")
    return len(todo)


def write_table(out: Path, table_dir: Path, cols: Sequence[str], rows: Sequence[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Write ``table.csv`` (``rows`` in ``cols`` order) to ``table_dir`` and ``metadata.json`` to both folders."""
    table_dir.mkdir(parents=True, exist_ok=True)
    with open(table_dir / "table.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(cols), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    text = json.dumps(meta, indent=2) + "\n"
    (table_dir / "metadata.json").write_text(text)
    (out / "metadata.json").write_text(text)


def seed_noise(by_config: dict[Any, dict[int, float]]) -> dict[str, Any]:
    """Run-to-run noise from configurations run with seeds 0 and 1: statistics of |outcome(0) - outcome(1)|."""
    diffs = sorted(abs(v[0] - v[1]) for v in by_config.values() if 0 in v and 1 in v)
    if not diffs:
        return {"pairs": 0}
    mean = sum(diffs) / len(diffs)
    median = diffs[len(diffs) // 2]
    return {"pairs": len(diffs), "mean_abs_diff": mean, "median_abs_diff": median,
            "max_abs_diff": diffs[-1], "seed_sd_estimate": mean * math.sqrt(math.pi) / 2,
            "robust_sd_estimate": median / 0.9539,
            "note": ("seed_sd_estimate = mean|d|*sqrt(pi)/2: the per-run sd if the two seeds are iid normal; "
                     "robust_sd_estimate = median|d|/0.954, the same sd read from the median pair, which a "
                     "few unstable configurations do not inflate")}
