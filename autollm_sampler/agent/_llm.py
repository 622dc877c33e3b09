"""The text-LLM backend: any local Hugging Face causal language model as the research agent.

The model reads the history as text (:func:`autollm_sampler.agent._text.render_prompt`, wrapped in the
tokenizer's chat template when it has one) and answers with a JSON action, which
:func:`~autollm_sampler.agent._text.parse_action` reads and repairs. The answer's ``reason`` becomes the
proposal's rationale, and every answer's repair level is counted in :attr:`TextLLMAgent.stats`.

Load a plain model directory, optionally with a LoRA adapter trained by ``training.llm``::

    agent = TextLLMAgent.from_pretrained("/models/Qwen2.5-0.5B-Instruct", adapter="runs/llm/adapter")

or a checkpoint folder written by :meth:`TextLLMAgent.save` (``llm_agent.json`` names the base model and
the adapter), which is also what ``load_agent(path)`` accepts. Nothing is downloaded: model paths must be
local directories.

This module and the default backend's ``_model`` are the only ones in the package that import torch,
transformers and peft.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autollm_sampler._io import sha256_of
from autollm_sampler._strict import strict_default
from autollm_sampler.agent._base import Agent, Proposal
from autollm_sampler.agent._classical import config_key_or_none, tried_keys
from autollm_sampler.agent._features import encode
from autollm_sampler.agent._text import (
    SYSTEM_PROMPT,
    ParsedAction,
    PromptSettings,
    RepairStats,
    balanced_object,
    parse_action,
    render_prompt,
)
from autollm_sampler.candidates import CandidateIndex
from autollm_sampler.exceptions import CheckpointError
from autollm_sampler.history import History
from autollm_sampler.space import SearchSpace

__all__ = ["LLMAgentSettings", "TextLLMAgent", "LLM_AGENT_FILE", "is_llm_checkpoint", "chat_text", "write_llm_checkpoint"]

logger = logging.getLogger(__name__)

#: The file that marks a text-LLM agent checkpoint folder.
LLM_AGENT_FILE = "llm_agent.json"
#: The sha256 manifest of a text-LLM agent checkpoint folder (written by :func:`write_llm_checkpoint`).
LLM_MANIFEST = "manifest.json"
FORMAT = "autollm-text-llm"
FORMAT_VERSION = 1


@dataclass
class LLMAgentSettings:
    """How the text-LLM agent prompts and decodes.

    Attributes:
        temperature: 0 decodes greedily (the first proposal); further proposals of one call are sampled
            at ``max(temperature, 0.7)``.
        top_p: nucleus sampling when sampling.
        max_new_tokens: answer budget; ``None`` sizes it from the space (``64 + 16 * width``).
        use_chat_template: wrap the prompt in the tokenizer's chat template when it has one.
        task: a task name shown in the prompt.
        prompt: how much history the prompt shows.
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int | None = None
    use_chat_template: bool = True
    task: str | None = None
    prompt: PromptSettings = field(default_factory=PromptSettings)

    def __post_init__(self) -> None:
        if isinstance(self.prompt, Mapping):
            self.prompt = PromptSettings(**self.prompt)
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"temperature must be >= 0 and top_p in (0, 1], got {self.temperature}, {self.top_p}")
        if self.max_new_tokens is not None and self.max_new_tokens < 8:
            raise ValueError(f"max_new_tokens must be at least 8, got {self.max_new_tokens}")

    def answer_budget(self, space: SearchSpace) -> int:
        return self.max_new_tokens or 64 + 16 * space.width


def is_llm_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a text-LLM agent checkpoint folder (it holds ``llm_agent.json``)."""
    return (Path(path) / LLM_AGENT_FILE).is_file()


def chat_text(tokenizer: Any, user: str, *, use_template: bool = True) -> str:
    """The model input for one user message: the chat template when there is one, else the bare prompt."""
    if use_template and getattr(tokenizer, "chat_template", None):
        last: Exception | None = None
        for messages in (
            [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
            [{"role": "user", "content": SYSTEM_PROMPT + "\n\n" + user}],  # templates without a system role
        ):
            try:
                return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
            except Exception as exc:  # noqa: BLE001 - jinja raises plain exceptions for unsupported roles
                last = exc  # the next layout is tried; if none works, strict raises, else said below
        if strict_default() and last is not None:
            raise last
        logger.warning("the model's chat template rejected both prompt layouts (%s); using the bare prompt", last)
    return f"{SYSTEM_PROMPT}\n\n{user}\n"


def write_llm_checkpoint(folder: str | os.PathLike[str], *, base: str | os.PathLike[str],
                         adapter: str | os.PathLike[str] | None, settings: LLMAgentSettings,
                         meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``llm_agent.json`` in ``folder`` (the base model and adapter folders, as relative paths, and the
    settings) and ``manifest.json``: the sha256 of every file loading reads, base model weights included."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    base_dir = Path(base)
    if not (base_dir / "config.json").is_file():
        raise CheckpointError(f"base model folder {str(base_dir)!r} not found (no config.json)")
    if adapter is not None and not (Path(adapter) / "adapter_config.json").is_file():
        raise CheckpointError(f"adapter folder {str(adapter)!r} not found (no adapter_config.json)")
    spec = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "base": os.path.relpath(base_dir.resolve(), out.resolve()),
        "adapter": None if adapter is None else os.path.relpath(Path(adapter).resolve(), out.resolve()),
        "settings": asdict(settings),
        "meta": dict(meta or {}),
    }
    (out / LLM_AGENT_FILE).write_text(json.dumps(spec, indent=1, default=str))
    files = _llm_files(out, base_dir.resolve(), None if adapter is None else Path(adapter).resolve())
    manifest = {"files": {name: sha256_of(f) for name, f in files.items()}}
    (out / LLM_MANIFEST).write_text(json.dumps(manifest, indent=1))
    return out


def _llm_files(folder: Path, base: Path, adapter: Path | None) -> dict[str, Path]:
    """Every file a text-LLM checkpoint's loader reads: ``llm_agent.json``, the adapter's and the base model's
    files (hidden ones skipped), each named by its path relative to the checkpoint folder."""
    found = {LLM_AGENT_FILE: folder / LLM_AGENT_FILE}
    top = folder.resolve()
    for root in (adapter, base):
        if root is None:
            continue
        for f in sorted(root.rglob("*")):
            rel = f.relative_to(root).parts
            if not f.is_file() or any(part.startswith(".") for part in rel):
                continue
            name = Path(os.path.relpath(f, top)).as_posix()
            if name != LLM_MANIFEST:
                found[name] = f
    return found


def _verify_llm_folder(folder: Path, base: Path, adapter: Path | None) -> None:
    """The folder's manifest lists every file the loader reads, and each listed file matches its sha256."""
    where = folder / LLM_MANIFEST
    if not where.is_file():
        raise CheckpointError(
            f"{str(folder)!r} has no {LLM_MANIFEST} (the sha256 of its files), so it cannot be verified; it was "
            "probably written by an older version. If you trust its files, re-save it once with "
            f"TextLLMAgent.load({str(folder)!r}, verify=False).save({str(folder)!r}), or load it with verify=False"
        )
    try:
        manifest = json.loads(where.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"{where} is not valid JSON ({exc}); the checkpoint is corrupt") from None
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(listed, dict):
        raise CheckpointError(f"{where} must be a JSON object whose \"files\" maps each file to its sha256; "
                              "the checkpoint is corrupt")
    needed = _llm_files(folder, base, adapter)
    unlisted = sorted(set(needed) - set(listed))
    if unlisted:
        raise CheckpointError(f"{where} does not list {', '.join(unlisted[:3])}"
                              f"{f' and {len(unlisted) - 3} more' if len(unlisted) > 3 else ''}, which the loader "
                              "reads; the checkpoint was changed after it was saved (re-save it if you trust its files)")
    for name, digest in listed.items():
        path = needed.get(name)
        if path is None:
            raise CheckpointError(f"{where} lists {name!r}, which is missing (or not part of the checkpoint, its base "
                                  "model or its adapter); the checkpoint is incomplete")
        if not isinstance(digest, str) or len(digest) != 64 or not set(digest.lower()) <= set("0123456789abcdef"):
            raise CheckpointError(f"{where}: the sha256 of {name} must be 64 hexadecimal digits, got {digest!r}")
        got = sha256_of(path)
        if got != digest.lower():
            raise CheckpointError(f"{path} has sha256 {got[:12]}..., {LLM_MANIFEST} says {digest[:12]}...; "
                                  "the checkpoint is corrupt")


class _JsonDone:
    """Stops generation once the answer holds one complete top-level JSON object."""

    def __init__(self, tokenizer: Any, start: int) -> None:
        self.tokenizer = tokenizer
        self.start = start

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        done = []
        for row in input_ids:
            text = self.tokenizer.decode(row[self.start :], skip_special_tokens=True)
            done.append(_closed_object(text))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def _closed_object(text: str) -> bool:
    start = text.find("{")
    return start >= 0 and balanced_object(text, start) is not None


class TextLLMAgent(Agent):
    """A causal language model that reads the history as text and answers with a JSON configuration."""

    name = "text-llm"

    def __init__(self, model: Any, tokenizer: Any, *, settings: LLMAgentSettings | None = None,
                 meta: Mapping[str, Any] | None = None, base_path: str | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.settings = settings or LLMAgentSettings()
        self.meta = dict(meta or {})
        self.base_path = base_path
        self.stats = RepairStats()
        if getattr(tokenizer, "pad_token_id", None) is None:
            tokenizer.pad_token = tokenizer.eos_token

    # ------------------------------------------------------------------ construction / persistence
    @classmethod
    def from_pretrained(cls, model_dir: str | os.PathLike[str], *, adapter: str | os.PathLike[str] | None = None,
                        settings: LLMAgentSettings | None = None, device: str | None = None,
                        dtype: str | None = None, meta: Mapping[str, Any] | None = None) -> TextLLMAgent:
        """Load a local model directory (and optionally a LoRA adapter directory); never downloads.

        Args:
            model_dir: a folder with ``config.json``, the weights and the tokenizer files.
            adapter: a folder written by ``peft`` (``adapter_config.json`` + weights).
            device: ``"cpu"``, ``"cuda"``...; default: CUDA when available.
            dtype: ``"float32"``, ``"bfloat16"``, ``"float16"``; default: float32 on CPU, bfloat16 on GPU.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(model_dir)
        if not (path / "config.json").is_file():
            raise CheckpointError(f"{str(path)!r} is not a local Hugging Face model folder (no config.json)")
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        torch_dtype = getattr(torch, dtype) if dtype else (torch.bfloat16 if dev.startswith("cuda") else torch.float32)
        try:
            tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            model = AutoModelForCausalLM.from_pretrained(str(path), local_files_only=True, dtype=torch_dtype)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot load the model in {str(path)!r}: {exc}") from None
        if adapter is not None:
            from peft import PeftModel

            if not (Path(adapter) / "adapter_config.json").is_file():
                raise CheckpointError(f"{str(adapter)!r} is not a LoRA adapter folder (no adapter_config.json)")
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)  # type: ignore[assignment,arg-type]
        model.to(dev)  # type: ignore[arg-type]
        return cls(model, tok, settings=settings, meta=meta, base_path=str(path))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, verify: bool = True, **kwargs: Any) -> TextLLMAgent:
        """Load a checkpoint folder written by :meth:`save` (paths in it are relative to the folder).

        With ``verify`` (the default) the folder's ``manifest.json`` must list the sha256 of every file loading
        reads (``llm_agent.json``, the adapter's and the base model's files) and each must match.

        Raises:
            CheckpointError: naming the file and what is wrong (unreadable, unlisted, changed or missing).
        """
        p = Path(path)
        where = p / LLM_AGENT_FILE
        try:
            spec = json.loads(where.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"{str(p)!r} has no {LLM_AGENT_FILE}; it is not a text-LLM agent checkpoint") from None
        except ValueError as exc:
            raise CheckpointError(f"{where} is not valid JSON ({exc})") from None
        if not isinstance(spec, dict):
            raise CheckpointError(f"{where} must be a JSON object, not a {type(spec).__name__}")
        if spec.get("format") != FORMAT or spec.get("version") != FORMAT_VERSION:
            raise CheckpointError(f"{where}: unsupported format {spec.get('format')!r} v{spec.get('version')}")
        for key, kinds in (("base", (str,)), ("adapter", (str, type(None))), ("settings", (dict,)), ("meta", (dict,))):
            if key in spec and not isinstance(spec[key], kinds):
                raise CheckpointError(f"{where}: {key!r} has the wrong type ({type(spec[key]).__name__})")
        if "base" not in spec:
            raise CheckpointError(f"{where} does not name the base model (\"base\")")
        base = (p / spec["base"]).resolve()
        adapter = (p / spec["adapter"]).resolve() if spec.get("adapter") else None
        if not (base / "config.json").is_file():
            raise CheckpointError(f"{where}: the base model {str(base)!r} is not a local Hugging Face model folder "
                                  "(no config.json)")
        if adapter is not None and not (adapter / "adapter_config.json").is_file():
            raise CheckpointError(f"{where}: the adapter {str(adapter)!r} is not a LoRA adapter folder (no adapter_config.json)")
        if verify:
            _verify_llm_folder(p, base, adapter)
        try:
            settings = LLMAgentSettings(**spec.get("settings", {}))
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: invalid settings ({exc})") from None
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if hasattr(settings, k)}
        for k, v in overrides.items():
            setattr(settings, k, v)
        return cls.from_pretrained(base, adapter=adapter, settings=settings, meta=spec.get("meta", {}), **kwargs)

    def save(self, path: str | os.PathLike[str], *, base: str | os.PathLike[str] | None = None,
             extra_meta: Mapping[str, Any] | None = None) -> Path:
        """Write a checkpoint folder: the LoRA adapter (if any) and ``llm_agent.json`` naming the base model.

        The base model is not copied: ``base`` (default: where it was loaded from) is recorded relative to
        the folder, so a checkpoint is a few MB even for a large base model. ``manifest.json`` records the
        sha256 of every file :meth:`load` reads, the base model's included (so editing any of them, or
        adding a file to the base or adapter folder, makes :meth:`load` refuse the checkpoint).
        """
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        adapter = None
        if hasattr(self.model, "peft_config"):
            self.model.save_pretrained(str(out / "adapter"))
            adapter = out / "adapter"
        if base is None and self.base_path is None:
            raise CheckpointError("the base model folder is unknown (the agent was not made by from_pretrained); pass base=")
        return write_llm_checkpoint(out, base=Path(base or self.base_path or ""), adapter=adapter, settings=self.settings,
                                    meta={**self.meta, **(extra_meta or {})})

    # ------------------------------------------------------------------ text
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def context_size(self) -> int:
        cfg = self.model.config
        size = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None) or 2048
        return int(size)

    def prompt(self, history: History, space: SearchSpace, target: Mapping[str, float],
               pending: Sequence[Mapping[str, Any]] = (), *, hint: Mapping[str, Any] | None = None,
               settings: PromptSettings | None = None) -> str:
        """The model's input text for one proposal (chat template applied)."""
        user = render_prompt(history, space, target, task=self.settings.task, settings=settings or self.settings.prompt,
                             hint=hint, pending=pending)
        return chat_text(self.tokenizer, user, use_template=self.settings.use_chat_template)

    @torch.no_grad()
    def generate_ids(self, prompt_ids: list[int], *, n: int, temperature: float, max_new_tokens: int,
                     seed: int) -> list[list[int]]:
        """Answer token ids for one prompt: ``n`` answers, greedy when ``temperature == 0`` (then ``n == 1``)."""
        ids = torch.tensor([prompt_ids], device=self.device)
        sample = temperature > 0
        gen_kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": sample,
            "num_return_sequences": n if sample else 1,
            "pad_token_id": self.tokenizer.pad_token_id,
            "attention_mask": torch.ones_like(ids),
        }
        if sample:
            gen_kwargs.update(temperature=temperature, top_p=self.settings.top_p, top_k=0)
        from transformers import StoppingCriteriaList

        gen_kwargs["stopping_criteria"] = StoppingCriteriaList([_JsonDone(self.tokenizer, ids.shape[1])])  # type: ignore[list-item]
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            out = self.model.generate(ids, **gen_kwargs)
        eos = self.tokenizer.eos_token_id
        answers = []
        for row in out[:, ids.shape[1]:].tolist():
            cut = [t for t in row if t != self.tokenizer.pad_token_id or t == eos]
            if eos in cut:
                cut = cut[: cut.index(eos) + 1]
            answers.append(cut)
        return answers

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))

    def encode_prompt(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def fit_prompt(self, history: History, space: SearchSpace, target: Mapping[str, float],
                   pending: Sequence[Mapping[str, Any]], hint: Mapping[str, Any] | None) -> list[int] | None:
        """Prompt ids that leave room for the answer, shortening the history summary if needed."""
        budget = self.context_size - self.settings.answer_budget(space)
        base = self.settings.prompt
        for shrink in (base, PromptSettings(top_k=1, max_cells=3, max_target_runs=3, digits=base.digits,
                                            value_digits=base.value_digits, hint=base.hint)):
            ids = self.encode_prompt(self.prompt(history, space, target, pending, hint=hint, settings=shrink))
            if len(ids) <= budget:
                return ids
        logger.warning("the prompt needs %d tokens, more than the %d the model leaves for it", len(ids), budget)
        return None

    def read(self, history: History, space: SearchSpace, target: Mapping[str, float],
             pending: Sequence[Mapping[str, Any]] = ()) -> tuple[dict[str, Any], list[int] | None]:
        """The hint (the serializer's extrapolated optimum, also the parser's fallback) and the prompt ids.

        The ids are ``None``, and ``stats.too_long`` counts it, when the prompt cannot fit the model.
        """
        hint = space.from_unit(encode(history, space, target, np.zeros((0, space.width))).extrap)
        ids = self.fit_prompt(history, space, target, pending, hint)
        if ids is None:
            self.stats.too_long += 1
        return hint, ids

    def answer(self, ids: list[int], space: SearchSpace, hint: Mapping[str, Any], *, n: int, temperature: float,
               seed: int) -> list[tuple[list[int], str, ParsedAction]]:
        """Generate answers to a prompt and parse them (each counted in ``stats``): token ids, text, parsed action."""
        out = []
        for a in self.generate_ids(ids, n=n, temperature=temperature, max_new_tokens=self.settings.answer_budget(space), seed=seed):
            text = self.decode(a)
            parsed = parse_action(text, space, fallback=hint)
            self.stats.add(parsed.level)
            out.append((a, text, parsed))
        return out

    # ------------------------------------------------------------------ proposing
    def _propose(
        self,
        history: History,
        space: SearchSpace,
        target: dict[str, float],
        n: int,
        rng: np.random.Generator,
        candidates: Sequence[Mapping[str, Any]] | None,
        pending: list[Mapping[str, Any]],
    ) -> list[Proposal]:
        # pending configurations that are already target runs in the history are shown once, as runs
        ran = tried_keys(history, space, target, [], complete_only=True)
        hint, ids = self.read(history, space, target, [p for p in pending if p and config_key_or_none(space, p) not in ran])
        if ids is None:
            return self.fall_back("unreadable", "the text-LLM agent cannot read this history (prompt too long)",
                                  history, space, target, n, rng, candidates, pending)
        cand = CandidateIndex(space, candidates) if candidates else None
        out: list[Proposal] = []
        taken = tried_keys(history, space, target, pending)
        tries = 0
        while len(out) < n and tries < 3:
            tries += 1
            greedy = self.settings.temperature == 0 and tries == 1
            temp = 0.0 if greedy else max(self.settings.temperature, 0.7)
            for _, text, parsed in self.answer(ids, space, hint, n=1 if greedy else n - len(out), temperature=temp,
                                               seed=int(rng.integers(1 << 31))):
                params = nearest_untaken(cand, parsed.params, taken) if cand is not None else parsed.params
                key = space.config_key(params)
                if key in taken or len(out) >= n:
                    continue
                taken.add(key)
                out.append(self._proposal(params, parsed, text))
        if len(out) < n:
            rest = self.fall_back("fill", f"the model gave {len(out)} distinct proposal(s) of {n}", history, space, target,
                                  n - len(out), rng, candidates, [*pending, *(p.params for p in out)])
            out.extend(rest)
        return out

    def _proposal(self, params: dict[str, Any], parsed: ParsedAction, text: str) -> Proposal:
        reason = parsed.reason.strip() or "The model gave no reason."
        if parsed.level not in ("strict",):
            reason += f" [answer repaired: {parsed.level}]"
        value = parsed.predicted if parsed.predicted is not None else math.nan
        return Proposal(params=params, predicted_value=value, predicted_std=math.nan, rationale=reason, source="model",
                        extras={"parse_level": parsed.level, "repairs": parsed.repairs, "answer": text})


def nearest_untaken(index: CandidateIndex, params: Mapping[str, Any], taken: set[Any]) -> dict[str, Any]:
    """The candidate nearest to a parsed configuration (in the unit cube) whose config key is not in ``taken``
    (the nearest overall when all are taken)."""
    point = index.space.to_unit(params)
    return index.configs[index.nearest(point, exclude=index.rows_with_keys(taken) if taken else frozenset())]
