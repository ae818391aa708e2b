"""The tiny model's tokenizer: Qwen's byte-level BPE pipeline, learnt on a small corpus.

Also the tokenizer files Qwen3 ships beside tokenizer.json (tokenizer_config.json with the
chat template, special_tokens_map.json), key for key.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from qmd_ft.prompt import ENDOFTEXT, IM_END, IM_START, SPECIAL_TOKENS, THINK_CLOSE, THINK_OPEN
from qmd_ft.tiny.qwen3 import QWEN2_SPLIT_REGEX, QWEN3_CHAT_TEMPLATE

if TYPE_CHECKING:
    from tokenizers import Tokenizer

ADDED_NOT_SPECIAL = (THINK_OPEN, THINK_CLOSE)
"""Added (never split) but not special, as in Qwen3: `skip_special_tokens` keeps them."""

_SPECIAL_SPLIT = re.compile("|".join(re.escape(token) for token in SPECIAL_TOKENS))


def train_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    """Learn a Qwen-style byte-level BPE of `vocab_size` tokens, special tokens last.

    Special tokens are cut out of the training text first: they are added whole afterwards,
    and letting BPE see them would spend merges on pieces like `<|im_` that never occur.
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.post_processor = processors.ByteLevel(
        add_prefix_space=False, trim_offsets=False, use_regex=False
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS),
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    pieces = [piece for text in texts for piece in _SPECIAL_SPLIT.split(text) if piece]
    tokenizer.train_from_iterator(pieces, trainer=trainer)
    tokenizer.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t in SPECIAL_TOKENS
            if t not in ADDED_NOT_SPECIAL
        ]
    )
    tokenizer.add_tokens(
        [AddedToken(t, special=False, normalized=False) for t in ADDED_NOT_SPECIAL]
    )
    return tokenizer


def _token_entry(token: str) -> dict[str, Any]:
    """How Qwen's tokenizer files describe an added token: matched verbatim, never stripped."""
    return {
        "content": token,
        "lstrip": False,
        "normalized": False,
        "rstrip": False,
        "single_word": False,
    }


def tokenizer_config(ids: dict[str, int], dims: dict[str, Any]) -> dict[str, Any]:
    """tokenizer_config.json with Qwen3's keys, the chat template included.

    `model_max_length` is the tiny model's real context, not Qwen's 131072, so truncation and
    its warnings happen where this model would actually fail.
    """
    return {
        "add_bos_token": False,
        "add_prefix_space": False,
        "added_tokens_decoder": {
            str(ids[token]): {**_token_entry(token), "special": token not in ADDED_NOT_SPECIAL}
            for token in SPECIAL_TOKENS
        },
        "additional_special_tokens": [IM_START, IM_END],
        "bos_token": None,
        "chat_template": QWEN3_CHAT_TEMPLATE,
        "clean_up_tokenization_spaces": False,
        "eos_token": IM_END,
        "errors": "replace",
        "model_max_length": dims["max_position_embeddings"],
        "pad_token": ENDOFTEXT,
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def special_tokens_map() -> dict[str, Any]:
    """special_tokens_map.json as Qwen3 ships it (for tools that read it instead)."""
    return {
        "additional_special_tokens": [IM_START, IM_END],
        "eos_token": _token_entry(IM_END),
        "pad_token": _token_entry(ENDOFTEXT),
    }
