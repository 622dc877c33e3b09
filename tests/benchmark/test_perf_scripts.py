"""The performance scripts live in autollm_sampler/benchmark/; their old module paths are deprecated aliases."""

from __future__ import annotations

import importlib
import runpy
import sys

import pytest

MOVED = {
    "autollm_sampler.agent.bench_latency": "autollm_sampler.benchmark.propose_latency",
    "autollm_sampler.integrations.bench_overhead": "autollm_sampler.benchmark.overhead",
    "autollm_sampler.gym.bench_build": "autollm_sampler.benchmark.gym_build",
}


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_old_paths_run_the_new_scripts(old: str, new: str, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", [old, "--help"])
    with pytest.warns(DeprecationWarning, match=f"moved to {new}"), pytest.raises(SystemExit) as exc:
        runpy.run_module(old, run_name="__main__")
    assert exc.value.code == 0
    assert f"python -m {new}" in capsys.readouterr().out  # the new script's own help


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_old_modules_forward_their_names(old: str, new: str) -> None:
    mod = importlib.import_module(old)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to {new}"):
        assert mod.__getattr__("main") is importlib.import_module(new).main
    with pytest.raises(AttributeError):
        mod.__getattr__("__wrapped__")


def test_the_latency_helper_is_reachable_from_the_old_path() -> None:
    from autollm_sampler.agent import bench_latency
    from autollm_sampler.benchmark.propose_latency import synthetic_history

    with pytest.warns(DeprecationWarning):
        assert bench_latency.synthetic_history is synthetic_history
