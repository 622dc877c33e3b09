"""Versioned task registry: ``make("steplaw-dense-v1")``, with "did you mean" on unknown ids."""

from __future__ import annotations

import difflib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autollm_sampler.exceptions import UnknownTaskError
from autollm_sampler.gym._table import TabularTask

__all__ = ["TaskSpec", "register", "make", "registry", "list_ids"]

Builder = Callable[..., TabularTask]


@dataclass(frozen=True)
class TaskSpec:
    """A registered task: its id, family, builder and the figures it must reproduce."""

    id: str
    builder: Builder
    family: str
    summary: str
    expected_rows: int | None = None
    expected_cells: int | None = None
    needs_raw: bool = True
    #: the manifest source its raw files come from (licence and citation are known without the files)
    source: str | None = None


_REGISTRY: dict[str, TaskSpec] = {}
_CACHE: dict[tuple[str, str, str], TabularTask] = {}
_LOCK = threading.RLock()  # re-entrant: a builder may register or make another task


def register(spec: TaskSpec | TabularTask, *, overwrite: bool = False) -> None:
    """Register a task builder under a versioned id (``name-vN``).

    ``spec`` is a :class:`TaskSpec`, or a :class:`TabularTask` already built (from ``from_table``), which is
    registered under its own id as a task that needs no raw files. With ``overwrite=True`` the new builder
    replaces the old one, and every table built by the old one is dropped from the cache, so the next
    :func:`make` (or ``make_env``) builds the new task.

    Raises:
        TypeError: when ``spec`` is neither.
        ValueError: on an id without a version, or an id already registered without ``overwrite=True``.
    """
    if isinstance(spec, TabularTask):
        task = spec
        spec = TaskSpec(task.id, lambda raw_dir=None: task, "custom", f"{task.id} (registered as a table)",
                        needs_raw=False)
    elif not isinstance(spec, TaskSpec):
        raise TypeError(
            f"register() takes a TaskSpec or a TabularTask, got {type(spec).__name__}; for a table you built, "
            "gym.register(task) or gym.register(gym.TaskSpec(id, lambda raw_dir=None: task, family, summary, "
            "needs_raw=False))"
        )
    if not spec.id.rsplit("-", 1)[-1].startswith("v"):
        raise ValueError(f"task id {spec.id!r} must end in a version such as '-v1'")
    with _LOCK:
        if spec.id in _REGISTRY and not overwrite:
            raise ValueError(f"task id {spec.id!r} is already registered; pass overwrite=True to replace it")
        _REGISTRY[spec.id] = spec
        for key in [k for k in _CACHE if k[0] == spec.id]:
            del _CACHE[key]


def registry() -> dict[str, TaskSpec]:
    _ensure_builtin()
    return dict(_REGISTRY)


def list_ids() -> list[str]:
    return list(registry())


def make(id: str, *, raw_dir: str | os.PathLike[str] | None = None, **options: Any) -> TabularTask:
    """Build (or return the cached) task table for a registered id.

    ``options`` go to the task's builder, e.g. ``make("regmix-v1", objective="metric/the_pile_github_val_loss")``
    selects another objective column (ADMIRE and RegMix accept ``objective``).

    Raises:
        UnknownTaskError: with the closest registered ids when ``id`` is unknown.
        RawDataError: when the task's raw files are missing or differ from the pinned versions.
    """
    _ensure_builtin()
    if id not in _REGISTRY:
        close = _close_ids(id)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UnknownTaskError(f"unknown task id {id!r}.{hint} Registered: {sorted(_REGISTRY)}")
    from autollm_sampler.gym._data import resolve_raw_dir

    key = (id, str(resolve_raw_dir(raw_dir)), repr(sorted(options.items())))
    with _LOCK:
        if key not in _CACHE:
            spec = _REGISTRY[id]
            _CACHE[key] = spec.builder(raw_dir=raw_dir, **options) if spec.needs_raw else spec.builder(**options)
        return _CACHE[key]


def _close_ids(id: str) -> list[str]:
    """Registered ids close to ``id``: the other versions of the same task when there are any (``regmix-v2``
    -> ``regmix-v1``), else the nearest spellings."""
    name = id.rsplit("-v", 1)[0]
    same = [i for i in _REGISTRY if i.rsplit("-v", 1)[0] == name]
    return sorted(same) if same else difflib.get_close_matches(id, list(_REGISTRY), n=3, cutoff=0.5)


_BUILTIN_DONE = False


def _ensure_builtin() -> None:
    global _BUILTIN_DONE
    if _BUILTIN_DONE:
        return
    _BUILTIN_DONE = True
    from autollm_sampler.gym import recipes as _r  # noqa: F401
    from autollm_sampler.gym.recipes import admire, hwgpt, regmix, steplaw

    register(TaskSpec("steplaw-dense-v1", steplaw.build_dense, "steplaw-dense",
                      "Step Law dense: lr x batch size, 17 (N, D) cells, smooth loss (min), 6ND FLOPs",
                      steplaw.DENSE_ROWS, steplaw.DENSE_CELLS, source="steplaw"), overwrite=True)
    register(TaskSpec("steplaw-moe-v1", steplaw.build_moe, "steplaw-moe",
                      "Step Law MoE: lr x batch size, 16 (sparsity, D) cells, smooth loss (min), 6·Na·D FLOPs",
                      steplaw.MOE_ROWS, steplaw.MOE_CELLS, source="steplaw"), overwrite=True)
    register(TaskSpec("admire-ift-v1", admire.build, "admire-ift",
                      "ADMIRE IFT: 19-source SFT mixture (simplex), Qwen2.5 0.5B/3B/7B, metric_avg_id+ood (max), "
                      "train_time", admire.ROWS, admire.CELLS, source="admire_ift_runs"), overwrite=True)
    register(TaskSpec("regmix-v1", regmix.build, "regmix",
                      "RegMix: 17-domain Pile mixture (simplex), 1M/60M/1B, Pile-CC val loss (min), 6ND FLOPs",
                      regmix.ROWS, regmix.CELLS, source="regmix"), overwrite=True)
    register(TaskSpec("hwgpt-arch-v1", hwgpt.build, "hwgpt-arch",
                      "HW-GPT-Bench: GPT architecture (embed, depth, per-layer heads/MLP ratio, bias), S/M/L "
                      "surrogate perplexity (min), params", hwgpt.ROWS, hwgpt.CELLS, source="hw_gpt_bench"), overwrite=True)
    from autollm_sampler.gym.recipes import nano

    register(TaskSpec(nano.PRETRAIN_ID, nano.build_pretrain, "nanolm-pretrain",
                      "Project-made (superseded by nanolm-pretrain-v2): tiny byte-level LMs on Python stdlib sources, lr x batch size, "
                      "(n_params, n_tokens) cells, val loss (min), CPU seconds; ships in the package",
                      nano.PRETRAIN_ROWS, nano.PRETRAIN_CELLS, needs_raw=False), overwrite=True)
    register(TaskSpec(nano.GRPO_ID, nano.build_grpo, "nanogrpo",
                      "Project-made (superseded by nanogrpo-v2): GRPO on 2-digit addition, lr x KL coef x group size x temperature, "
                      "n_params cells, held-out pass@1 (max), CPU seconds; ships in the package",
                      nano.GRPO_ROWS, nano.GRPO_CELLS, needs_raw=False), overwrite=True)
    register(TaskSpec(nano.PRETRAIN2_ID, nano.build_pretrain_v2, "nanolm-pretrain-v2",
                      "Project-made: tiny byte-level LMs on Python stdlib sources, lr x batch size (1-64) x warmup "
                      "share (24-point Sobol design), 4 sizes x 2 token budgets, val loss (min), CPU seconds; ships "
                      "in the package", nano.PRETRAIN2_ROWS, nano.PRETRAIN2_CELLS, needs_raw=False), overwrite=True)
    register(TaskSpec(nano.GRPO2_ID, nano.build_grpo_v2, "nanogrpo-v2",
                      "Project-made: GRPO on 3-digit addition from pretrained+SFT policies, lr x KL coef x group "
                      "size x temperature x clip range (32-point Sobol design), (n_params, rl_updates) cells, "
                      "held-out pass@1 (max), CPU seconds; ships in the package",
                      nano.GRPO2_ROWS, nano.GRPO2_CELLS, needs_raw=False), overwrite=True)
