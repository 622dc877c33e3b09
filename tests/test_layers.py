"""The layering rules of docs/design.md, checked on the source: who may import what."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "autollm_sampler"


def _imports(path: Path) -> set[str]:
    """Every module a file imports (top level or inside functions), absolute names."""
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _files(sub: str = "") -> list[Path]:
    return sorted((PKG / sub).rglob("*.py"))


def _uses(mods: set[str], root: str) -> bool:
    return any(m == root or m.startswith(root + ".") for m in mods)


#: heavy dependency -> the package files allowed to import it (benchmark/ may use the classical HPO libraries)
ALLOWED = {
    # plus: the HW-GPT-Bench recipe reads the published torch files (the performance scripts are in benchmark/)
    "torch": {"agent/_net.py", "agent/_llm.py", "gym/recipes/hwgpt.py"},
    "transformers": {"agent/_net.py", "agent/_llm.py"},
    "peft": {"agent/_llm.py"},
    "optuna": {"integrations/optuna.py", "integrations/_optuna_claims.py", "integrations/_optuna_fidelity.py",
               "integrations/_optuna_history.py", "integrations/_optuna_space.py", "integrations/_optuna_ledger.py"},
    "ray": {"integrations/ray.py"},
}


@pytest.mark.parametrize("dep", sorted(ALLOWED))
def test_heavy_dependencies_live_in_one_module(dep: str) -> None:
    offenders = []
    for f in _files():
        rel = f.relative_to(PKG).as_posix()
        if rel.startswith("benchmark/") or rel in ALLOWED[dep]:
            continue
        if _uses(_imports(f), dep):
            offenders.append(rel)
    assert not offenders, f"{dep} imported outside {sorted(ALLOWED[dep])}: {offenders}"


@pytest.mark.parametrize(("sub", "forbidden"), [
    ("integrations", "autollm_sampler.gym"),
    ("agent", "autollm_sampler.gym"),
    ("gym", "autollm_sampler.agent"),
    ("gym", "autollm_sampler.integrations"),
    ("agent", "autollm_sampler.integrations"),
])
def test_layers_do_not_import_upwards_or_sideways(sub: str, forbidden: str) -> None:
    offenders = [f.relative_to(PKG).as_posix() for f in _files(sub) if _uses(_imports(f), forbidden)]
    assert not offenders, f"{sub}/ must not import {forbidden}: {offenders}"


def test_text_io_of_the_llm_backend_needs_no_torch() -> None:
    assert not _uses(_imports(PKG / "agent" / "_text.py"), "torch")


def test_the_budget_rule_is_core() -> None:
    """budget.py is the one cost-aware rule of every frontend and the benchmark: it imports none of them."""
    mods = _imports(PKG / "budget.py")
    offenders = sorted(m for m in mods if m.startswith("autollm_sampler") or _uses({m}, "optuna") or _uses({m}, "ray"))
    assert not offenders, f"budget.py must stay in the core layer: {offenders}"


def test_the_candidate_index_is_core() -> None:
    """candidates.py is the one candidate index of the gym, the benchmark, the strategies and the agents."""
    mods = {m for m in _imports(PKG / "candidates.py") if m.startswith("autollm_sampler")}
    assert mods <= {"autollm_sampler.space"}, f"candidates.py must stay in the core layer: {sorted(mods)}"
