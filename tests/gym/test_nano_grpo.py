"""The compact GRPO of the nanogrpo recipe, its tokenizer, and the recipe run end to end at toy size."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

RECIPES = Path(__file__).resolve().parents[2] / "gym_data" / "recipes"
sys.path.insert(0, str(RECIPES))  # the recipes are scripts, not package modules

import _grpo as grpo  # noqa: E402
import nanogrpo as ng  # noqa: E402


def test_group_advantages_are_normalised_within_each_group() -> None:
    r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    a = grpo.group_advantages(r, 4).view(3, 4)
    assert torch.allclose(a.sum(dim=1), torch.zeros(3), atol=1e-5)
    assert torch.equal(a[1], torch.zeros(4))  # all rewards equal: no signal
    assert a[0, 0] > 0 > a[0, 1]
    assert a[2].std(unbiased=False) == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="groups of 5"):
        grpo.group_advantages(r, 5)


def test_completion_mask_stops_after_the_first_eos() -> None:
    comp = torch.tensor([[1, 2, 9, 3], [9, 9, 1, 1], [1, 2, 3, 4]])
    m = grpo.completion_mask(comp, eos_id=9)
    assert m.tolist() == [[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]]


def test_grpo_loss_kl_is_zero_at_the_reference_and_positive_away_from_it() -> None:
    lp = torch.log(torch.tensor([[0.5, 0.25], [0.1, 0.9]]))
    mask = torch.ones(2, 2)
    adv = torch.zeros(2)
    _, info = grpo.grpo_loss(lp, lp, lp, adv, mask, beta=1.0)
    assert info["kl"] == pytest.approx(0.0, abs=1e-7)
    loss, info = grpo.grpo_loss(lp, lp, lp - 0.5, adv, mask, beta=1.0)
    assert info["kl"] > 0 and float(loss) == pytest.approx(info["kl"], rel=1e-5)


def test_grpo_loss_clips_the_ratio() -> None:
    old = torch.zeros(1, 1)
    new = torch.full((1, 1), 1.0, requires_grad=True)  # ratio e ~ 2.72, far above 1 + eps
    loss, info = grpo.grpo_loss(new, old, new.detach(), torch.tensor([1.0]), torch.ones(1, 1), beta=0.0,
                                clip_eps=0.2)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(-1.2) and info["clip_frac"] == 1.0
    assert new.grad is not None and float(new.grad.abs().sum()) == 0.0  # clipped: no gradient


def _tiny_policy() -> tuple[object, object]:
    size = ng.PolicySize("t", 16, 1, 2, 32, 0)
    return ng.build_policy(size, seed=0), ng.build_policy(size, seed=0)


def test_one_small_grpo_step_raises_the_likelihood_of_rewarded_completions() -> None:
    policy, ref = _tiny_policy()
    gen = torch.Generator().manual_seed(0)
    prompts, answers = ng.encode_batch(ng.split_pairs()[0][:4])
    prompts = prompts.repeat_interleave(8, dim=0)
    seq = grpo.sample(policy, prompts, ng.ANSWER_LEN, temperature=1.0, generator=gen)
    reward = (seq[:, -1] % 2 == 0).float()  # an arbitrary but fixed reward
    adv = grpo.group_advantages(reward, 8)
    mask = grpo.completion_mask(seq[:, ng.PROMPT_LEN:], ng.TOK.eos_id)
    lp = grpo.sequence_logprobs(policy, seq, ng.PROMPT_LEN)
    with torch.no_grad():
        ref_lp = grpo.sequence_logprobs(ref, seq, ng.PROMPT_LEN)
    loss, _ = grpo.grpo_loss(lp, lp.detach(), ref_lp, adv, mask, beta=0.0)
    before = float(((lp.detach() * mask).sum(1) * adv).sum())
    loss.backward()
    with torch.no_grad():
        for p in policy.parameters():  # type: ignore[attr-defined]
            if p.grad is not None:
                p -= 1e-2 * p.grad
        after = float(((grpo.sequence_logprobs(policy, seq, ng.PROMPT_LEN) * mask).sum(1) * adv).sum())
    assert after > before


def test_sampling_is_greedy_at_temperature_zero_and_seeded_otherwise() -> None:
    policy, _ = _tiny_policy()
    prompts, _ = ng.encode_batch(ng.split_pairs()[1][:6])
    g1 = grpo.sample(policy, prompts, 4, temperature=0.0)
    assert torch.equal(g1, grpo.sample(policy, prompts, 4, temperature=0.0))
    s1 = grpo.sample(policy, prompts, 4, temperature=1.0, generator=torch.Generator().manual_seed(3))
    s2 = grpo.sample(policy, prompts, 4, temperature=1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2) and torch.equal(s1[:, :ng.PROMPT_LEN], prompts)


def test_tokenizer_and_task_encoding() -> None:
    tok = ng.CharTokenizer()
    assert tok.vocab_size == 14 and tok.decode(tok.encode("07+58=") + [tok.eos_id, 3]) == "07+58="
    assert ng.TOK.decode(ng.answer_ids(7, 58)) == "065" and len(ng.prompt_ids(7, 58)) == ng.PROMPT_LEN
    with pytest.raises(ValueError, match="not in the vocabulary"):
        tok.encode("1-2")
    train, held = ng.split_pairs()
    assert len(train) + len(held) == 10_000 and len(held) == 512
    assert not {tuple(p) for p in train.tolist()} & {tuple(p) for p in held.tolist()}


def test_planted_carry_error_in_the_sft_data() -> None:
    assert ng.no_carry_sum(57, 68) == 15 and ng.no_carry_sum(12, 34) == 46 and ng.no_carry_sum(99, 1) == 90
    pairs = torch.tensor([[57, 68]] * 400)
    _, y = ng.sft_batch(pairs, 0.4, torch.Generator().manual_seed(0))
    answers = [ng.TOK.decode(row) for row in y.tolist()]
    share = answers.count("015") / len(answers)
    assert set(answers) == {"125", "015"} and 0.3 < share < 0.5
    _, clean = ng.sft_batch(pairs, 0.0, torch.Generator().manual_seed(0))
    assert {ng.TOK.decode(row) for row in clean.tolist()} == {"125"}


def test_recipe_runs_end_to_end_at_toy_size_and_resumes(tmp_path: Path) -> None:
    out, table = tmp_path / "out", tmp_path / "table"
    args = ["--toy", "--out", str(out), "--table-dir", str(table), "--work", str(tmp_path / "work")]
    assert ng.main(args) == 0
    recs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert len(recs) == 3 and {r["seed"] for r in recs} == {0, 1}
    for r in recs:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["train_cpu_s"] > 0
        assert r["software"]["torch"] and r["software"]["transformers"] and r["software"]["python"]
    rows = list(csv.DictReader(open(table / "table.csv")))
    assert len(rows) == 3 and {"lr", "kl_coef", "group_size", "temperature", "accuracy"} <= set(rows[0])
    meta = json.loads((table / "metadata.json").read_text())
    assert meta["schema_version"] == 1 and meta["licence"].startswith("Apache-2.0")
    assert meta["noise"]["pairs"] == 1 and meta["compute"]["total_cpu_s"] > 0
    assert len(list((tmp_path / "work").glob("base-toy-*.pt"))) == 1
    assert ng.main(args) == 0  # resumes: nothing to redo, the base is loaded, not retrained
    assert len((out / "runs.jsonl").read_text().splitlines()) == 3
    assert len((out / "base.jsonl").read_text().splitlines()) == 1
