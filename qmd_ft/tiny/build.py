"""`build_tiny_model`: the tokenizer, weights and config files written into one directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qmd_ft.prompt import ENDOFTEXT, IM_END, SPECIAL_TOKENS
from qmd_ft.tiny.corpus import DEFAULT_DATA_DIR, training_texts
from qmd_ft.tiny.tokenizer import special_tokens_map, tokenizer_config, train_tokenizer
from qmd_ft.tiny.weights import MAX_SEED, TINY_SHAPE, model_config, save_weights


def build_tiny_model(
    out_dir: Path,
    seed: int = 0,
    data_dir: Path | None = None,
    vocab_size: int = 1024,
    **shape: Any,
) -> Path:
    """Write a tiny random Qwen3 checkpoint (weights, tokenizer, configs) to `out_dir`.

    `data_dir` is the folder of `*.jsonl` examples (default: this project's `data/`); the
    tokenizer also learns from `evals/queries.txt` beside it. `seed` only moves the weights.
    `shape` overrides keys of `TINY_SHAPE`. The tokenizer has exactly `vocab_size` tokens
    unless the corpus is too small to learn that many merges; the embedding always has
    `vocab_size` rows. Returns `out_dir`.
    """
    unknown = sorted(set(shape) - set(TINY_SHAPE))
    if unknown:
        raise TypeError(f"unknown shape keys {unknown}; known: {sorted(TINY_SHAPE)}")
    if not 0 <= seed <= MAX_SEED:  # numpy's limit, checked before anything is written
        raise ValueError(f"seed must be between 0 and {MAX_SEED} (got {seed})")
    min_vocab = 256 + len(SPECIAL_TOKENS)
    if vocab_size <= min_vocab:
        raise ValueError(f"vocab_size must exceed {min_vocab} (256 bytes + special tokens)")
    dims = {**TINY_SHAPE, **shape}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data_dir = DEFAULT_DATA_DIR if data_dir is None else Path(data_dir)

    tokenizer = train_tokenizer(training_texts(data_dir), vocab_size)
    ids = {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS}
    tokenizer.save(str(out_dir / "tokenizer.json"))
    write_json(out_dir / "tokenizer_config.json", tokenizer_config(ids, dims))
    write_json(out_dir / "special_tokens_map.json", special_tokens_map())
    write_json(out_dir / "config.json", model_config(dims, vocab_size, ids))
    write_json(
        out_dir / "generation_config.json",
        {
            "bos_token_id": ids[ENDOFTEXT],
            "eos_token_id": [ids[IM_END], ids[ENDOFTEXT]],
            "pad_token_id": ids[ENDOFTEXT],
        },
    )
    save_weights(out_dir / "model.safetensors", dims, vocab_size, seed)
    return out_dir


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Sorted keys, 2-space indent, trailing newline: stable bytes, as transformers writes."""
    path.write_text(
        json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )
