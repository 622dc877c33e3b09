"""Every ```python block of the documentation runs, as a user pasting the blocks of one page in order would.

Blocks of one Markdown file run in order in one namespace, in a fresh Python process whose working directory
is an empty temporary folder. A block that is not meant to run says so in its fence: ```python no-run (it must
still compile). A block that takes long says ```python slow: the default suite skips it (so no later block of
its page may depend on it) and the slow test runs every page whole. A traceback names the Markdown file and
its line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
FLAGS = {"no-run", "slow"}
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository root
    line: int  # 1-based line of the first code line
    flags: frozenset[str]
    code: str


def python_blocks(path: Path, rel: str | None = None) -> list[Block]:
    """The ```python (or ```py) blocks of one Markdown file, dedented, with the flags of their fence."""
    rel = rel or path.relative_to(ROOT).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m or (m["fence"][0] == "`" and "`" in m["info"]):  # a backtick fence's info has no backtick
            i += 1
            continue
        fence, words = m["fence"], m["info"].split()
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence) and lines[j].strip().strip(fence[0]) == ""):
            j += 1
        if j == len(lines):
            raise AssertionError(f"{rel}, line {i + 1}: code fence never closed")
        if words and words[0].lower() in ("python", "py"):
            code = textwrap.dedent("\n".join(lines[i + 1 : j]))
            out.append(Block(rel, i + 2, frozenset(words[1:]), code))
        i = j + 1
    return out


ALL = [b for page in PAGES for b in python_blocks(page)]

# Every block the default suite does not run, and why: (page, first line of its code) -> (fence flag, reason).
# The fence flag is what the runner reads; this list makes each exception visible here, and
# test_the_skip_list_is_the_fence_flags fails when a flag appears, changes or goes without an entry, so no block
# is left out of the run silently.
SKIPPED: dict[tuple[str, str], tuple[str, str]] = {
    # names a Hugging Face model folder on the reader's disk (weights we do not ship and cannot download here)
    ("docs/text-llm.md", "from autollm_sampler.agent import load_agent"): ("no-run", "a local model folder"),
    # the same local text-LLM agent folder, inside an Optuna sampler
    ("docs/text-llm.md", "from autollm_sampler import AutoLLMSampler"): ("no-run", "a local model folder"),
    # starts a Ray runtime and runs a Tune experiment: about a minute on 2 cores. The slow test runs it; the
    # searcher itself is covered by tests/integrations/test_ray_searcher.py in the default suite
    ("docs/integrations.md", "from pathlib import Path"): ("slow", "a Ray Tune run"),
}
RUNNER = r"""
import json, sys, time
ns = {"__name__": "__main__"}
for b in json.load(open(sys.argv[1])):
    t = time.perf_counter()
    print(f"--- {b['page']}:{b['line']}", file=sys.stderr, flush=True)
    exec(compile("\n" * (b["line"] - 1) + b["code"], b["page"], "exec"), ns)
    print(f"--- {b['page']}:{b['line']} ran in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
"""


def run_page(page: str, tmp_path: Path, *, slow: bool) -> str:
    blocks = [b for b in ALL if b.page == page and "no-run" not in b.flags and (slow or "slow" not in b.flags)]
    assert blocks, f"{page}: no block to run"
    spec = tmp_path / "blocks.json"
    spec.write_text(json.dumps([{"page": b.page, "line": b.line, "code": b.code} for b in blocks]))
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg", RAY_AUTH_MODE="disabled",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    out = subprocess.run([sys.executable, "-c", RUNNER, str(spec)], capture_output=True, text=True, cwd=work,
                         env=env, timeout=600)
    if out.returncode != 0 and "RawDataError" in out.stderr and not Path(os.environ["AUTOLLM_GYM_RAW"]).is_dir():
        pytest.skip(f"{page} reads raw gym data, not found at {os.environ['AUTOLLM_GYM_RAW']}; set AUTOLLM_GYM_RAW")
    assert out.returncode == 0, f"{page}: a block failed\n{out.stderr[-6000:]}"
    return out.stderr


def pages(*, slow: bool) -> list[str]:
    return sorted({b.page for b in ALL if "no-run" not in b.flags and (slow or "slow" not in b.flags)
                   and (not slow or any("slow" in c.flags for c in ALL if c.page == b.page))})


def test_blocks_are_found_and_marked_sensibly() -> None:
    # the pages with the most code; finding none there means the parser broke, not that the docs changed
    by_page = {p: [b for b in ALL if b.page == p] for p in {b.page for b in ALL}}
    assert len(by_page.get("docs/integrations.md", [])) >= 8
    for b in ALL:
        assert b.flags <= FLAGS, f"{b.page}:{b.line}: unknown fence flag(s) {sorted(b.flags - FLAGS)}; use {sorted(FLAGS)}"
        compile(b.code, f"{b.page}:{b.line}", "exec")  # no-run blocks too: they must at least be Python
    no_run = [b for b in ALL if "no-run" in b.flags]
    assert len(no_run) <= len(ALL) // 4, [f"{b.page}:{b.line}" for b in no_run]


def _first_line(b: Block) -> str:
    return next(line for line in b.code.splitlines() if line.strip())


def test_the_skip_list_is_the_fence_flags() -> None:
    flagged = {(b.page, _first_line(b)): "+".join(sorted(b.flags)) for b in ALL if b.flags}
    assert flagged == {key: flag for key, (flag, _why) in SKIPPED.items()}
    # the pages this project's users paste from run whole in the default suite
    for page in ("docs/integrations.md", "docs/agent.md", "docs/gym.md"):
        assert page in pages(slow=False)


def test_parser_reads_fences_flags_and_indentation(tmp_path: Path) -> None:
    page = tmp_path / "probe.md"
    page.write_text("text\n```python\nx = 1\n```\n\n1. item\n\n   ```python slow\n   y = x + 1\n   ```\n"
                    "```bash\nls\n```\n````python no-run\n```\nnot the end\n````\n```` ```python ```` inline, no fence\n")
    got = python_blocks(page, "probe.md")
    assert [(b.line, sorted(b.flags), b.code) for b in got] == [
        (3, [], "x = 1"), (9, ["slow"], "y = x + 1"), (15, ["no-run"], "```\nnot the end")]


@pytest.mark.parametrize("page", pages(slow=False))
def test_docs_page_runs(page: str, tmp_path: Path) -> None:
    log = run_page(page, tmp_path, slow=False)
    ran = sum(1 for b in ALL if b.page == page and not b.flags)
    assert log.count(" ran in ") == ran


@pytest.mark.slow
@pytest.mark.parametrize("page", pages(slow=True))
def test_docs_page_runs_with_slow_blocks(page: str, tmp_path: Path) -> None:
    log = run_page(page, tmp_path, slow=True)
    assert log.count(" ran in ") == sum(1 for b in ALL if b.page == page and "no-run" not in b.flags)
