"""Supervised fine-tuning with TRL's SFTTrainer: loss on the completion tokens only.

Rows are tokenized here rather than by TRL: TRL appends the eos token to any completion that
does not end with it, and ours end with `<|im_end|>\\n` (Qwen3's turn ending, as rendered by
`qmd_ft.prompt`), so TRL would train a second `<|im_end|>`. Tokenizing the prompt exactly as
generation does and the completion after it keeps training text and inference text identical;
TRL still truncates to `max_length` and can pack these rows (they carry `input_ids`/`labels`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from backends.cuda.data import data_hash, read_split
from backends.cuda.loading import load_model, load_tokenizer, peft_lora, resolve_device, use_bf16
from backends.cuda.training import (
    announce_start,
    checkpoint_to_resume,
    finish,
    last_logged,
    trainer_kwargs,
)
from qmd_ft.backend import TrainRequest
from qmd_ft.data.prepare import TRAIN_FILE, VAL_FILE

if TYPE_CHECKING:
    from datasets import Dataset
    from transformers import PreTrainedTokenizerBase

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


def tokenized_dataset(tokenizer: PreTrainedTokenizerBase, rows: list[dict[str, Any]]) -> Dataset:
    """Prepared records (with `prompt`/`completion`) as a tokenized `datasets.Dataset`."""
    from datasets import Dataset

    return Dataset.from_list(
        [tokenize_example(tokenizer, row["prompt"], row["completion"]) for row in rows]
    )


def run_sft(req: TrainRequest) -> Path:
    """Train LoRA (or the full model when `config.lora` is None); save it in `req.output_dir`."""
    from trl import SFTConfig, SFTTrainer

    cfg = req.config
    device = resolve_device(req.device)
    train_rows = read_split(req.data_dir, TRAIN_FILE, cfg.dataset.max_samples)
    val_rows = read_split(req.data_dir, VAL_FILE)
    checkpoint = checkpoint_to_resume(req.output_dir, req.resume)

    tokenizer = load_tokenizer(cfg.model.base)
    # LoRA keeps the frozen base in bf16 (half the memory); full fine-tuning keeps fp32 master
    # weights and lets bf16 autocast do the compute, since bf16 weights lose small updates.
    bf16_base = cfg.lora is not None and use_bf16(device)
    model = load_model(cfg.model.base, torch.bfloat16 if bf16_base else torch.float32)
    args = SFTConfig(
        **trainer_kwargs(req, device, evaluate=bool(val_rows)),
        max_length=cfg.training.max_length,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=tokenized_dataset(tokenizer, train_rows),
        eval_dataset=tokenized_dataset(tokenizer, val_rows) if val_rows else None,
        processing_class=tokenizer,
        peft_config=peft_lora(cfg.lora) if cfg.lora is not None else None,
    )
    announce_start(req, checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    metrics: dict[str, Any] = {"train_loss": last_logged(trainer, "loss")}
    if val_rows:
        metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
    return finish(
        trainer,
        tokenizer,
        req,
        "sft-adapter" if cfg.lora is not None else "sft-model",
        data_sha256=data_hash(req.data_dir),
        parents=[cfg.model.base],
        metrics=metrics,
    )
