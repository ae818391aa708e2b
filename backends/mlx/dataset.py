"""Prepared data for the mlx trainers: records, token ids with the prompt boundary, batches.

The prepared split (`qmd-ft data prepare`) already holds the rendered `prompt` and
`completion` strings of `qmd_ft.prompt`, so the text trained on is exactly the text served;
mlx-lm's own datasets would re-render it through the chat template, which for Qwen3 inserts an
empty think block before the answer.

Order is a pure function of (seed, position): epoch e is a permutation drawn from
`default_rng([seed, e])`, so a resumed run sees the same batches as an uninterrupted one.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np

from qmd_ft.data.prepared import SFT_KEYS
from qmd_ft.data.prepared import data_hash as data_hash  # results.py reads it from here
from qmd_ft.data.prepared import read_split as _read_split

Example = tuple[list[int], int]
"""Token ids of prompt + completion, and the number of leading prompt tokens."""


def read_split(
    data_dir: Path, split: str, max_samples: int | None = None, require: Sequence[str] = SFT_KEYS
) -> list[dict[str, Any]]:
    """The records of `data_dir/{split}.jsonl`, at most `max_samples` of them.

    The cuda backend's reader (`qmd_ft.data.prepared.read_split`), so a damaged split gives
    the same one-line `FILE:LINE: reason` here; a missing val split is empty.
    """
    return _read_split(data_dir, f"{split}.jsonl", max_samples, require)


def tokenize(tokenizer: Any, records: list[dict[str, Any]], max_length: int) -> list[Example]:
    """Prompt ids then completion ids, cut to `max_length`, with the prompt boundary.

    The prompt is tokenized as generation tokenizes it and the completion as a continuation,
    exactly as the cuda backend does, so both train on the same ids. Examples whose prompt
    fills `max_length` have no completion token left to learn from and are dropped.
    """
    examples = []
    for rec in records:
        prompt = tokenizer.encode(rec["prompt"])
        ids = (prompt + tokenizer.encode(rec["completion"], add_special_tokens=False))[:max_length]
        if len(prompt) < len(ids):
            examples.append((ids, len(prompt)))
    return examples


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of `n` items in epoch `epoch`."""
    return np.random.default_rng([seed, epoch]).permutation(n).tolist()


def pad_batch(examples: list[Example]) -> tuple[mx.array, mx.array]:
    """(ids [B, L] right-padded with 0, [B, 2] of (prompt length, length)): mlx-lm's contract."""
    width = max(len(ids) for ids, _ in examples)
    batch = np.zeros((len(examples), width), np.int32)
    for row, (ids, _) in enumerate(examples):
        batch[row, : len(ids)] = ids
    lengths = [(offset, len(ids)) for ids, offset in examples]
    return mx.array(batch), mx.array(lengths)


def train_batches(
    examples: list[Example], batch_size: int, seed: int, start: int = 0
) -> Iterator[tuple[mx.array, mx.array]]:
    """Endless shuffled batches, epoch after epoch, from micro-batch number `start` on.

    Like HF's DataLoader without drop_last, an epoch ends with a smaller batch when
    `batch_size` does not divide the data.
    """
    per_epoch = math.ceil(len(examples) / batch_size)
    index = start
    while True:
        epoch, i = divmod(index, per_epoch)
        order = epoch_order(len(examples), seed, epoch)[i * batch_size : (i + 1) * batch_size]
        yield pad_batch([examples[j] for j in order])
        index += 1


def eval_batches(examples: list[Example], batch_size: int) -> Iterator[tuple[mx.array, mx.array]]:
    """Every example once, in order."""
    for i in range(0, len(examples), batch_size):
        yield pad_batch(examples[i : i + batch_size])
