"""GRPO's advantages and loss: the functions TRL 1.16's `GRPOTrainer` computes, in MLX.

Matched against `trl/trainer/grpo_trainer.py` of TRL 1.16.0 (`_generate_and_score_completions`
for advantages, `_compute_loss` for the loss), with that version's defaults for what our config
does not set: token-level importance sampling, two-sided clipping with epsilon_high = epsilon,
no delta, no entropy mask or bonus, no truncated-completion masking, one process.

Loss types: "dapo" (TRL's default), "grpo", "bnpo", "dr_grpo". With gradient accumulation
TRL scales each micro-batch's loss so that the micro-batch losses sum to the step's loss; the
`num_items` and `accumulation_steps` arguments reproduce that scaling:

- dapo:    sum(token loss) / num_items, num_items = completion tokens in the whole generation
           batch (TRL's `num_items_in_batch`; steps_per_generation = accumulation steps);
- grpo:    mean over sequences of each sequence's token mean, / accumulation_steps;
- bnpo:    token mean of the micro-batch, / accumulation_steps;
- dr_grpo: sum(token loss) / (rows * max_completion_length), / accumulation_steps.

The per-token loss is the clipped surrogate `-min(r A, clip(r, 1-eps, 1+eps) A)` with
r = exp(logp - old_logp), plus `beta * KL` with the k3 estimator
`exp(ref - logp) - (ref - logp) - 1`.
"""

from __future__ import annotations

from collections.abc import Sequence

import mlx.core as mx
import numpy as np

LOSS_TYPES = ("dapo", "grpo", "bnpo", "dr_grpo")
STD_EPS = 1e-4
"""TRL adds this to the std before dividing (not a clamp)."""


def _mx(x: mx.array | np.ndarray) -> mx.array:
    """An mx array as is (keeping it in the gradient graph), anything else converted."""
    return x if isinstance(x, mx.array) else mx.array(x)


def group_advantages(
    rewards: Sequence[float] | np.ndarray, num_generations: int, scale_rewards: str
) -> np.ndarray:
    """Advantages of rewards laid out as consecutive groups of `num_generations` per prompt.

    reward − group mean, divided by (std + 1e-4) where std is the group's ("group") or the
    whole batch's ("batch") sample standard deviation (Bessel-corrected, as TRL's `nanstd`),
    or not divided at all ("none"). float32, as TRL computes it.
    """
    r = np.asarray(rewards, dtype=np.float32)
    groups = r.reshape(-1, num_generations)
    advantages = (groups - groups.mean(axis=1, keepdims=True)).reshape(-1)
    if scale_rewards == "none":
        return advantages
    if scale_rewards == "group":
        std = np.repeat(groups.std(axis=1, ddof=1), num_generations)
    elif scale_rewards == "batch":
        std = np.full_like(r, r.std(ddof=1) if r.size > 1 else 0.0)
    else:
        raise ValueError(f"scale_rewards {scale_rewards!r}: expected group, batch or none")
    return (advantages / (std + np.float32(STD_EPS))).astype(np.float32)


def grpo_loss(
    logprobs: mx.array,
    old_logprobs: mx.array | None,
    ref_logprobs: mx.array | None,
    advantages: mx.array,
    mask: mx.array,
    beta: float,
    epsilon: float,
    loss_type: str,
    *,
    epsilon_high: float | None = None,
    num_items: float | None = None,
    accumulation_steps: int = 1,
    max_completion_length: int | None = None,
) -> tuple[mx.array, dict[str, mx.array]]:
    """TRL's GRPO loss for one (micro-)batch, and the metrics TRL logs with it.

    Shapes: per-token arrays (B, T) over completion positions, `advantages` (B,), `mask` 1 on
    real completion tokens. `old_logprobs` None means the policy that sampled is this one
    (TRL's num_iterations = 1 case): the ratio is exp(logp - stop_gradient(logp)) = 1 with
    the gradient of logp. `ref_logprobs` is only read when `beta` != 0. `num_items` defaults
    to this batch's token count and `max_completion_length` (dr_grpo) to T.

    Metrics (masked token means): `kl` (when beta != 0), `clip_ratio/low_mean`,
    `clip_ratio/high_mean`, `clip_ratio/region_mean`.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type {loss_type!r}: expected one of {LOSS_TYPES}")
    logprobs, mask = _mx(logprobs), _mx(mask).astype(mx.float32)
    old = mx.stop_gradient(logprobs) if old_logprobs is None else _mx(old_logprobs)
    adv = _mx(advantages)[:, None]
    eps_low, eps_high = epsilon, epsilon if epsilon_high is None else epsilon_high

    ratio = mx.exp(logprobs - old)
    clipped = mx.clip(ratio, 1 - eps_low, 1 + eps_high)
    per_token = -mx.minimum(ratio * adv, clipped * adv)
    metrics: dict[str, mx.array] = {}
    tokens = mx.maximum(mask.sum(), 1.0)
    if beta != 0.0:
        ref = _mx(ref_logprobs)
        kl = mx.exp(ref - logprobs) - (ref - logprobs) - 1
        per_token = per_token + beta * kl
        metrics["kl"] = (kl * mask).sum() / tokens

    masked = per_token * mask
    if loss_type == "dapo":
        items = mask.sum() if num_items is None else mx.array(num_items, mx.float32)
        loss = masked.sum() / mx.maximum(items, 1.0)
    elif loss_type == "grpo":
        per_seq = masked.sum(-1) / mx.maximum(mask.sum(-1), 1.0)
        loss = per_seq.mean() / accumulation_steps
    elif loss_type == "bnpo":
        loss = masked.sum() / tokens / accumulation_steps
    else:  # dr_grpo
        width = max_completion_length or per_token.shape[1]
        loss = masked.sum() / (per_token.shape[0] * width) / accumulation_steps

    low = ((ratio < 1 - eps_low) & (adv < 0)).astype(mx.float32)
    high = ((ratio > 1 + eps_high) & (adv > 0)).astype(mx.float32)
    metrics["clip_ratio/low_mean"] = (low * mask).sum() / tokens
    metrics["clip_ratio/high_mean"] = (high * mask).sum() / tokens
    metrics["clip_ratio/region_mean"] = (mx.maximum(low, high) * mask).sum() / tokens
    return loss, metrics
