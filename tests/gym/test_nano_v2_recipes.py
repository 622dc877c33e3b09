"""The v2 recipes (nanogrpo-v2, nanolm-pretrain-v2): task encoding, the shared Sobol design, and both run
end to end at toy size, resumably."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("scipy")

RECIPES = Path(__file__).resolve().parents[2] / "gym_data" / "recipes"
sys.path.insert(0, str(RECIPES))  # the recipes are scripts, not package modules

import nanogrpo_v2 as g2  # noqa: E402
import nanolm_pretrain_v2 as p2  # noqa: E402


def test_sums_are_written_least_significant_digit_first() -> None:
    a, b = torch.tensor([457, 999, 5]), torch.tensor([68, 999, 7])
    prompts, answers = g2.encode(a, b, a + b)
    assert prompts.shape == (3, g2.PROMPT_LEN) and answers.shape == (3, g2.ANSWER_LEN)
    text = ["".join(g2.CHARS[i] for i in row[:4]) for row in answers.tolist()]
    assert text == ["5250", "8991", "2100"]  # 525, 1998, 12 reversed, zero-padded to 4 digits
    assert answers[:, 4].eq(g2.EOS_ID).all()
    assert "".join(g2.CHARS[i] for i in prompts[0, 1:].tolist()) == "457+068="
    assert g2.carry_dropped(457, 68) == 415 and g2.carry_dropped(999, 999) == 888


def test_grpo_design_is_shared_deterministic_and_in_range() -> None:
    d = g2.Design()
    configs = g2.configurations(d)
    assert configs == g2.configurations(g2.Design()) and len(configs) == d.n_configs == 32
    assert all(d.lr_range[0] <= c["lr"] <= d.lr_range[1] for c in configs)
    assert all(c["kl_coef"] == 0 or d.kl_range[0] <= c["kl_coef"] <= d.kl_range[1] for c in configs)
    assert sum(c["kl_coef"] == 0 for c in configs) >= 3 and {c["group_size"] for c in configs} == set(g2.GROUP_SIZES)
    assert all(d.clip_range[0] <= c["clip_eps"] <= d.clip_range[1] for c in configs)
    # every size runs the same configurations; the repeat subset runs once more with seed 1
    jobs = g2.make_jobs(d)
    per_size = {s.name: {j["config"] for j in jobs if j["size"] == s.name and j["seed"] == 0} for s in d.sizes}
    assert all(v == set(range(32)) for v in per_size.values())
    assert sum(j["seed"] == 1 for j in jobs) == d.n_repeat * len(d.sizes)


def test_pretrain_design_brackets_batch_sizes_and_warmup() -> None:
    d = p2.Design()
    configs = p2.configurations(d)
    assert len(configs) == d.n_configs == 24 and configs == p2.configurations(p2.Design())
    assert min(c["batch_size"] for c in configs) == 1 and max(c["batch_size"] for c in configs) == 64
    assert all(d.lr_range[0] <= c["lr"] <= d.lr_range[1] for c in configs)
    assert all(d.warmup_range[0] <= c["warmup_frac"] <= d.warmup_range[1] for c in configs)
    assert len(d.sizes) >= 4 and len(d.token_budgets) >= 2


def test_grpo_v2_recipe_runs_end_to_end_at_toy_size_and_resumes(tmp_path: Path) -> None:
    out, table = tmp_path / "out", tmp_path / "table"
    args = ["--toy", "--out", str(out), "--table-dir", str(table), "--work", str(tmp_path / "work")]
    assert g2.main(args) == 0
    recs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert {r["seed"] for r in recs} == {0, 1}
    rows = list(csv.DictReader(open(table / "table.csv")))
    d = g2.Design.toy()
    assert len(rows) == len(recs) * len(d.eval_at)  # one row per run and evaluation point
    assert {int(r["rl_updates"]) for r in rows} == set(d.eval_at)
    for r in rows:
        assert 0.0 <= float(r["accuracy"]) <= 1.0 and float(r["train_cpu_s"]) >= 0
    meta = json.loads((table / "metadata.json").read_text())
    assert meta["task_id"] == "nanogrpo-v2" and meta["n_rows"] == len(rows)
    assert all(v["pairs"] >= 1 for v in meta["noise"].values()) and meta["compute"]["total_cpu_s"] > 0
    assert g2.main(args) == 0  # resumes: nothing to redo, the base is loaded, not retrained
    assert len((out / "runs.jsonl").read_text().splitlines()) == len(recs)
    assert len((out / "base.jsonl").read_text().splitlines()) == 1


def test_pretrain_v2_recipe_runs_end_to_end_at_toy_size_and_resumes(tmp_path: Path) -> None:
    out, table = tmp_path / "out", tmp_path / "table"
    args = ["--toy", "--out", str(out), "--table-dir", str(table)]
    assert p2.main(args) == 0
    recs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    d = p2.Design.toy()
    assert len(recs) == len(d.sizes) * len(d.token_budgets) * (d.n_configs + d.n_repeat)
    rows = list(csv.DictReader(open(table / "table.csv")))
    assert len(rows) == len(recs) and {"lr", "batch_size", "warmup_frac", "val_loss"} <= set(rows[0])
    assert all(0 < float(r["val_loss"]) <= math.log(256) + 1e-6 for r in rows)
    meta = json.loads((table / "metadata.json").read_text())
    assert meta["task_id"] == "nanolm-pretrain-v2" and meta["noise"]["pairs"] == d.n_repeat
    assert p2.main(args) == 0
    assert len((out / "runs.jsonl").read_text().splitlines()) == len(recs)
