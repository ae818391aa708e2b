"""Optimizer and learning-rate schedule with the semantics of the cuda backend (HF Trainer).

- AdamW with torch's defaults (betas 0.9/0.999, eps 1e-8, bias correction on; mlx's AdamW has
  it off by default and a weight decay of 0.01, both different from torch).
- Weight decay applies to every trained tensor; HF exempts biases and norm weights, which are
  trained only in full fine-tuning (and the default decay is 0).
- The global gradient norm is clipped to `training.max_grad_norm` before every update.
- Schedules are transformers' `get_scheduler` formulas: `warmup = ceil(warmup_ratio * steps)`
  linear steps from 0, then cosine (half a cycle) or linear decay to 0, or constant.
  The optimizer evaluates the schedule at its step count before incrementing it, so update k
  (from 0) uses lr(k), as torch's LambdaLR does.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim

from qmd_ft.config import TrainingConfig

Schedule = Callable[[mx.array], mx.array]


def warmup_steps(training: TrainingConfig, total_steps: int) -> int:
    """transformers' `get_warmup_steps`: ceil(ratio * total)."""
    return math.ceil(training.warmup_ratio * total_steps)


def lr_schedule(training: TrainingConfig, total_steps: int) -> Schedule:
    """The learning rate as a function of the optimizer step (an mx scalar)."""
    peak = training.learning_rate
    warmup = warmup_steps(training, total_steps)
    kind = training.lr_scheduler

    def schedule(step: mx.array) -> mx.array:
        step = step.astype(mx.float32)
        warm = step / max(1, warmup)
        progress = (step - warmup) / max(1, total_steps - warmup)
        if kind == "constant":
            return mx.array(peak, mx.float32)
        if kind == "constant_with_warmup":
            after = mx.array(1.0, mx.float32)
        elif kind == "linear":
            after = mx.maximum(0.0, 1.0 - progress)
        else:  # cosine
            after = mx.maximum(0.0, 0.5 * (1.0 + mx.cos(math.pi * progress)))
        return peak * mx.where(step < warmup, warm, after)

    return schedule


class ClippedAdamW(optim.AdamW):
    """AdamW that clips the global gradient norm inside `update`.

    mlx-lm's tuner calls `optimizer.update(model, grads)` itself, so clipping has to live here
    to happen at all during SFT.
    """

    def __init__(self, schedule: Schedule, weight_decay: float, max_grad_norm: float):
        super().__init__(
            learning_rate=schedule,
            betas=[0.9, 0.999],
            eps=1e-8,
            weight_decay=weight_decay,
            bias_correction=True,
        )
        self.max_grad_norm = max_grad_norm

    def update(self, model: nn.Module, gradients: dict) -> None:
        """Clip, then the AdamW update."""
        self.clip_and_update(model, gradients)

    def clip_and_update(self, model: nn.Module, gradients: dict) -> mx.array:
        """Clip, then the AdamW update; returns the gradient norm before clipping (to log)."""
        clipped, norm = optim.clip_grad_norm(gradients, self.max_grad_norm)
        super().update(model, clipped)
        return norm


def make_optimizer(training: TrainingConfig, total_steps: int) -> ClippedAdamW:
    """The optimizer for `total_steps` optimizer updates under `training`'s settings."""
    return ClippedAdamW(
        lr_schedule(training, total_steps), training.weight_decay, training.max_grad_norm
    )
