"""GRPO in MLX: our own loop, the same algorithm and loss as TRL 1.16's GRPOTrainer.

One optimizer step, as in the paper's pseudo-code:

    prompts  = next P prompts                  (P = batch_size * accumulation / G)
    samples  = sample(policy, prompts, G)       G completions each, batched KV-cache decoding
    rewards  = score(samples)                   qmd_ft.reward on (query, completion)
    adv      = group_advantages(rewards)        group-normalized (grpo_loss.py)
    ref_lp   = logprobs(reference, samples)     frozen SFT-merged model, for the KL penalty
    loss     = grpo_loss(policy, samples, adv, ref_lp)   per micro-batch, gradients summed
    step     = clip gradients, AdamW update, LR schedule

With `num_iterations` > 1 the same samples serve that many steps, against the log-probs of
the policy that sampled them (TRL's μ). The generation batch and its split into micro-batches
follow TRL: `batch_size` completions per micro-batch, `gradient_accumulation_steps`
micro-batches per step, each prompt's G completions adjacent. Completions include the stop
token; the reward scores them decoded as eval decodes them (up to the stop token, special
tokens kept), as the cuda backend's reward does with TRL's ids; log-probs are of logits /
temperature, as TRL's are.

Logged (TRL's names): loss, grad_norm, learning_rate, reward, reward_std,
rewards/qmd_reward/mean, rewards/qmd_reward/std, frac_reward_zero_std, kl,
completions/mean_length, min_length, max_length, clipped_ratio, clip_ratio/*; every
completion with its reward and advantage goes to completions.jsonl.

A resume inside a round of num_iterations > 1 samples that round anew from the resumed
weights; everywhere else a resumed run equals an uninterrupted one (data order and random
draws are functions of the seed and the round).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_map
from mlx_lm.tuner.trainer import grad_checkpoint

from qmd_ft.backend import TrainRequest
from qmd_ft.backends.mlx import checkpoints
from qmd_ft.backends.mlx.dataset import epoch_order, read_split
from qmd_ft.backends.mlx.generate import generate_batch, make_sampler, stop_ids
from qmd_ft.backends.mlx.grpo_loss import group_advantages, grpo_loss
from qmd_ft.backends.mlx.lora import add_lora, lora_keys
from qmd_ft.backends.mlx.models import load_stack, use_device
from qmd_ft.backends.mlx.optim import ClippedAdamW, make_optimizer
from qmd_ft.backends.mlx.results import finish, last_logged, save_trained
from qmd_ft.config import Config, GrpoConfig, check_grpo_batch
from qmd_ft.errors import UserError
from qmd_ft.resume import check_resume_steps, record_planned_steps
from qmd_ft.reward import query_from_prompt, reward

COMPLETIONS = "completions.jsonl"
REWARD_NAME = "qmd_reward"
"""The reward function's name in TRL's `rewards/<name>/mean` metric (the cuda backend's)."""


@dataclass(frozen=True)
class Rollouts:
    """G completions per prompt, prompt-major: rows i*G … i*G+G-1 answer prompt i."""

    queries: list[str]
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    texts: list[str]
    stopped: list[bool]


@dataclass(frozen=True)
class Batch:
    """Rollouts packed for the model: each row prompt + completion, right-padded with 0.

    Completion token j of row i sits at column prompt_lens[i] + j; padding only follows the
    sequence, so under a causal mask it changes nothing before it.
    """

    tokens: mx.array
    prompt_lens: mx.array
    completion_lens: mx.array
    width: int

    @property
    def mask(self) -> mx.array:
        """(B, width): 1 on real completion tokens."""
        return (mx.arange(self.width)[None, :] < self.completion_lens[:, None]).astype(mx.float32)

    def rows(self, start: int, stop: int) -> Batch:
        """Rows start … stop-1 (a micro-batch); the completion width stays the same."""
        return Batch(
            self.tokens[start:stop],
            self.prompt_lens[start:stop],
            self.completion_lens[start:stop],
            self.width,
        )


@dataclass(frozen=True)
class LossSettings:
    """The GRPO knobs the loss reads, from `GrpoConfig`."""

    beta: float
    epsilon: float
    loss_type: str
    temperature: float
    max_completion_length: int

    @classmethod
    def of(cls, g: GrpoConfig) -> LossSettings:
        """The settings of a validated config section."""
        return cls(g.beta, g.epsilon, g.loss_type, g.temperature, g.max_completion_length)


# ------------------------------------------------------------------------------ sample


def round_prompts(rows: list[dict[str, Any]], per_round: int, seed: int, round_: int) -> list[dict]:
    """The prompts of one generation round: TRL's shuffled epochs, incomplete tail dropped."""
    per_epoch = len(rows) // per_round
    epoch, i = divmod(round_, per_epoch)
    order = epoch_order(len(rows), seed, epoch)[i * per_round : (i + 1) * per_round]
    return [rows[j] for j in order]


def sample(
    policy: nn.Module, tokenizer: Any, rows: list[dict[str, Any]], g: GrpoConfig
) -> Rollouts:
    """G sampled completions for every row's prompt, all decoded in one KV-cached batch."""
    prompts = [tokenizer.encode(row["prompt"]) for row in rows for _ in range(g.num_generations)]
    policy.eval()
    samples = generate_batch(
        policy,
        prompts,
        g.max_completion_length,
        make_sampler(g.temperature, g.top_p),
        stop_ids(tokenizer),
        len(prompts),
    )
    return Rollouts(
        queries=[
            query_from_prompt(row["prompt"]) for row in rows for _ in range(g.num_generations)
        ],
        prompt_ids=prompts,
        completion_ids=[s.tokens for s in samples],
        texts=[s.text(tokenizer) for s in samples],
        stopped=[s.stopped for s in samples],
    )


# ------------------------------------------------------------------------------ score


def score(rollouts: Rollouts) -> np.ndarray:
    """qmd_ft's reward of every completion for its query."""
    return np.array([reward(q, t) for q, t in zip(rollouts.queries, rollouts.texts, strict=True)])


def rollout_metrics(rollouts: Rollouts, rewards: np.ndarray, g: GrpoConfig) -> dict[str, float]:
    """TRL's per-generation-batch metrics: reward statistics and completion lengths.

    `frac_reward_zero_std` is over the std the advantages were scaled by (the batch's for
    scale_rewards "batch", else each group's), as TRL computes it.
    """
    lengths = np.array([len(c) for c in rollouts.completion_ids], dtype=np.float32)
    reward_std = float(rewards.std(ddof=1)) if rewards.size > 1 else 0.0
    if g.scale_rewards == "batch":
        scaled_by = np.array([reward_std])
    else:
        scaled_by = rewards.reshape(-1, g.num_generations).std(axis=1, ddof=1)
    return {
        "reward": float(rewards.mean()),
        "reward_std": reward_std,
        f"rewards/{REWARD_NAME}/mean": float(rewards.mean()),
        f"rewards/{REWARD_NAME}/std": reward_std,
        "frac_reward_zero_std": float(np.isclose(scaled_by, 0.0).mean()),
        "completions/mean_length": float(lengths.mean()),
        "completions/min_length": float(lengths.min()),
        "completions/max_length": float(lengths.max()),
        "completions/clipped_ratio": float(1 - np.mean(rollouts.stopped)),
    }


# ------------------------------------------------------------------------------ logprobs


def pack(prompt_ids: Sequence[list[int]], completion_ids: Sequence[list[int]]) -> Batch:
    """Concatenate each prompt with its completion and right-pad to one array."""
    rows = [p + c for p, c in zip(prompt_ids, completion_ids, strict=True)]
    tokens = np.zeros((len(rows), max(len(r) for r in rows)), np.int32)
    for i, r in enumerate(rows):
        tokens[i, : len(r)] = r
    width = max(len(c) for c in completion_ids)
    return Batch(
        mx.array(tokens),
        mx.array([len(p) for p in prompt_ids]),
        mx.array([len(c) for c in completion_ids]),
        width,
    )


def completion_logprobs(model: nn.Module, batch: Batch, temperature: float) -> mx.array:
    """(B, width) log-probabilities of the completion tokens under logits / temperature.

    Token j of row i (column p_i + j) is predicted from column p_i + j - 1; positions past a
    completion's end read padding and are masked by the caller.
    """
    logits = model(batch.tokens[:, :-1]).astype(mx.float32) / temperature
    logps = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    next_token = mx.take_along_axis(logps, batch.tokens[:, 1:, None], axis=-1).squeeze(-1)
    column = batch.prompt_lens[:, None] - 1 + mx.arange(batch.width)[None, :]
    column = mx.minimum(column, next_token.shape[1] - 1)
    return mx.take_along_axis(next_token, column, axis=1)


def frozen_logprobs(model: nn.Module, batch: Batch, temperature: float, chunk: int) -> mx.array:
    """Log-probs without gradients, `chunk` rows at a time to bound memory."""
    parts = []
    for start in range(0, batch.tokens.shape[0], chunk):
        part = completion_logprobs(model, batch.rows(start, start + chunk), temperature)
        mx.eval(part)
        parts.append(part)
    return mx.stop_gradient(mx.concatenate(parts))


# ------------------------------------------------------------------------------ loss → step


def train_step(
    policy: nn.Module,
    optimizer: ClippedAdamW,
    batch: Batch,
    advantages: mx.array,
    ref_logprobs: mx.array | None,
    old_logprobs: mx.array | None,
    settings: LossSettings,
    micro_batches: int,
) -> dict[str, float]:
    """One optimizer step over the generation batch, in `micro_batches` accumulated parts.

    Each part's loss is scaled as TRL scales it (see grpo_loss.py), so the summed gradients
    are the gradient of the whole batch's loss; then clip and update. Returns the step's
    loss (sum of the parts), grad_norm, learning_rate and the loss metrics (part means).
    """
    policy.train()
    rows = batch.tokens.shape[0]
    size = rows // micro_batches
    num_items = batch.mask.sum()

    def loss_fn(model: nn.Module, part: Batch, sl: slice) -> tuple[mx.array, dict]:
        logprobs = completion_logprobs(model, part, settings.temperature)
        return grpo_loss(
            logprobs,
            None if old_logprobs is None else old_logprobs[sl],
            None if ref_logprobs is None else ref_logprobs[sl],
            advantages[sl],
            part.mask,
            settings.beta,
            settings.epsilon,
            settings.loss_type,
            num_items=num_items,
            accumulation_steps=micro_batches,
            max_completion_length=settings.max_completion_length,
        )

    loss_and_grad = nn.value_and_grad(policy, loss_fn)
    total_loss, grads = mx.array(0.0), None
    metrics: dict[str, list[mx.array]] = defaultdict(list)
    for start in range(0, rows, size):
        sl = slice(start, start + size)
        (loss, part_metrics), part_grads = loss_and_grad(policy, batch.rows(start, sl.stop), sl)
        grads = part_grads if grads is None else tree_map(mx.add, grads, part_grads)
        total_loss = total_loss + loss
        for key, value in part_metrics.items():
            metrics[key].append(value)
        mx.eval(total_loss, grads)
    grad_norm = optimizer.clip_and_update(policy, grads)
    mx.eval(policy.parameters(), optimizer.state)
    return {
        "loss": total_loss.item(),
        "grad_norm": grad_norm.item(),
        "learning_rate": optimizer.learning_rate.item(),
        **{key: float(np.mean([v.item() for v in values])) for key, values in metrics.items()},
    }


# ------------------------------------------------------------------------------ the run


@dataclass(frozen=True)
class Plan:
    """Generation rounds and optimizer steps of one GRPO run."""

    prompts_per_round: int
    total_steps: int
    num_iterations: int


def make_plan(cfg: Config, num_prompts: int, max_steps: int | None) -> Plan:
    """TRL's layout: batch_size x accumulation completions per step, G per prompt."""
    t, g = cfg.training, cfg.grpo
    per_round = check_grpo_batch(cfg) // g.num_generations
    if num_prompts < per_round:
        raise UserError(
            f"GRPO needs at least {per_round} prompts per step; the data has {num_prompts}"
        )
    rounds_per_epoch = num_prompts // per_round
    total = (
        max_steps
        or t.max_steps
        or max(1, math.ceil(t.epochs * rounds_per_epoch * g.num_iterations))
    )
    return Plan(per_round, total, g.num_iterations)


def prompt_rows(cfg: Config, tokenizer: Any, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Training prompts, leaving out those over grpo.max_prompt_length tokens (as cuda does:
    TRL 1.16 does not truncate prompts, and a cut-off query would be scored wrongly)."""
    limit = cfg.grpo.max_prompt_length
    kept = [row for row in rows if len(tokenizer.encode(row["prompt"])) <= limit]
    if not kept:
        raise UserError(f"every prompt is longer than grpo.max_prompt_length ({limit} tokens)")
    if len(kept) < len(rows):
        print(f"GRPO: left out {len(rows) - len(kept)} prompt(s) over {limit} tokens")
    return kept


def round_seed(seed: int, round_: int) -> int:
    """The random seed of one generation round (sampling is reproducible per round)."""
    return int(np.random.SeedSequence([seed, round_]).generate_state(1)[0])


def log_completions(
    out: Path, step: int, rollouts: Rollouts, rewards: np.ndarray, adv: np.ndarray
) -> None:
    """Append every completion of a round, with its reward and advantage, to completions.jsonl."""
    with (out / COMPLETIONS).open("a", encoding="utf-8") as f:
        for query, text, r, a in zip(rollouts.queries, rollouts.texts, rewards, adv, strict=True):
            row = {
                "step": step,
                "query": query,
                "completion": text,
                "reward": float(r),
                "advantage": float(a),
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def load_models(cfg: Config) -> tuple[nn.Module, nn.Module, Any, Path, list[str]]:
    """(policy, reference, tokenizer, source dir, stack): both models are base + adapters +
    SFT fused; the policy then gets a fresh LoRA (or trains all weights in fp32)."""
    stack = [*cfg.model.adapters, *([cfg.model.sft] if cfg.model.sft else [])]
    policy, tokenizer, src = load_stack(cfg.model.base, stack)
    reference, _, _ = load_stack(cfg.model.base, stack)
    reference.freeze()
    reference.eval()
    if cfg.lora is None:
        policy.set_dtype(mx.float32)
        policy.unfreeze()
    else:
        lora = cfg.lora
        keys = lora_keys(policy, lora.target_modules)
        mx.random.seed(cfg.training.seed)
        add_lora(policy, keys, lora.rank, lora.alpha / lora.rank, lora.dropout)
    return policy, reference, tokenizer, src, stack


@dataclass
class Run:
    """One GRPO run's state, and what happens after each optimizer step."""

    cfg: Config
    out: Path
    policy: nn.Module
    src: Path
    optimizer: ClippedAdamW
    plan: Plan
    window: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def note(self, metrics: dict[str, float]) -> None:
        """Collect metrics until the next log line (averaged there, as TRL does)."""
        for key, value in metrics.items():
            self.window[key].append(value)

    def after_step(self, step: int) -> None:
        """Log at logging_steps and checkpoint at save_steps (and both at the last step)."""
        t, last = self.cfg.training, step == self.plan.total_steps
        if step % t.logging_steps == 0 or last:
            record = {key: float(np.mean(values)) for key, values in self.window.items()}
            checkpoints.append_log(self.out, {"step": step, **record})
            print(f"GRPO step {step}/{self.plan.total_steps}: {json.dumps(record)}")
            self.window.clear()
        if step % t.save_steps == 0 or last:
            checkpoints.save_checkpoint(
                self.out,
                step,
                self.policy,
                self.optimizer,
                self.artifact,
            )

    def artifact(self, checkpoint: Path) -> None:
        """A checkpoint's usable weights, and the total it belongs to (for `--resume`)."""
        save_trained(self.policy, self.cfg, self.src, checkpoint)
        record_planned_steps(checkpoint, self.plan.total_steps)


def grpo(req: TrainRequest) -> Path:
    """Run GRPO for `req`; returns the output directory (PEFT adapter or full model)."""
    cfg, g, out = req.config, req.config.grpo, req.output_dir
    use_device(req.device)
    policy, reference, tokenizer, src, stack = load_models(cfg)
    if cfg.training.gradient_checkpointing:
        grad_checkpoint(policy.layers[0])
    rows = prompt_rows(cfg, tokenizer, read_split(req.data_dir, "train", cfg.dataset.max_samples))
    plan = make_plan(cfg, len(rows), req.max_steps)
    run = Run(cfg, out, policy, src, make_optimizer(cfg.training, plan.total_steps), plan)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoints.checkpoint_to_resume(out, req.resume)
    check_resume_steps(ckpt, plan.total_steps)
    step = checkpoints.load_checkpoint(ckpt, policy, run.optimizer) if ckpt else 0
    for name in (checkpoints.LOG, COMPLETIONS):
        checkpoints.trim_jsonl(out / name, step)

    settings, chunk = LossSettings.of(g), cfg.training.batch_size
    while step < plan.total_steps:
        round_ = step // plan.num_iterations
        mx.random.seed(round_seed(cfg.training.seed, round_))
        prompts = round_prompts(rows, plan.prompts_per_round, cfg.training.seed, round_)
        rollouts = sample(policy, tokenizer, prompts, g)
        rewards = score(rollouts)
        advantages = group_advantages(rewards, g.num_generations, g.scale_rewards)
        log_completions(out, step + 1, rollouts, rewards, advantages)
        run.note(rollout_metrics(rollouts, rewards, g))

        batch = pack(rollouts.prompt_ids, rollouts.completion_ids)
        ref_lp = frozen_logprobs(reference, batch, g.temperature, chunk) if g.beta else None
        old_lp = None
        if plan.num_iterations > 1:
            policy.eval()
            old_lp = frozen_logprobs(policy, batch, g.temperature, chunk)
        while step < plan.total_steps and step // plan.num_iterations == round_:
            run.note(
                train_step(
                    policy,
                    run.optimizer,
                    batch,
                    mx.array(advantages),
                    ref_lp,
                    old_lp,
                    settings,
                    cfg.training.gradient_accumulation_steps,
                )
            )
            step += 1
            run.after_step(step)

    save_trained(policy, cfg, src, out)
    keys = ("loss", "reward", "reward_std", "kl", "completions/mean_length")
    return finish(
        req,
        "grpo-model" if cfg.lora is None else "grpo-adapter",
        global_step=plan.total_steps,
        parents=[cfg.model.base, *stack],
        metrics={key: last_logged(out, key) for key in keys},
    )
