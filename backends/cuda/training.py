"""What SFT and GRPO share: TrainingArguments from the config, checkpoints, the saved artifact.

Both stages are TRL trainers on transformers' Trainer, so one mapping from `config.training`
keeps the two in step, and one `finish` gives every artifact the same layout: weights (PEFT
adapter or full model), tokenizer, `trainer_state.json` and `manifest.json`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from qmd_ft.backend import TrainRequest
from qmd_ft.backends.cuda.loading import dtype_name, lora_update, use_bf16
from qmd_ft.backends.precision import KEEP_THRESHOLD
from qmd_ft.errors import UserError
from qmd_ft.manifest import write_manifest
from qmd_ft.resume import check_resume_steps, latest_checkpoint

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, Trainer


def trainer_kwargs(req: TrainRequest, device: str, *, evaluate: bool) -> dict[str, Any]:
    """TRL config keyword arguments shared by SFTConfig and GRPOConfig.

    transformers 5 dropped `warmup_ratio`; `warmup_steps` below 1 is read as a fraction of the
    total steps (rounded up), so the ratio is passed there and the trainer converts it once it
    knows the step count (which depends on data size, epochs and the number of processes).
    """
    t = req.config.training
    bf16 = use_bf16(device)
    return {
        "output_dir": str(req.output_dir),
        "num_train_epochs": t.epochs,
        "max_steps": req.max_steps or t.max_steps or -1,
        "per_device_train_batch_size": t.batch_size,
        "per_device_eval_batch_size": t.batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "learning_rate": t.learning_rate,
        "weight_decay": t.weight_decay,
        "max_grad_norm": t.max_grad_norm,
        "lr_scheduler_type": t.lr_scheduler,
        "warmup_steps": t.warmup_ratio,
        "logging_steps": t.logging_steps,
        "save_strategy": "steps",
        "save_steps": t.save_steps,
        "eval_strategy": "steps" if evaluate else "no",
        "eval_steps": t.eval_steps or t.save_steps,
        "seed": t.seed,
        "activation_checkpointing": t.gradient_checkpointing,
        "bf16": bf16,
        "use_cpu": device == "cpu",
        "report_to": req.config.tracking.report_to or "none",
        "run_name": req.config.tracking.run_name,
    }


def checkpoints(out: Path) -> list[Path]:
    """`checkpoint-N` dirs of a run, newest (highest N) first."""
    found = [p for p in out.glob("checkpoint-*") if p.is_dir() and p.name[11:].isdigit()]
    return sorted(found, key=lambda p: int(p.name[11:]), reverse=True)


def checkpoint_to_resume(out: Path, resume: bool) -> str | None:
    """The checkpoint `--resume` continues from (None: start at step 0); refuse to mix runs.

    Without `--resume`, an output dir that already holds checkpoints is an error: training
    over it would interleave two runs' checkpoints and a later resume would pick the wrong one.
    With `--resume`, the newest complete checkpoint wins: the Trainer writes
    `trainer_state.json` last, so a run killed mid-save leaves a newer dir without it, which
    transformers' own `get_last_checkpoint` would pick and then fail to load. No complete
    checkpoint (killed before the first save) means starting over.
    """
    found = checkpoints(out) if out.is_dir() else []
    if found and not resume:
        raise UserError(
            f"{out} already holds {found[0].name}: pass --resume to continue that run, "
            "or choose another --output"
        )
    complete = latest_checkpoint(out) if found else None  # skips cut trainer states
    return str(complete) if complete else None


def announce_start(req: TrainRequest, checkpoint: str | None) -> None:
    """Say where the run starts when that may surprise: resuming, or `--resume` with nothing.

    A resume towards another step total than the checkpoint's is refused first (see
    `qmd_ft.resume`): transformers would run its first step at the rate the checkpoint's
    optimizer stored, which is 0 at the end of a finished run.
    """
    check_resume_steps(checkpoint, req.max_steps or req.config.training.max_steps)
    if checkpoint is not None:
        print(f"resuming from {checkpoint}")
    elif req.resume:
        print(f"--resume: no checkpoint in {req.output_dir} yet; starting from step 0")


class ResumeGuard(TrainerCallback):
    """Refuses, before the first resumed step, a total that differs from the checkpoint's.

    `announce_start` can only compare an explicit `--max-steps`; a budget the trainer works out
    from epochs is known once `train()` set it up, which is when this callback looks.
    """

    def __init__(self, checkpoint: str):
        self.checkpoint = checkpoint

    def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        """Compare the trainer's planned total with the checkpoint's."""
        check_resume_steps(self.checkpoint, state.max_steps)


def guard_resume(trainer: Trainer, checkpoint: str | None) -> None:
    """Add a `ResumeGuard` when the run resumes from `checkpoint`."""
    if checkpoint is not None:
        trainer.add_callback(ResumeGuard(checkpoint))


def last_logged(trainer: Trainer, key: str) -> float | None:
    """The most recent value of a logged metric (e.g. the last training loss)."""
    for entry in reversed(trainer.state.log_history):
        value = entry.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            return float(value)
    return None


def with_final_loss(trainer: Trainer, metrics: dict[str, Any]) -> dict[str, Any]:
    """`metrics` with a missing loss taken from the trainer's own summary of the run.

    The stages report the last logged loss, and the Trainer logs one only every
    `logging_steps`: a run shorter than that logged none, yet its final log entry (the
    `TrainOutput` of `train()`) holds `train_loss`, the mean loss of the steps it trained,
    which is what a log line at the end would have shown.
    """
    final = last_logged(trainer, "train_loss")
    missing = [key for key in ("train_loss", "loss") if key in metrics and metrics[key] is None]
    return {**metrics, **dict.fromkeys(missing, final)}


def update_size(trainer: Trainer, req: TrainRequest) -> dict[str, float] | None:
    """A LoRA run's update against the base checkpoint's dtype, logged and summarized.

    Says when storing the merged model in the base's dtype would round the update away (GRPO
    at a small learning rate), which `qmd-ft merge` answers by storing fp32; None for full
    fine-tuning, whose weights are saved as trained.
    """
    from peft import PeftModel
    from transformers import AutoConfig

    model = trainer.accelerator.unwrap_model(trainer.model)
    if not isinstance(model, PeftModel) or not trainer.is_world_process_zero():
        return None
    stored = dtype_name(AutoConfig.from_pretrained(req.config.model.base).dtype)
    size = lora_update(model, str(req.output_dir), stored)
    print(size.line())
    if size.kept(stored) < KEEP_THRESHOLD:
        print(
            f"warning: storing this update in {stored} would keep {size.kept(stored):.0%} of "
            "it; qmd-ft merge stores such merges in float32"
        )
    return size.summary()


def finish(
    trainer: Trainer,
    tokenizer: PreTrainedTokenizerBase,
    req: TrainRequest,
    kind: str,
    *,
    data_sha256: str | None,
    parents: list[str],
    metrics: dict[str, Any],
) -> Path:
    """Save weights, tokenizer, trainer state and manifest into the output dir; return it.

    `save_model` writes a PEFT adapter for LoRA runs and the full model otherwise; it and
    `save_state` only write on the main process, and so does the manifest here.
    """
    out = req.output_dir
    metrics = with_final_loss(trainer, metrics)
    update = update_size(trainer, req)
    if update is not None:
        metrics = {**metrics, "update": update}
    trainer.save_model(str(out))
    trainer.save_state()
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(out))
        write_manifest(
            out,
            kind,
            config=req.config.model_dump(mode="json"),
            data_hash=data_sha256,
            parents=parents,
            extra={
                "metrics": {"global_step": trainer.state.global_step, **metrics},
                "data_dir": str(req.data_dir),
                "device": str(trainer.args.device),
                "processes": trainer.args.world_size,
            },
        )
    return out
