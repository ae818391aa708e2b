"""Helpers for tests/test_parity.py: trainers as the cuda backend builds them, TRL's GRPO step on
given log-probs, the mlx loop's step on the same, greedy-divergence analysis and llama.cpp decoding.

torch, trl and mlx are imported inside the functions that need them, so importing this module
costs nothing and a missing package skips only the tests that use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qmd_ft.gguf.verify import forced_logits, greedy_ids
from qmd_ft.queries import read_queries

ROOT = Path(__file__).resolve().parents[1]


def eval_queries(count: int = 20) -> list[str]:
    """`count` queries of evals/queries.txt, evenly spaced from its first to its last, so every
    category of the file (from technical docs to non-English and /only: queries) is in."""
    queries = [q.text for q in read_queries(ROOT / "evals" / "queries.txt")]
    last = len(queries) - 1
    return [queries[round(i * last / (count - 1))] for i in range(count)]


# ------------------------------------------------------------------------- trainers, as built


class _Captured(Exception):
    """Raised by a patched `train()`: carries the trainer a backend built, before any step."""

    def __init__(self, trainer: Any):
        super().__init__("trainer captured")
        self.trainer = trainer


@contextmanager
def _train_captured(class_name: str) -> Iterator[None]:
    import pytest
    import trl

    def train(self: Any, *args: Any, **kwargs: Any) -> None:
        raise _Captured(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(getattr(trl, class_name), "train", train)
        yield


def built_trainer(run: Callable[[Any], Any], request: Any, class_name: str) -> Any:
    """The TRL trainer (`SFTTrainer`/`GRPOTrainer`) that a cuda backend stage builds for
    `request`: `run(request)` goes as far as `trainer.train()`, which hands the trainer back."""
    with _train_captured(class_name):
        try:
            run(request)
        except _Captured as captured:
            return captured.trainer
    raise AssertionError(f"{run.__name__} returned without calling {class_name}.train()")


# ------------------------------------------------------------------------- GRPO, both sides


@dataclass(frozen=True)
class GrpoCase:
    """One generation batch: G completions per prompt, with everything the loss reads."""

    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]
    rewards: np.ndarray
    logprobs: np.ndarray
    ref_logprobs: np.ndarray


def grpo_case(prompt_ids: Sequence[list[int]], group: int, width: int, seed: int) -> GrpoCase:
    """Random completions (lengths 1..width, one of full width), rewards with one all-equal
    group (zero std: TRL's `+ 1e-4` path), current and reference log-probs that differ."""
    rng = np.random.default_rng(seed)
    rows = len(prompt_ids) * group
    lengths = rng.integers(1, width + 1, size=rows)
    lengths[0] = width
    completions = [rng.integers(10, 1000, size=int(n)).tolist() for n in lengths]
    rewards = rng.random(rows).astype(np.float32)
    rewards[group : 2 * group] = 0.5
    logprobs = (rng.normal(size=(rows, width)) * 0.5 - 2).astype(np.float32)
    ref = (logprobs + rng.normal(size=(rows, width)) * 0.2).astype(np.float32)
    return GrpoCase(
        prompt_ids=[list(p) for p in prompt_ids for _ in range(group)],
        completion_ids=completions,
        rewards=rewards,
        logprobs=logprobs,
        ref_logprobs=ref,
    )


@dataclass(frozen=True)
class StepResult:
    """What one optimizer step's loss computation produced."""

    loss: float
    grad_norm: float
    grad: np.ndarray
    advantages: np.ndarray
    mask: np.ndarray
    num_items: float
    kl: float


def trl_grpo_step(
    trainer: Any, case: GrpoCase, bias_corrected_kl: bool | None = None
) -> StepResult:
    """TRL's own `_generate_and_score_completions` and `_compute_loss` on `case`.

    `bias_corrected_kl` overrides the trainer's `use_bias_correction_kl` (None keeps it).

    Only what produces the numbers the case fixes is replaced: generation (returns the case's
    token ids), the reward functions (return its rewards) and the model's per-token log-probs
    (the reference's while scoring, then the policy's, one micro-batch slice at a time). The
    generation batch is split into `steps_per_generation` micro-batches in order (TRL shuffles
    first: the sum of the micro-batch losses does not depend on that, except for `bnpo`, whose
    per-micro-batch token mean is defined on whichever rows a micro-batch holds).
    """
    import torch
    from trl.trainer.utils import split_tensor_dict

    rows = len(case.completion_ids)
    if bias_corrected_kl is not None:
        trainer.args.use_bias_correction_kl = bias_corrected_kl
    trainer.model.train()
    trainer._generate = lambda prompts: (
        case.prompt_ids,
        case.completion_ids,
        None,
        [""] * rows,
        None,
        {},
        None,
        None,
    )
    trainer._calculate_rewards = lambda *args, **kwargs: torch.tensor(case.rewards)[:, None]
    ref = torch.tensor(case.ref_logprobs)
    trainer._get_per_token_logps_and_entropies = lambda *args, **kwargs: (ref, None, None)
    batch = trainer._generate_and_score_completions([{"prompt": ""} for _ in range(rows)])

    logprobs = torch.tensor(case.logprobs, requires_grad=True)
    parts = split_tensor_dict(batch, trainer.args.steps_per_generation)
    size = rows // len(parts)
    trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps
    trainer._metrics["train"].clear()
    total = torch.zeros(())
    for j, part in enumerate(parts):
        sl = slice(j * size, (j + 1) * size)
        trainer._get_per_token_logps_and_entropies = lambda *a, sl=sl, **k: (
            logprobs[sl],
            torch.zeros_like(logprobs[sl]),
            None,
        )
        total = total + trainer._compute_loss(trainer.model, part)
    total.backward()
    assert logprobs.grad is not None
    return StepResult(
        loss=total.item(),
        grad_norm=float(logprobs.grad.norm()),
        grad=logprobs.grad.numpy(),
        advantages=batch["advantages"].numpy(),
        mask=batch["completion_mask"].numpy().astype(np.float32),
        num_items=float(batch["num_items_in_batch"]),
        kl=float(np.mean(trainer._metrics["train"]["kl"])),
    )


def mlx_grpo_step(config: Any, case: GrpoCase) -> StepResult:
    """The mlx loop's own advantages (`group_advantages`) and step (`train_step`) on `case`.

    The policy is a module whose only parameter is the case's log-prob table, and the loop's
    `completion_logprobs` reads a micro-batch's rows from it (each row's first token is its
    index), so `train_step` runs unchanged: micro-batch split, TRL's per-part scaling, gradient
    accumulation, the gradient norm it logs; the summed gradient is read where it is clipped.
    """
    import mlx.core as mx
    import mlx.nn as nn
    import pytest

    from qmd_ft.backends.mlx import grpo as loop
    from qmd_ft.backends.mlx.optim import make_optimizer

    class LogprobTable(nn.Module):
        def __init__(self, values: np.ndarray):
            super().__init__()
            self.table = mx.array(values)

    g = config.grpo
    rows = len(case.completion_ids)
    advantages = loop.group_advantages(case.rewards, g.num_generations, g.scale_rewards)
    batch = loop.pack([[i] for i in range(rows)], case.completion_ids)
    policy = LogprobTable(case.logprobs)
    optimizer = make_optimizer(config.training, total_steps=1)
    grads: dict[str, Any] = {}

    def clip_and_update(model: Any, gradients: dict) -> Any:
        grads.update(gradients)
        return type(optimizer).clip_and_update(optimizer, model, gradients)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(optimizer, "clip_and_update", clip_and_update)
        mp.setattr(
            loop,
            "completion_logprobs",
            lambda model, part, temperature: model.table[part.tokens[:, 0]],
        )
        metrics = loop.train_step(
            policy,
            optimizer,
            batch,
            mx.array(advantages),
            mx.array(case.ref_logprobs),
            None,
            loop.LossSettings.of(g),
            config.training.gradient_accumulation_steps,
        )
    return StepResult(
        loss=metrics["loss"],
        grad_norm=metrics["grad_norm"],
        grad=np.array(grads["table"]),
        advantages=advantages,
        mask=np.array(batch.mask),
        num_items=float(batch.mask.sum().item()),
        kl=metrics["kl"],
    )


# ------------------------------------------------------------------------- greedy decoding


def first_divergence(a: Sequence[int], b: Sequence[int]) -> int | None:
    """The first index where two token sequences differ (a length difference counts), or None."""
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def top_two(logits: np.ndarray) -> tuple[int, int, float]:
    """(best id, runner-up id, best logit minus runner-up logit) of one step's logits."""
    second, first = np.argsort(logits)[-2:]
    return int(first), int(second), float(logits[first] - logits[second])


# llama.cpp decoding and teacher-forced logits: the GGUF verifier's own functions.
llama_greedy = greedy_ids
llama_logits = forced_logits
