"""Tampered checkpoints: every defect a loader can see is a ``CheckpointError`` naming the file.

Each row of the table is a named function that damages a fresh copy of the shipped checkpoint. The
"refused" rows must be refused by ``TransformerAgent.load`` and by ``load_agent`` (and make
``resolve_agent("default")`` fall back to the classical agent); the "undetectable" rows (changes no check
can see, the manifest rehashed to match) must load and propose finite values. The text-LLM agent folders
get their own, smaller table at the end.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import pickle
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from autollm_sampler.agent import ClassicalAgent, _loader, load_agent
from autollm_sampler.agent._model import TransformerAgent
from autollm_sampler.agent._numpy_net import NumpyPolicyNet
from autollm_sampler.cli import main
from autollm_sampler.exceptions import CheckpointError
from autollm_sampler.history import History, Trial
from autollm_sampler.integrations._common import resolve_agent
from autollm_sampler.space import SearchSpace

SHIPPED = Path(__file__).resolve().parents[2] / "autollm_sampler" / "agent" / "checkpoints" / "default"
MODEL, CONFIG, MANIFEST = "model.safetensors", "config.json", "manifest.json"
SPACE = SearchSpace.from_dict({"params": {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "batch_size": {"type": "categorical", "choices": [64, 128, 256, 512]},
}})
TARGET = {"n_params": 1e9, "n_tokens": 2e10}

pytestmark = pytest.mark.skipif(not (SHIPPED / MANIFEST).is_file(), reason=f"no shipped checkpoint at {SHIPPED}")


# ---------------------------------------------------------------------------------------------- helpers
def rehash(ckpt: Path, name: str) -> None:
    """Make the manifest's sha256 of ``name`` match the (damaged) file, as a careful tamperer would."""
    manifest = json.loads((ckpt / MANIFEST).read_text())
    manifest["files"][name] = hashlib.sha256((ckpt / name).read_bytes()).hexdigest()
    (ckpt / MANIFEST).write_text(json.dumps(manifest, indent=1))


def edit_json(path: Path, change: Callable[[Any], object]) -> None:
    """Change the JSON document in place (what ``change`` returns is ignored)."""
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def edit_manifest(change: Callable[[Any], Any]) -> Callable[[Path], None]:
    return lambda ckpt: edit_json(ckpt / MANIFEST, change)


def edit_config(change: Callable[[Any], Any]) -> Callable[[Path], None]:
    def damage(ckpt: Path) -> None:
        edit_json(ckpt / CONFIG, change)
        rehash(ckpt, CONFIG)
    return damage


def set_model(key: str, value: Any) -> Callable[[Path], None]:
    def change(conf: Any) -> None:
        conf["model"][key] = value
    return edit_config(change)


def edit_weights(change: Callable[[dict[str, np.ndarray]], None], *, metadata: dict[str, str] | None = None
                 ) -> Callable[[Path], None]:
    def damage(ckpt: Path) -> None:
        w = load_file(str(ckpt / MODEL))
        change(w)
        save_file(w, str(ckpt / MODEL), metadata=metadata)
        rehash(ckpt, MODEL)
    return damage


def edit_bytes(change: Callable[[bytearray], bytes | bytearray], *, rehashed: bool = True) -> Callable[[Path], None]:
    def damage(ckpt: Path) -> None:
        blob = bytearray((ckpt / MODEL).read_bytes())
        (ckpt / MODEL).write_bytes(bytes(change(blob)))
        if rehashed:
            rehash(ckpt, MODEL)
    return damage


def header_len(blob: bytearray) -> int:
    return int(struct.unpack("<Q", bytes(blob[:8]))[0])


def flip(offset: Callable[[bytearray], int], mask: int = 0xFF) -> Callable[[bytearray], bytearray]:
    def change(blob: bytearray) -> bytearray:
        blob[offset(blob)] ^= mask
        return blob
    return change


def data_offset(blob: bytearray) -> int:
    """A byte in the middle of the tensor data (past the header)."""
    start = 8 + header_len(blob)
    return start + (len(blob) - start) // 2


# ---------------------------------------------------------------------------------------------- the table
def _manifest_list(c: Path) -> None: (c / MANIFEST).write_text("[]")
def _manifest_null(c: Path) -> None: (c / MANIFEST).write_text("null")
def _manifest_truncated(c: Path) -> None: (c / MANIFEST).write_text((c / MANIFEST).read_text()[:40])
def _manifest_not_utf8(c: Path) -> None: (c / MANIFEST).write_bytes(b"\xff\xfe{\x00}")
def _manifest_removed(c: Path) -> None: (c / MANIFEST).unlink()
def _model_removed(c: Path) -> None: (c / MODEL).unlink()
def _config_removed(c: Path) -> None: (c / CONFIG).unlink()


def _model_is_a_directory(c: Path) -> None:
    (c / MODEL).unlink()
    (c / MODEL).mkdir()


def _files_empty_and_tensor_flipped(c: Path) -> None:
    edit_bytes(flip(data_offset), rehashed=False)(c)
    edit_json(c / MANIFEST, lambda m: m.update(files={}))


def _files_key_removed_and_tensor_flipped(c: Path) -> None:
    edit_bytes(flip(data_offset), rehashed=False)(c)
    edit_json(c / MANIFEST, lambda m: m.pop("files"))


def _only_config_listed_and_tensor_flipped(c: Path) -> None:
    edit_bytes(flip(data_offset), rehashed=False)(c)
    edit_json(c / MANIFEST, lambda m: m["files"].pop(MODEL))


def _only_model_listed_and_config_edited(c: Path) -> None:
    edit_json(c / CONFIG, lambda conf: conf["model"].update(max_query=1))
    edit_json(c / MANIFEST, lambda m: m["files"].pop(CONFIG))


def _missing_file_listed(c: Path) -> None:
    edit_json(c / MANIFEST, lambda m: m["files"].update({"tokenizer.json": "ab" * 32}))


def _entry_outside_the_folder(c: Path) -> None:
    edit_json(c / MANIFEST, lambda m: m["files"].update({"../distilled/model.safetensors": "ab" * 32}))


def _model_from_another_checkpoint(c: Path) -> None:
    shutil.copy(SHIPPED.parent / "distilled" / MODEL, c / MODEL)


def _pickle_as_safetensors(c: Path) -> None:
    (c / MODEL).write_bytes(pickle.dumps({k: v.tolist() for k, v in load_file(str(c / MODEL)).items()}))
    rehash(c, MODEL)


def _k(w: dict[str, np.ndarray], name: str) -> str:
    """A tensor's key: the name itself, or member 0's copy of it in an ensemble checkpoint."""
    return name if name in w else f"member0.{name}"


def _reshape(w: dict[str, np.ndarray]) -> None: w[_k(w, "mix.1.weight")] = w[_k(w, "mix.1.weight")].reshape(32, 128)
def _drop_tensor(w: dict[str, np.ndarray]) -> None: del w[_k(w, "value_head.2.bias")]
def _extra_tensor(w: dict[str, np.ndarray]) -> None: w["backdoor.weight"] = np.zeros((4, 4), np.float32)
def _as_float64(w: dict[str, np.ndarray]) -> None: w[_k(w, "scal.bias")] = w[_k(w, "scal.bias")].astype(np.float64)
def _as_int32(w: dict[str, np.ndarray]) -> None: w[_k(w, "scal.bias")] = np.zeros_like(w[_k(w, "scal.bias")], dtype=np.int32)
def _all_nan(w: dict[str, np.ndarray]) -> None: w.update({k: np.full_like(v, np.nan) for k, v in w.items()})
def _one_inf(w: dict[str, np.ndarray]) -> None: w[_k(w, "value_head.2.bias")][1] = np.inf
def _one_nan_in_a_norm(w: dict[str, np.ndarray]) -> None: w[_k(w, "backbone.layers.1.input_layernorm.weight")][3] = np.nan
def _huge_weights(w: dict[str, np.ndarray]) -> None: w.update({k: v * np.float32(1e30) for k, v in w.items()})
def _huge_value_head(w: dict[str, np.ndarray]) -> None: w[_k(w, "value_head.2.weight")] *= np.float32(1e4)
def _tiny_change(w: dict[str, np.ndarray]) -> None: w[_k(w, "mix.1.weight")][0, 0] += np.float32(1e-3)


def _model_missing(conf: Any) -> None: conf.pop("model")
def _model_null(conf: Any) -> None: conf["model"] = None
def _unknown_key(conf: Any) -> None: conf["model"]["dropout"] = 0.1
def _format_3(conf: Any) -> None: conf["format_version"] = 3
def _format_true(conf: Any) -> None: conf["format_version"] = True


def _config_not_a_mapping(c: Path) -> None:
    (c / CONFIG).write_text(json.dumps([json.loads((c / CONFIG).read_text())]))
    rehash(c, CONFIG)


def _invalid_config_json(c: Path) -> None:
    (c / CONFIG).write_text('{"format_version": 2, "model": {')
    rehash(c, CONFIG)


def _config_reformatted(c: Path) -> None:
    (c / CONFIG).write_text(json.dumps(json.loads((c / CONFIG).read_text()), indent=4, sort_keys=True))
    rehash(c, CONFIG)


def _meta_edited(c: Path) -> None:
    edit_json(c / MANIFEST, lambda m: m["meta"].update(stage="tampered"))


Row = tuple[str, Callable[[Path], None], str]

#: name, damage, the file the error message must name
REFUSED: list[Row] = [
    # the manifest itself
    ("manifest is []", _manifest_list, MANIFEST),
    ("manifest is null", _manifest_null, MANIFEST),
    ("manifest truncated", _manifest_truncated, MANIFEST),
    ("manifest not UTF-8", _manifest_not_utf8, MANIFEST),
    ("manifest removed", _manifest_removed, MANIFEST),
    ('"files": []', edit_manifest(lambda m: m.update(files=[])), MANIFEST),
    ('"meta": []', edit_manifest(lambda m: m.update(meta=[])), MANIFEST),
    ('"files": {} and a flipped tensor byte', _files_empty_and_tensor_flipped, MANIFEST),
    ('no "files" and a flipped tensor byte', _files_key_removed_and_tensor_flipped, MANIFEST),
    ("only config.json listed and a flipped tensor byte", _only_config_listed_and_tensor_flipped, MANIFEST),
    ("only model.safetensors listed and config.json edited", _only_model_listed_and_config_edited, MANIFEST),
    ("an entry names a missing file", _missing_file_listed, "tokenizer.json"),
    ("an entry outside the folder", _entry_outside_the_folder, MANIFEST),
    ("digest given as a number", edit_manifest(lambda m: m["files"].update({MODEL: 12345})), MODEL),
    ("digest too short", edit_manifest(lambda m: m["files"].update({CONFIG: "ea8dd859"})), CONFIG),
    # a file that does not match the manifest
    ("flipped tensor byte", edit_bytes(flip(data_offset), rehashed=False), MODEL),
    ("weights of the other shipped checkpoint", _model_from_another_checkpoint, MODEL),
    ("config.json edited, not rehashed", lambda c: edit_json(c / CONFIG, lambda conf: conf["model"].update(max_query=8)),
     CONFIG),
    ("model.safetensors removed", _model_removed, MODEL),
    ("config.json removed", _config_removed, CONFIG),
    ("model.safetensors is a directory", _model_is_a_directory, MODEL),
    # model.safetensors damaged, manifest rehashed
    ("flipped safetensors header byte", edit_bytes(flip(lambda b: 8 + header_len(b) // 2)), MODEL),
    ("header length corrupted", edit_bytes(flip(lambda b: 3)), MODEL),
    ("truncated model file", edit_bytes(lambda b: b[: len(b) * 2 // 3]), MODEL),
    ("empty model file", edit_bytes(lambda b: b""), MODEL),
    ("pickle saved as model.safetensors", _pickle_as_safetensors, MODEL),
    ("reshaped tensor", edit_weights(_reshape), MODEL),
    ("tensor missing", edit_weights(_drop_tensor), MODEL),
    ("unexpected extra tensor", edit_weights(_extra_tensor), MODEL),
    ("float64 tensor", edit_weights(_as_float64), MODEL),
    ("int32 tensor", edit_weights(_as_int32), MODEL),
    ("all weights NaN", edit_weights(_all_nan), MODEL),
    ("one inf in the value head", edit_weights(_one_inf), MODEL),
    ("one NaN in a layer norm", edit_weights(_one_nan_in_a_norm), MODEL),
    ("huge finite weights (x1e30)", edit_weights(_huge_weights), MODEL),
    ("value head x1e4 (finite, overflows the prediction)", edit_weights(_huge_value_head), MODEL),
    # config.json damaged, manifest rehashed
    ("hidden_size changed", set_model("hidden_size", 32), CONFIG),
    ("num_layers changed", set_model("num_layers", 3), CONFIG),
    ("invalid config.json", _invalid_config_json, CONFIG),
    ("config.json not a mapping", _config_not_a_mapping, CONFIG),
    ("model section missing", edit_config(_model_missing), CONFIG),
    ("model section null", edit_config(_model_null), CONFIG),
    ("unknown config key", edit_config(_unknown_key), CONFIG),
    ("max_params=10**9", set_model("max_params", 10**9), CONFIG),
    ("hidden_size as a string", set_model("hidden_size", "64"), CONFIG),
    ("hidden_size as a float", set_model("hidden_size", 64.0), CONFIG),
    ("num_heads=0", set_model("num_heads", 0), CONFIG),
    ("num_heads=3 does not divide hidden_size", set_model("num_heads", 3), CONFIG),
    ("n_random_candidates=10**12", set_model("n_random_candidates", 10**12), CONFIG),
    ("max_query=-1", set_model("max_query", -1), CONFIG),
    ("max_query=true", set_model("max_query", True), CONFIG),
    ("format_version 3", edit_config(_format_3), CONFIG),
    ("spec dropped", edit_config(lambda conf: conf.pop("spec")), CONFIG),
    ("spec adapt edited", edit_config(lambda conf: conf["spec"]["adapt"].update(noise_frac=0.5)), CONFIG),
    ("format_version true", edit_config(_format_true), CONFIG),
]

#: changes no check can see: they load and propose finite values
UNDETECTABLE: list[tuple[str, Callable[[Path], None]]] = [
    ("one weight changed by 1e-3, rehashed", edit_weights(_tiny_change)),
    ("lowest mantissa bit of one weight flipped, rehashed", edit_bytes(flip(lambda b: 8 + header_len(b) + 4 * 101, 0x01))),
    ("safetensors metadata added, rehashed", edit_weights(lambda w: None, metadata={"note": "re-saved"})),
    ("config.json reformatted, rehashed", _config_reformatted),
    ("manifest meta edited (not hashed)", _meta_edited),
]


def _history() -> History:
    rng = np.random.default_rng(0)
    h = History()
    for k in range(3):
        fid = {"n_params": 1e8 * 2**k, "n_tokens": 2e9 * 2**k}
        for _ in range(8):
            p = SPACE.sample(rng)
            h.add(Trial(id=h.next_id(), params=p, fidelity=fid, value=2.0 + float(np.sum((SPACE.to_unit(p) - 0.4) ** 2))))
    return h


def _copy(tmp_path: Path) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(SHIPPED, dst)
    return dst


def _assert_refused(ckpt: Path, file: str) -> CheckpointError:
    with pytest.raises(CheckpointError) as direct:
        TransformerAgent.load(ckpt)
    with pytest.raises(CheckpointError) as via:
        load_agent(str(ckpt))
    for err in (direct.value, via.value):
        assert file in str(err), f"the message does not name {file}: {err}"
    return direct.value


@pytest.mark.parametrize(("damage", "file"), [pytest.param(d, f, id=n) for n, d, f in REFUSED])
def test_tampered_checkpoint_is_refused(tmp_path: Path, damage: Callable[[Path], None], file: str,
                                        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    ckpt = _copy(tmp_path)
    damage(ckpt)
    err = _assert_refused(ckpt, file)
    assert len(str(err)) < 600 and "\n" not in str(err)
    # the same defect in the shipped checkpoint: "default" falls back to the classical agent, with a warning
    monkeypatch.setattr(_loader, "DEFAULT_CHECKPOINT", ckpt)
    with caplog.at_level(logging.WARNING):
        assert isinstance(resolve_agent("default"), ClassicalAgent)
    assert "could not be loaded (CheckpointError" in caplog.text


@pytest.mark.parametrize("damage", [pytest.param(d, id=n) for n, d in UNDETECTABLE])
def test_undetectable_tamper_loads_and_proposes_finite_values(tmp_path: Path, damage: Callable[[Path], None]) -> None:
    ckpt = _copy(tmp_path)
    damage(ckpt)
    assert isinstance(load_agent(str(ckpt)), TransformerAgent)
    agent = TransformerAgent.load(ckpt)
    agent.strict = True  # a non-finite output would raise, not fall back
    props = agent.propose(_history(), SPACE, TARGET, n=3, seed=0)
    assert len(props) == 3
    for p in props:
        assert p.source == "model"
        assert math.isfinite(p.predicted_value) and math.isfinite(p.predicted_std) and p.predicted_std > 0
        assert SPACE.validate_params(p.params) == p.params


def test_the_table_has_at_least_30_refused_rows_and_some_undetectable_ones() -> None:
    names = [r[0] for r in REFUSED] + [r[0] for r in UNDETECTABLE]
    assert len(set(names)) == len(names)
    assert len(REFUSED) >= 30 and len(UNDETECTABLE) >= 3
    assert {r[2] for r in REFUSED} >= {MODEL, CONFIG, MANIFEST}


def test_verify_false_skips_the_manifest_but_not_the_content_checks(tmp_path: Path) -> None:
    ckpt = _copy(tmp_path)
    _files_empty_and_tensor_flipped(ckpt)
    assert isinstance(TransformerAgent.load(ckpt, verify=False), TransformerAgent)
    edit_weights(_one_inf)(ckpt)
    with pytest.raises(CheckpointError, match="non-finite weights"):
        TransformerAgent.load(ckpt, verify=False)


@pytest.mark.parametrize("scale", [3.0, 1e2, 1e6, 1e30])
def test_scaled_weights_are_refused_at_load_or_propose_finite_values(tmp_path: Path, scale: float) -> None:
    ckpt = _copy(tmp_path)
    edit_weights(lambda w: w.update({k: v * np.float32(scale) for k, v in w.items()}))(ckpt)
    try:
        agent = TransformerAgent.load(ckpt)
    except CheckpointError as exc:
        assert MODEL in str(exc) and "not finite" in str(exc)
        assert scale > 3  # weights three times larger still run
        return
    agent.strict = True
    try:
        props = agent.propose(_history(), SPACE, TARGET, n=3, seed=0)
    except FloatingPointError:  # the explicit error of a network that overflows on this input (never a NaN)
        return
    assert all(math.isfinite(p.predicted_value) and math.isfinite(p.predicted_std) for p in props)


def test_a_network_that_overflows_is_never_proposed_from(tmp_path: Path) -> None:
    # huge but finite weights that pass no load check (built directly): the prediction overflows in from_y
    shipped = TransformerAgent.load(SHIPPED)
    w = dict(shipped._members[0].weights)  # one network (the shipped checkpoint may be an ensemble)
    w["value_head.2.weight"] = w["value_head.2.weight"] * np.float32(1e4)
    cfg = dataclasses.replace(shipped.cfg, members=1)
    net = NumpyPolicyNet(w, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers, num_heads=cfg.num_heads,
                         intermediate_size=cfg.intermediate_size)
    agent = TransformerAgent(net, cfg=cfg)
    agent.strict = True
    with pytest.raises(FloatingPointError, match="non-finite"):
        agent.propose(_history(), SPACE, TARGET, n=2, seed=0)
    agent.strict = False
    props = agent.propose(_history(), SPACE, TARGET, n=2, seed=0)
    assert [p.source for p in props] == ["fallback", "fallback"]
    assert agent.fallback_counts["error"] == 2
    with pytest.raises(ValueError, match="non-finite"):  # and it cannot be saved with non-finite weights
        w["mix.1.bias"] = np.full_like(w["mix.1.bias"], np.nan)
        TransformerAgent(NumpyPolicyNet(w, hidden_size=cfg.hidden_size, num_layers=cfg.num_layers,
                                        num_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size),
                         cfg=cfg).save(tmp_path / "never")
    assert not (tmp_path / "never").exists()


CLI_ROWS = ["manifest is []", "pickle saved as model.safetensors", "hidden_size changed"]


@pytest.mark.parametrize("row", CLI_ROWS)
def test_cli_exits_2_without_a_traceback(tmp_path: Path, row: str, capsys: pytest.CaptureFixture[str]) -> None:
    name, damage, file = next(r for r in REFUSED if r[0] == row)
    ckpt = _copy(tmp_path)
    damage(ckpt)
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}\n")
    rc = main(["suggest", "--space", str(space), "--target", "n_params=1e9", "--agent", str(ckpt)])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.startswith("autollm-sampler: error: ") and file in err
    assert "Traceback" not in err and err.count("\n") == 1


# ---------------------------------------------------------------------------------------------- text-LLM folders
@pytest.fixture(scope="module")
def llm_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A text-LLM checkpoint folder (tiny random Llama base + LoRA adapter), saved by ``TextLLMAgent.save``."""
    torch = pytest.importorskip("torch")
    from peft import LoraConfig, get_peft_model

    from autollm_sampler.agent._llm import LLMAgentSettings, TextLLMAgent
    from training.llm import LLMSection, build_tokenizer, new_tiny_model

    root = tmp_path_factory.mktemp("llm")
    texts = [f"lr {10.0 ** -k:.1e} batch {2 ** k} loss {3.0 - k / 10:.2f}" for k in range(40)]
    tok = build_tokenizer(texts, 300)
    torch.manual_seed(0)
    base = new_tiny_model(tok, LLMSection(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64,
                                          vocab_size=300, max_seq_len=512))
    base.save_pretrained(str(root / "base"))
    tok.save_pretrained(str(root / "base"))
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    agent = TextLLMAgent(model, tok, base_path=str(root / "base"), settings=LLMAgentSettings(max_new_tokens=16))
    return agent.save(root / "ckpt")


def _llm_copy(llm_ckpt: Path, tmp_path: Path) -> Path:
    shutil.copytree(llm_ckpt.parent, tmp_path / "llm")
    return tmp_path / "llm" / "ckpt"


def _flip_file(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    path.write_bytes(bytes(blob))


LLM_REFUSED: list[tuple[str, Callable[[Path], object], str]] = [
    ("llm_agent.json edited", lambda c: edit_json(c / "llm_agent.json", lambda s: s["settings"].update(top_p=0.5)),
     "llm_agent.json"),
    ("adapter weights flipped", lambda c: _flip_file(c / "adapter" / "adapter_model.safetensors"), "adapter_model.safetensors"),
    ("base weights flipped", lambda c: _flip_file(c.parent / "base" / "model.safetensors"), "model.safetensors"),
    ("base tokenizer edited", lambda c: _flip_file(c.parent / "base" / "tokenizer.json"), "tokenizer.json"),
    ("file added to the base", lambda c: (c.parent / "base" / "extra_weights.bin").write_bytes(b"x"), "extra_weights.bin"),
    ("listed base file removed", lambda c: (c.parent / "base" / "generation_config.json").unlink(), "generation_config.json"),
    ("manifest removed", lambda c: (c / MANIFEST).unlink(), MANIFEST),
    ("manifest not JSON", lambda c: (c / MANIFEST).write_text("{"), MANIFEST),
    ('"files": []', lambda c: edit_json(c / MANIFEST, lambda m: m.update(files=[])), MANIFEST),
    ("llm_agent.json unlisted", lambda c: edit_json(c / MANIFEST, lambda m: m["files"].pop("llm_agent.json")), MANIFEST),
    ("digest given as a number",
     lambda c: edit_json(c / MANIFEST, lambda m: m["files"].update({"llm_agent.json": 7})), "llm_agent.json"),
]


def test_llm_save_writes_a_manifest_of_every_file_load_reads(llm_ckpt: Path) -> None:
    from autollm_sampler.agent._llm import TextLLMAgent

    files = json.loads((llm_ckpt / MANIFEST).read_text())["files"]
    assert {"llm_agent.json", "adapter/adapter_model.safetensors", "adapter/adapter_config.json",
            "../base/model.safetensors", "../base/config.json", "../base/tokenizer.json"} <= set(files)
    assert all(len(d) == 64 for d in files.values())
    assert isinstance(TextLLMAgent.load(llm_ckpt, device="cpu"), TextLLMAgent)


@pytest.mark.parametrize(("damage", "file"), [pytest.param(d, f, id=n) for n, d, f in LLM_REFUSED])
def test_tampered_llm_folder_is_refused(llm_ckpt: Path, tmp_path: Path, damage: Callable[[Path], object],
                                        file: str) -> None:
    from autollm_sampler.agent._llm import TextLLMAgent

    ckpt = _llm_copy(llm_ckpt, tmp_path)
    damage(ckpt)
    for load in (lambda: TextLLMAgent.load(ckpt, device="cpu"), lambda: load_agent(str(ckpt), device="cpu")):
        with pytest.raises(CheckpointError) as err:
            load()
        assert file in str(err.value)


def test_an_older_llm_folder_without_manifest_says_how_to_resave(llm_ckpt: Path, tmp_path: Path) -> None:
    from autollm_sampler.agent._llm import TextLLMAgent

    ckpt = _llm_copy(llm_ckpt, tmp_path)
    (ckpt / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match=r"verify=False\)\.save") as err:
        TextLLMAgent.load(ckpt, device="cpu")
    assert "no manifest.json" in str(err.value)
    TextLLMAgent.load(ckpt, verify=False, device="cpu").save(ckpt)  # the re-save the message suggests
    assert isinstance(load_agent(ckpt, device="cpu"), TextLLMAgent)
