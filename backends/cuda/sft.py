"""Supervised fine-tuning with TRL's SFTTrainer: loss on the completion tokens only.

Rows are tokenized here rather than by TRL: TRL appends the eos token to any completion that
does not end with it, and ours end with `<|im_end|>\\n` (Qwen3's turn ending, as rendered by
`qmd_ft.prompt`), so TRL would train a second `<|im_end|>`. Tokenizing the prompt exactly as
generation does and the completion after it keeps training text and inference text identical.
Rows are cut to `max_length` here too, so the plain path and the padding-free one (where TRL
does not truncate) train on the same tokens; the speed switches are `qmd_ft.backends.cuda.speed`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from qmd_ft.backend import TrainRequest
from qmd_ft.backends.cuda.data import data_hash, read_split
from qmd_ft.backends.cuda.loading import (
    load_merged,
    load_tokenizer,
    peft_lora,
    resolve_device,
    use_bf16,
)
from qmd_ft.backends.cuda.speed import (
    SpeedOptions,
    auto_tokens_per_batch,
    check_speed,
    packed_attention,
    placed_free_bytes,
    split_step,
)
from qmd_ft.backends.cuda.training import (
    announce_start,
    checkpoint_to_resume,
    finish,
    guard_resume,
    last_logged,
    trainer_kwargs,
)
from qmd_ft.data.prepare import TRAIN_FILE, VAL_FILE

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from qmd_ft.config import Config

IGNORE_INDEX = -100
"""Label of tokens that do not count towards the loss (PyTorch's cross-entropy default)."""


def tokenize_example(
    tokenizer: PreTrainedTokenizerBase, prompt: str, completion: str
) -> dict[str, list[int]]:
    """`input_ids` of prompt + completion and `labels` with every prompt token masked.

    The prompt is tokenized as the generator and GRPO tokenize it (special tokens added by the
    tokenizer's own rule, none for Qwen), the completion as a continuation (none added).
    """
    prompt_ids = tokenizer(prompt)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    return {
        "input_ids": prompt_ids + completion_ids,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + completion_ids,
    }


def tokenized_dataset(
    tokenizer: PreTrainedTokenizerBase, rows: list[dict[str, Any]], max_length: int | None = None
) -> Dataset:
    """Prepared records (with `prompt`/`completion`) as a tokenized `datasets.Dataset`.

    Rows are cut to `max_length` tokens here (keeping the start, as TRL would): padding-free
    batches make TRL skip its own truncation, and cutting in one place keeps both paths equal.
    """
    from datasets import Dataset

    examples = [tokenize_example(tokenizer, row["prompt"], row["completion"]) for row in rows]
    if max_length is not None:
        examples = [{k: v[:max_length] for k, v in ex.items()} for ex in examples]
    return Dataset.from_list(examples)


@dataclass(frozen=True)
class SftRun:
    """A ready SFT trainer and what `run_sft` needs beside it to finish the run."""

    trainer: SFTTrainer
    tokenizer: PreTrainedTokenizerBase
    evaluate: bool


def sft_args(
    req: TrainRequest, device: str, speed: SpeedOptions, evaluate: bool, lengths: list[int]
) -> SFTConfig:
    """SFTConfig for the plain path, with the speed switches applied on top.

    Padding-free batches carry no pad tokens, so TRL's length cap (which it cannot enforce on
    them) is replaced by the truncation done while tokenizing. A token budget per micro-batch
    sets `batch_size` and `gradient_accumulation_steps` together (`speed.split_step`): the
    optimizer steps, their examples and their order stay the recipe's. Length grouping is not
    used: it would regroup the examples of different steps.
    """
    from trl import SFTConfig

    kwargs = trainer_kwargs(req, device, evaluate=evaluate)
    cfg = req.config
    tokens = speed.tokens_per_batch  # `auto` is resolved by build_sft once the model is placed
    if isinstance(tokens, int):
        t = cfg.training
        micro, accum = split_step(tokens, lengths, t.batch_size * t.gradient_accumulation_steps)
        kwargs["per_device_train_batch_size"] = kwargs["per_device_eval_batch_size"] = micro
        kwargs["gradient_accumulation_steps"] = accum
    return SFTConfig(
        **kwargs,
        max_length=None if speed.padding_free else cfg.training.max_length,
        padding_free=speed.padding_free,
        use_liger_kernel=speed.use_liger_kernel,
        torch_compile=speed.torch_compile,
    )


def resolve_auto_tokens(
    speed: SpeedOptions, model: PreTrainedModel, cfg: Config, device: str
) -> SpeedOptions:
    """`speed` with `tokens_per_batch: auto` made a number (or None on a CPU).

    Sized after the model is on this process's GPU, from what is then free, less gradients
    and optimizer states (`speed.auto_tokens_per_batch`); a CPU keeps `training.batch_size`.
    """
    if speed.tokens_per_batch != "auto":
        return speed
    tokens = None
    if device == "cuda":
        tokens = auto_tokens_per_batch(model, cfg.lora, placed_free_bytes(model))
        print(f"tokens_per_batch auto: {tokens} tokens per micro-batch on this GPU")
    return replace(speed, tokens_per_batch=tokens)


def build_sft(
    req: TrainRequest,
    speed: SpeedOptions | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> SftRun:
    """The SFT trainer of `req`: data tokenized, model loaded, speed switches applied.

    `speed` None reads the switches from the config (`SpeedOptions.from_config`); `qmd-ft
    bench` and the tests pass them explicitly. `callbacks` are added to the trainer's own.
    """
    from trl import SFTTrainer

    cfg = req.config
    device = resolve_device(req.device)
    speed = SpeedOptions.from_config(cfg) if speed is None else speed
    check_speed(speed, device)
    train_rows = read_split(req.data_dir, TRAIN_FILE, cfg.dataset.max_samples)
    val_rows = read_split(req.data_dir, VAL_FILE)

    tokenizer = load_tokenizer(cfg.model.base)
    max_length = cfg.training.max_length
    train = tokenized_dataset(tokenizer, train_rows, max_length)
    lengths = [len(ids) for ids in train["input_ids"]]
    # LoRA keeps the frozen base in bf16 (half the memory); full fine-tuning keeps fp32 master
    # weights and lets bf16 autocast do the compute, since bf16 weights lose small updates.
    bf16_base = cfg.lora is not None and use_bf16(device)
    dtype = torch.bfloat16 if bf16_base else torch.float32
    speed, attn = packed_attention(speed, device)
    # A token budget that cannot keep the recipe's step is refused before the model loads;
    # `auto` can only be sized once the model is on the GPU.
    sized_later = speed.tokens_per_batch == "auto"
    args = None if sized_later else sft_args(req, device, speed, bool(val_rows), lengths)
    # `model.adapters` are stacked on the base first (merged), as the mlx backend does.
    model = load_merged(cfg.model.base, cfg.model.adapters, dtype, attn)
    if args is None:
        speed = resolve_auto_tokens(speed, model, cfg, device)
        args = sft_args(req, device, speed, bool(val_rows), lengths)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train,
        eval_dataset=tokenized_dataset(tokenizer, val_rows, max_length) if val_rows else None,
        processing_class=tokenizer,
        peft_config=peft_lora(cfg.lora) if cfg.lora is not None else None,
        callbacks=callbacks,
    )
    return SftRun(trainer, tokenizer, bool(val_rows))


def run_sft(
    req: TrainRequest,
    speed: SpeedOptions | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> Path:
    """Train LoRA (or the full model when `config.lora` is None); save it in `req.output_dir`."""
    checkpoint = checkpoint_to_resume(req.output_dir, req.resume)
    run = build_sft(req, speed, callbacks)
    trainer = run.trainer
    announce_start(req, checkpoint)
    guard_resume(trainer, checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    metrics: dict[str, Any] = {"train_loss": last_logged(trainer, "loss")}
    if run.evaluate:
        metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
    cfg = req.config
    return finish(
        trainer,
        run.tokenizer,
        req,
        "sft-adapter" if cfg.lora is not None else "sft-model",
        data_sha256=data_hash(req.data_dir),
        parents=[cfg.model.base, *cfg.model.adapters],
        metrics=metrics,
    )
