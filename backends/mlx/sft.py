"""Supervised fine-tuning on Apple Silicon (or mlx[cpu]) through mlx-lm's tuner.

mlx-lm's `tuner.trainer.train` runs the compiled step and gradient accumulation; this module
supplies what makes the run equal the cuda backend's TRL SFT in intent:

- the prepared prompt/completion text, tokenized as the cuda backend does, with the loss on
  completion tokens only (`completion_loss`; mlx-lm's `default_loss` also counts one pad token
  after each sequence);
- LoRA rank/alpha/dropout/targets from the config (mlx-lm's `scale` = alpha / rank), or full
  fine-tuning when the config has no lora section;
- torch-equivalent AdamW, gradient clipping and HF's LR schedules (`optim`);
- val loss, logging, checkpoints and resume at the config's steps, driven from the tuner's
  report callback (reports come every gcd(logging, save, eval) steps);
- the result in PEFT format (or an HF model for full fine-tuning), plus tokenizer and manifest.

One difference remains by design of the tuner: with gradient accumulation each micro-batch's
loss is its own token mean and the step averages them, where HF Trainer divides the window's
token sum by its token count; the two agree when micro-batches hold equally many tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.tuner.callbacks import TrainingCallback

from qmd_ft.backend import TrainRequest
from qmd_ft.backends.mlx import checkpoints
from qmd_ft.backends.mlx.dataset import Example, eval_batches, read_split, tokenize, train_batches
from qmd_ft.backends.mlx.lora import add_lora, lora_keys
from qmd_ft.backends.mlx.models import load_stack, use_device
from qmd_ft.backends.mlx.optim import make_optimizer
from qmd_ft.backends.mlx.results import finish, last_logged, save_trained
from qmd_ft.config import Config
from qmd_ft.errors import UserError
from qmd_ft.resume import check_resume_steps, record_planned_steps


def completion_loss(
    model: nn.Module, batch: mx.array, lengths: mx.array
) -> tuple[mx.array, mx.array]:
    """Mean cross-entropy over completion tokens; returns (loss, number of tokens).

    `lengths[:, 0]` is the prompt length p and `lengths[:, 1]` the sequence length n: the
    targets are tokens p … n-1, each predicted from the position before it.
    """
    inputs, targets = batch[:, :-1], batch[:, 1:]
    logits = model(inputs)
    position = mx.arange(1, targets.shape[1] + 1)[None, :]
    mask = (position >= lengths[:, 0:1]) & (position < lengths[:, 1:2])
    ce = nn.losses.cross_entropy(logits.astype(mx.float32), targets) * mask
    ntoks = mask.sum()
    return ce.sum() / ntoks, ntoks


@dataclass(frozen=True)
class Plan:
    """How many optimizer steps, and every how many of them to log, eval and save."""

    total_steps: int
    accumulation: int
    logging_steps: int
    save_steps: int
    eval_steps: int | None

    @property
    def report_every(self) -> int:
        """Optimizer steps between tuner reports: a divisor of every interval we act on."""
        intervals = [
            self.logging_steps,
            self.save_steps,
            *([self.eval_steps] if self.eval_steps else []),
        ]
        return math.gcd(*intervals)


def make_plan(cfg: Config, num_examples: int, max_steps: int | None) -> Plan:
    """HF Trainer's step count: ceil(epochs * updates per epoch) unless max_steps is set."""
    t = cfg.training
    batches = math.ceil(num_examples / t.batch_size)
    per_epoch = math.ceil(batches / t.gradient_accumulation_steps)
    total = max_steps or t.max_steps or max(1, math.ceil(t.epochs * per_epoch))
    return Plan(total, t.gradient_accumulation_steps, t.logging_steps, t.save_steps, t.eval_steps)


def tuner_batches(seed: int, start: int) -> Callable[..., Iterator[tuple[mx.array, mx.array]]]:
    """An `iterate_batches` for mlx-lm's tuner: seeded, resumable training order; plain eval.

    The tuner passes `max_seq_length` and `comm_group` too; sequences are cut at tokenization
    and runs are single-process, so both are accepted and unused.
    """

    def iterate(
        dataset: list[Example],
        batch_size: int,
        max_seq_length: int,
        loop: bool = False,
        comm_group: Any = None,
    ) -> Iterator[tuple[mx.array, mx.array]]:
        if loop:
            return train_batches(dataset, batch_size, seed, start)
        return eval_batches(dataset, batch_size)

    return iterate


class Reporter(TrainingCallback):
    """Turns the tuner's loss reports into log records, val loss and checkpoints."""

    def __init__(
        self,
        plan: Plan,
        start_step: int,
        out: Path,
        val_loss: Callable[[], float | None],
        checkpoint: Callable[[int], Any],
    ):
        self.plan, self.start, self.out = plan, start_step, out
        self.val_loss, self.checkpoint = val_loss, checkpoint
        self.loss_sum, self.loss_count, self.last_iteration = 0.0, 0, 0

    def on_train_loss_report(self, train_info: dict[str, Any]) -> None:
        """Called by the tuner after the update of iteration `train_info['iteration']`."""
        iteration = train_info["iteration"]
        micro = iteration - self.last_iteration
        self.last_iteration = iteration
        self.loss_sum += train_info["train_loss"] * micro
        self.loss_count += micro
        step = self.start + iteration // self.plan.accumulation
        last = step == self.plan.total_steps
        if step % self.plan.logging_steps == 0 or last:
            checkpoints.append_log(
                self.out,
                {
                    "step": step,
                    "loss": self.loss_sum / self.loss_count,
                    "learning_rate": train_info["learning_rate"],
                },
            )
            self.loss_sum, self.loss_count = 0.0, 0
        if self.plan.eval_steps and step % self.plan.eval_steps == 0 and not last:
            self.log_val(step)
        if step % self.plan.save_steps == 0 or last:
            self.checkpoint(step)

    def log_val(self, step: int) -> float | None:
        """Val loss at `step`, logged as TRL's `eval_loss`."""
        loss = self.val_loss()
        if loss is not None:
            checkpoints.append_log(self.out, {"step": step, "eval_loss": loss})
        return loss


def sft(req: TrainRequest) -> Path:
    """Run SFT for `req`; returns the output directory (PEFT adapter or full model)."""
    from mlx_lm.tuner.trainer import TrainingArgs, evaluate, train

    cfg, out = req.config, req.output_dir
    use_device(req.device)
    mx.random.seed(cfg.training.seed)
    model, tokenizer, src = load_stack(cfg.model.base, cfg.model.adapters)
    max_len = cfg.training.max_length
    train_set = tokenize(
        tokenizer, read_split(req.data_dir, "train", cfg.dataset.max_samples), max_len
    )
    val_set = tokenize(tokenizer, read_split(req.data_dir, "val"), max_len)
    if not train_set:
        raise UserError(f"{req.data_dir}: no training example fits training.max_length={max_len}")

    if cfg.lora is None:
        # fp32 master weights, as the cuda backend keeps: bf16 weights lose small updates.
        model.set_dtype(mx.float32)
        model.unfreeze()
    else:
        lora = cfg.lora
        keys = lora_keys(model, lora.target_modules)
        add_lora(model, keys, lora.rank, lora.alpha / lora.rank, lora.dropout)

    plan = make_plan(cfg, len(train_set), req.max_steps)
    optimizer = make_optimizer(cfg.training, plan.total_steps)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoints.checkpoint_to_resume(out, req.resume)
    check_resume_steps(ckpt, plan.total_steps)
    first = checkpoints.load_checkpoint(ckpt, model, optimizer) if ckpt else 0
    checkpoints.trim_jsonl(out / checkpoints.LOG, first)
    batch_size = cfg.training.batch_size

    def val_loss() -> float | None:
        if not val_set:
            return None
        loss = evaluate(
            model,
            val_set,
            batch_size,
            -1,
            loss=completion_loss,
            iterate_batches=tuner_batches(0, 0),
        )
        model.train()
        return loss

    def artifact(checkpoint: Path) -> None:
        """A checkpoint's usable weights, and the total it belongs to (for `--resume`)."""
        save_trained(model, cfg, src, checkpoint)
        record_planned_steps(checkpoint, plan.total_steps)

    reporter = Reporter(
        plan,
        first,
        out,
        val_loss,
        lambda step: checkpoints.save_checkpoint(out, step, model, optimizer, artifact),
    )
    if first < plan.total_steps:
        args = TrainingArgs(
            batch_size=batch_size,
            iters=(plan.total_steps - first) * plan.accumulation,
            steps_per_report=plan.report_every * plan.accumulation,
            steps_per_save=plan.total_steps * plan.accumulation + 1,
            max_seq_length=max_len,
            adapter_file=str(out / "mlx-tuner-weights.safetensors"),
            grad_checkpoint=cfg.training.gradient_checkpointing,
            grad_accumulation_steps=plan.accumulation,
        )
        train(
            model,
            optimizer,
            train_set,
            None,
            args,
            loss=completion_loss,
            iterate_batches=tuner_batches(cfg.training.seed, first * plan.accumulation),
            training_callback=reporter,
        )
        # The tuner always saves its own copy of the trainable weights; ours is in PEFT format.
        (out / "mlx-tuner-weights.safetensors").unlink(missing_ok=True)
    final_val = reporter.log_val(plan.total_steps)
    save_trained(model, cfg, src, out)
    return finish(
        req,
        "sft-model" if cfg.lora is None else "sft-adapter",
        global_step=plan.total_steps,
        parents=[cfg.model.base, *cfg.model.adapters],
        metrics={"train_loss": last_logged(out, "loss"), "eval_loss": final_val},
    )
