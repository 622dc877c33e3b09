"""Shared fixtures: the raw-data directory defaults to ../shared/gym_data/raw."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_RAW = ROOT.parent / "shared" / "gym_data" / "raw"
os.environ.setdefault("AUTOLLM_GYM_RAW", str(DEFAULT_RAW))
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# strict agents: an internal error raises instead of becoming a quieter classical fallback; tests of the
# fallback path itself set ``agent.strict = False``
os.environ["AUTOLLM_STRICT"] = "1"


@pytest.fixture(scope="session")
def raw_dir() -> Path:
    path = Path(os.environ["AUTOLLM_GYM_RAW"])
    if not path.is_dir():
        pytest.skip(f"raw gym data not found at {path}; set AUTOLLM_GYM_RAW")
    return path
