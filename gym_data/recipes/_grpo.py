"""A compact GRPO (group relative policy optimisation) for tiny causal LMs, written for the nano recipes.

The pieces, each a small pure function so the unit tests can check them directly:

* :func:`group_advantages`: rewards of ``G`` completions per prompt -> ``(r - mean_group) / (std_group + eps)``;
  a group whose rewards are all equal gets zero advantage (it carries no learning signal).
* :func:`sequence_logprobs`: per-token log-probabilities of the completion tokens under a model.
* :func:`grpo_loss`: the clipped-ratio policy-gradient loss with a per-token KL penalty to a frozen
  reference model (the ``k3`` estimator ``exp(q - p) - (q - p) - 1``, always >= 0), averaged over each
  completion's valid tokens, then over completions.
* :func:`sample`: temperature sampling (or greedy decoding) of a fixed number of new tokens.

With one optimisation pass per batch of samples (the default here) the ratio is exactly 1 at the update
and the clip never binds; the clipped form is kept so that ``inner_steps > 1`` is correct too.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["group_advantages", "sequence_logprobs", "grpo_loss", "sample", "completion_mask"]


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """Group-normalised advantages.

    Args:
        rewards: shape ``(n_prompts * group_size,)``, completions of one prompt contiguous.
        group_size: completions per prompt (``G``).
        eps: added to the group's standard deviation.

    Returns:
        Advantages of the same shape; zero mean within every group.
    """
    if rewards.ndim != 1 or rewards.numel() % group_size != 0:
        raise ValueError(f"rewards of shape {tuple(rewards.shape)} do not split into groups of {group_size}")
    r = rewards.float().view(-1, group_size)
    mean = r.mean(dim=1, keepdim=True)
    std = r.std(dim=1, unbiased=False, keepdim=True)
    return ((r - mean) / (std + eps)).view(-1)


def completion_mask(completions: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1.0 for completion tokens up to and including the first EOS, 0.0 after it."""
    is_eos = (completions == eos_id).int()
    after = torch.cumsum(is_eos, dim=1) - is_eos  # number of EOS strictly before each position
    return (after == 0).float()


def sequence_logprobs(model: Any, sequences: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """Log-probabilities of ``sequences[:, prompt_len:]`` given everything before, shape ``(B, T_new)``."""
    logits = model(input_ids=sequences).logits[:, prompt_len - 1:-1].float()
    logp = torch.log_softmax(logits, dim=-1)
    return logp.gather(-1, sequences[:, prompt_len:].unsqueeze(-1)).squeeze(-1)


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    beta: float,
    clip_eps: float = 0.2,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The GRPO objective to minimise.

    Args:
        logp: current policy log-probs of the sampled tokens, ``(B, T)``, with gradient.
        old_logp: log-probs under the policy that sampled them, ``(B, T)``, no gradient.
        ref_logp: log-probs under the frozen reference model, ``(B, T)``, no gradient.
        advantages: one per completion, ``(B,)``.
        mask: 1.0 where a token counts, ``(B, T)``.
        beta: KL coefficient.
        clip_eps: ratio clip range ``[1 - eps, 1 + eps]``.

    Returns:
        The scalar loss and a few diagnostics (mean KL, clipped fraction).
    """
    ratio = torch.exp(logp - old_logp)
    adv = advantages.unsqueeze(1)
    pg = -torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * adv)
    d = ref_logp - logp
    kl = torch.exp(d) - d - 1.0
    per_tok = pg + beta * kl
    n_tok = mask.sum(dim=1).clamp(min=1.0)
    loss = ((per_tok * mask).sum(dim=1) / n_tok).mean()
    with torch.no_grad():
        kl_mean = float(((kl * mask).sum(dim=1) / n_tok).mean())
        clipped = float((((ratio - 1).abs() > clip_eps).float() * mask).sum() / mask.sum().clamp(min=1.0))
    return loss, {"kl": kl_mean, "clip_frac": clipped}


@torch.no_grad()
def sample(
    model: Any,
    prompts: torch.Tensor,
    max_new: int,
    *,
    temperature: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Extend ``prompts`` (``(B, P)``, equal lengths) by ``max_new`` tokens; ``temperature=0`` is greedy.

    Recomputes the full sequence each step (sequences here are ~10 tokens, so a KV cache buys nothing).
    """
    seq = prompts
    for _ in range(max_new):
        logits = model(input_ids=seq).logits[:, -1].float()
        if temperature <= 0:
            nxt = logits.argmax(dim=-1, keepdim=True)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)
        seq = torch.cat([seq, nxt], dim=1)
    return seq
