"""The Makefile's environment logic, run by make itself on a copy of the Makefile in a temporary folder.

* ``AUTOLLM_GYM_RAW`` is exported only when ``../shared/gym_data/raw`` exists (else the gym reads the cache that
  ``autollm-sampler gym fetch`` fills), and a value the caller set is kept.
* torch comes from the CPU wheel index only when one bounded request reaches it; otherwise (this machine, CI)
  the plain ``torch==2.13.0`` pin runs.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")

SHOW_RAW = 'show-raw: ; @printf "[%s]" "$$AUTOLLM_GYM_RAW"'


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """``tmp/repo`` holding the Makefile, a pyproject.toml and a .venv whose python exists (so make -n stops at
    the install recipe); ``tmp/shared`` does not exist."""
    repo = tmp_path / "repo"
    (repo / ".venv" / "bin").mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", repo / "Makefile")
    (repo / "pyproject.toml").write_text("")
    python = repo / ".venv" / "bin" / "python"
    python.write_text("#!/bin/sh\nexit 0\n")
    python.chmod(0o755)
    return repo


def make(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("AUTOLLM_GYM_RAW", "MAKEFLAGS", "MFLAGS")}
    out = subprocess.run(["make", "--no-print-directory", *args], cwd=repo, env={**base, **(env or {})},
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_no_shared_folder_leaves_the_fetch_cache_in_charge(checkout: Path) -> None:
    assert make(checkout, f"--eval={SHOW_RAW}", "show-raw") == "[]"


def test_the_shared_folder_is_exported_when_it_exists(checkout: Path) -> None:
    raw = checkout.parent / "shared" / "gym_data" / "raw"
    raw.mkdir(parents=True)
    assert make(checkout, f"--eval={SHOW_RAW}", "show-raw") == f"[{raw}]"


def test_a_caller_s_raw_folder_is_kept(checkout: Path) -> None:
    (checkout.parent / "shared" / "gym_data" / "raw").mkdir(parents=True)
    assert make(checkout, f"--eval={SHOW_RAW}", "show-raw", env={"AUTOLLM_GYM_RAW": "/data/mine"}) == "[/data/mine]"


def torch_line(repo: Path, **variables: str) -> str:
    """The torch line of the install recipe, as ``make -n install`` expands it."""
    out = make(repo, "-n", "install", *(f"{k}={v}" for k, v in variables.items()))
    (line,) = [x for x in out.splitlines() if "torch==2.13.0" in x]
    return line.rstrip()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_index_falls_back_to_the_plain_pin(checkout: Path) -> None:
    line = torch_line(checkout, TORCH_INDEX_URL=f"http://127.0.0.1:{_free_port()}/whl/cpu")  # nothing listens
    assert line.endswith("pip install -q torch==2.13.0")  # no index flags
    assert "import torch" in line  # and only when .venv does not import torch already


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_an_index_that_does_not_answer_is_given_up_after_the_timeout(checkout: Path) -> None:
    import socket

    with socket.socket() as s:  # accepts connections (backlog) and never answers
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        t0 = time.perf_counter()
        line = torch_line(checkout, TORCH_INDEX_URL=f"http://127.0.0.1:{s.getsockname()[1]}/whl/cpu",
                          TORCH_INDEX_TIMEOUT="1")
        took = time.perf_counter() - t0
    assert line.endswith("pip install -q torch==2.13.0")
    assert 0.9 < took < 15


@pytest.fixture
def cpu_index(tmp_path: Path) -> Iterator[str]:
    """A local HTTP server laid out like https://download.pytorch.org/whl/cpu (a torch/ page)."""
    site = tmp_path / "site"
    (site / "whl" / "cpu" / "torch").mkdir(parents=True)
    (site / "whl" / "cpu" / "torch" / "index.html").write_text("<html></html>")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):  # type: ignore[no-untyped-def]
            super().__init__(*a, directory=str(site), **k)

        def log_message(self, *a):  # type: ignore[no-untyped-def]
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/whl/cpu"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_a_reachable_index_gives_the_cpu_build(checkout: Path, cpu_index: str) -> None:
    line = torch_line(checkout, TORCH_INDEX_URL=cpu_index)
    assert line.endswith(f"pip install -q torch==2.13.0 --index-url {cpu_index} --extra-index-url https://pypi.org/simple")


def test_the_default_index_is_pytorch_s_cpu_wheels() -> None:
    text = (ROOT / "Makefile").read_text()
    assert "TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu" in text
