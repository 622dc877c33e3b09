"""A real objective: train a tiny ``transformers`` GPT-2 on CPU, tuned by AutoLLMSampler in cost-aware mode.

The task is next-token prediction on a synthetic language (a noisy Markov chain over 48 tokens, so the
achievable loss is known to be well below the uniform ``log(48)``). The fidelity is the number of
training steps: a cheap level (a few seconds of CPU) and the target level (four times longer). The
sampler's cost-aware mode decides which level each trial runs at, within a budget of five target runs;
the objective reads ``trial.user_attrs["fidelity"]``. It tunes the learning rate, the batch size and the
warmup fraction, and at the end recommends the configuration to run at the target.

    python examples/tiny_gpt_objective.py          # 40 vs 160 steps
    python examples/tiny_gpt_objective.py --fast   # 8 vs 32 steps, smaller budget (for tests)
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time

import optuna
import torch
import transformers
from transformers import GPT2Config, GPT2LMHeadModel

from autollm_sampler.integrations.optuna import AutoLLMSampler

VOCAB, SEQ = 48, 32


def make_language(seed: int) -> torch.Tensor:
    """A random sparse transition matrix: each token is followed by one of 3 tokens (plus 5% noise)."""
    g = torch.Generator().manual_seed(seed)
    trans = torch.full((VOCAB, VOCAB), 0.05 / VOCAB)
    for a in range(VOCAB):
        nxt = torch.randperm(VOCAB, generator=g)[:3]
        trans[a, nxt] += 0.95 / 3
    return trans / trans.sum(1, keepdim=True)


def sample_batch(trans: torch.Tensor, batch: int, g: torch.Generator) -> torch.Tensor:
    x = torch.empty(batch, SEQ, dtype=torch.long)
    x[:, 0] = torch.randint(0, VOCAB, (batch,), generator=g)
    for i in range(1, SEQ):
        x[:, i] = torch.multinomial(trans[x[:, i - 1]], 1, generator=g).squeeze(1)
    return x


def train(lr: float, batch_size: int, warmup: float, steps: int, trans: torch.Tensor, seed: int = 0) -> float:
    """Train from scratch for ``steps`` AdamW steps; return the loss on a fixed held-out batch."""
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=SEQ, n_embd=48, n_layer=2, n_head=2,
                                       resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    n_warm = max(1, int(warmup * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / n_warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    g = torch.Generator().manual_seed(seed + 1)
    model.train()
    for _ in range(steps):
        x = sample_batch(trans, batch_size, g)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        x = sample_batch(trans, 64, torch.Generator().manual_seed(12345))
        return float(model(input_ids=x, labels=x).loss)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fast", action="store_true", help="8 vs 32 steps and a smaller budget (for tests)")
    parser.add_argument("--agent", default="default", help="default, classical or a checkpoint path")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()

    cheap, full = (8, 32) if args.fast else (40, 160)
    levels = [{"n_steps": cheap, "cost": float(cheap), "name": f"{cheap} steps"},
              {"n_steps": full, "cost": float(full), "name": f"{full} steps"}]
    budget = (3 if args.fast else 5) * full
    sampler = AutoLLMSampler(fidelity=("n_steps",), target={"n_steps": full}, agent=args.agent, seed=args.seed,
                             fidelity_levels=levels, budget=budget, roles={"warmup": "warmup"})
    trans = make_language(args.seed)
    print(f"Tiny GPT-2 ({VOCAB}-token Markov language); fidelity: training steps, {cheap} (cheap) or {full} (target); "
          f"budget {budget} steps. Uniform-guess loss {math.log(VOCAB):.3f}.")

    def objective(trial: optuna.Trial) -> float:
        steps = int(trial.user_attrs["fidelity"]["n_steps"])  # chosen by the sampler before the objective runs
        lr = trial.suggest_float("lr", 1e-4, 3e-2, log=True)
        bs = trial.suggest_categorical("batch_size", [8, 16, 32])
        warmup = trial.suggest_float("warmup", 0.0, 0.3)
        t0 = time.perf_counter()
        loss = train(lr, int(bs), warmup, steps, trans, seed=args.seed)
        print(f"  trial {trial.number:>2} at {steps:>3} steps: lr={lr:.2e} batch_size={bs:>2} warmup={warmup:.2f}"
              f" -> loss {loss:.3f} ({time.perf_counter() - t0:.1f}s)")
        return loss

    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=200, callbacks=[sampler.stop_when_budget_spent])
    rec = sampler.recommend(study)
    print(f"Spent {sampler.budget_spent(study):.0f} of {budget} steps over {len(study.trials)} trials "
          f"({sum(t.user_attrs['fidelity']['n_steps'] == full for t in study.trials)} at the target).")
    print(f"Recommended for {full} steps: lr={rec.params['lr']:.2e} batch_size={rec.params['batch_size']} "
          f"warmup={rec.params['warmup']:.2f} (loss {rec.predicted_value:.3f}, {rec.source})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
