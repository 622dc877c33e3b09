"""The nanolm-pretrain recipe: the stdlib corpus, one real training run, and the recipe end to end (toy)."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

RECIPES = Path(__file__).resolve().parents[2] / "gym_data" / "recipes"
sys.path.insert(0, str(RECIPES))  # the recipes are scripts, not package modules

import _nano_common as common  # noqa: E402
import nanolm_pretrain as npt  # noqa: E402


def test_stdlib_corpus_is_deterministic_and_documented() -> None:
    train, val, info = npt.stdlib_corpus()
    train2, val2, info2 = npt.stdlib_corpus()
    assert train == train2 and val == val2 and info["corpus_sha256"] == info2["corpus_sha256"]
    names = [f["name"] for f in info["files"]]
    assert names == sorted(names) and "os.py" in names
    held = [f for f in info["files"] if f["split"] == "val"]
    assert len(held) == info["n_files"] // 10 + (info["n_files"] % 10 > 5)
    assert info["val_bytes"] == len(val) and info["train_bytes"] == len(train) > 5 * len(val) > 0


def test_one_run_learns_something(tmp_path: Path) -> None:
    grid = npt.PretrainGrid.toy()
    train, val, _ = npt.stdlib_corpus()
    tt = torch.frombuffer(bytearray(train), dtype=torch.uint8).long()
    vt = torch.frombuffer(bytearray(val), dtype=torch.uint8).long()
    job = {"size": "toy", "n_tokens": 8192, "lr": 0.01, "batch_size": 8, "seed": 0}
    r = npt.train_one(job, grid, tt, vt)
    assert not r["diverged"] and r["val_loss"] < math.log(256) - 1.0  # far below a uniform guess
    assert r["steps"] == 8192 // (8 * grid.seq_len) and r["flops_6nd"] == 6 * r["n_params"] * 8192
    assert r["train_cpu_s"] > 0 and 0 < r["n_params"] < r["n_params_total"]


def test_run_log_resumes_and_ignores_a_cut_line(tmp_path: Path) -> None:
    log = common.RunLog(tmp_path / "runs.jsonl")
    calls: list[str] = []

    def run(job: dict[str, object]) -> dict[str, object]:
        calls.append(str(job["run_id"]))
        return {"value": 1.0}

    jobs = [{"run_id": "a"}, {"run_id": "b"}]
    assert common.run_grid(jobs, run, log, desc="t", common={"v": 1}) == 2
    with open(log.path, "a") as fh:
        fh.write('{"run_id": "c", "val')  # a run killed mid-write
    assert common.run_grid([*jobs, {"run_id": "c"}], run, log, desc="t", common={}) == 1
    assert calls == ["a", "b", "c"] and log.done() == {"a", "b", "c"}
    with pytest.raises(ValueError, match="duplicate"):
        common.run_grid([{"run_id": "x"}, {"run_id": "x"}], run, log, desc="t", common={})


def test_recipe_runs_end_to_end_at_toy_size(tmp_path: Path) -> None:
    out, table = tmp_path / "out", tmp_path / "table"
    args = ["--toy", "--out", str(out), "--table-dir", str(table)]
    assert npt.main(args) == 0
    grid = npt.PretrainGrid.toy()
    recs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert len(recs) == len(npt.make_jobs(grid)) == 6
    assert all(r["software"]["torch"] == torch.__version__ and r["total_cpu_s"] > 0 for r in recs)
    corpus = json.loads((out / "corpus.json").read_text())
    assert all(r["corpus_sha256"] == corpus["corpus_sha256"] for r in recs)
    rows = list(csv.DictReader(open(table / "table.csv")))
    assert len(rows) == 6 and all(float(r["val_loss"]) > 0 for r in rows)
    meta = json.loads((table / "metadata.json").read_text())
    assert meta == json.loads((out / "metadata.json").read_text())
    assert meta["schema_version"] == 1 and meta["direction"] == "minimize" and meta["cost_column"] == "train_cpu_s"
    assert meta["noise"]["pairs"] == 2 and meta["compute"]["flops_6nd"] > 0 and meta["corpus"]["n_files"] > 20
    assert npt.main(args) == 0  # resumable: a second call runs nothing new
    assert len((out / "runs.jsonl").read_text().splitlines()) == 6
