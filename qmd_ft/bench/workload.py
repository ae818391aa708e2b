"""What a bench run measures on: the random-weight model's configs and word-level tokenizer (one
definition for both backends) and synthetic prepared data with QMD-like lengths (prompts of
3-10 query words, completions ~50 tokens for 75% of rows and ~140 for the rest).

transformers and tokenizers are imported only inside the functions that build the bench model
(neither needs torch).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qmd_ft.bench.plan import SHAPES, BenchPlan
from qmd_ft.data.prepare import TRAIN_FILE, VAL_FILE
from qmd_ft.errors import UserError
from qmd_ft.prompt import (
    ENDOFTEXT,
    IM_END,
    NO_THINK,
    SPECIAL_TOKENS,
    render_completion,
    render_prompt,
    user_message,
)
from qmd_ft.tiny_model import QWEN3_CHAT_TEMPLATE

if TYPE_CHECKING:
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen3Config

PROMPT_WORDS = ("user", "assistant", NO_THINK, *user_message("").split())
"""Words of the fixed prompt text; the bench tokenizer gives each its own token."""


def vocabulary(vocab_size: int, specials: tuple[str, ...]) -> list[str]:
    """The bench tokenizer's tokens in id order: prompt words, `w<i>` filler, specials last.

    Word-level, so a synthetic text of n words is exactly n tokens, and exactly `vocab_size`
    tokens, so the embedding and LM head have the real model's width.
    """
    words = list(dict.fromkeys(PROMPT_WORDS))
    fill = vocab_size - len(words) - len(specials)
    if fill < 16:
        raise UserError(f"vocab_size {vocab_size} is too small for the bench tokenizer")
    return words + [f"w{i}" for i in range(fill)] + list(specials)


def synthesize(n: int, vocab_size: int, seed: int) -> list[dict[str, Any]]:
    """Prepared-data rows (`prompt`, `completion`, `messages`) of random filler words.

    Lengths follow the upstream measurement: 3-10 query words; completions N(50, 20) words for
    75% of rows and N(140, 25) for the rest, at least 8. `prompt`/`completion` are what
    `qmd-ft train` reads; `messages` is the upstream recipe's conversational form.
    """
    rng = random.Random(seed)
    fill = vocab_size - len(set(PROMPT_WORDS)) - 8

    def words(count: int) -> str:
        return " ".join(f"w{rng.randrange(fill)}" for _ in range(count))

    rows = []
    for _ in range(n):
        query = words(rng.randint(3, 10))
        short = rng.random() < 0.75
        length = int(rng.gauss(50, 20)) if short else int(rng.gauss(140, 25))
        completion = words(max(8, length))
        rows.append(
            {
                "prompt": render_prompt(query),
                "completion": render_completion(completion),
                "messages": [
                    {"role": "user", "content": user_message(query)},
                    {"role": "assistant", "content": completion},
                ],
            }
        )
    return rows


def bench_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A word-level tokenizer of exactly `vocab_size` tokens with Qwen3's specials and template.

    Whitespace splits words, so token counts are word counts; `<|im_end|>` is eos and
    `<|endoftext|>` pad, as in Qwen3, and the chat template is Qwen3's, so the upstream recipe's
    conversational rows render as they would on the real model. transformers' fast tokenizer
    class needs no torch, so the mlx backend loads the very same files.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokens = vocabulary(vocab_size, SPECIAL_TOKENS)
    core = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token=ENDOFTEXT))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    core.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        chat_template=QWEN3_CHAT_TEMPLATE,
    )


def model_configs(
    shape: str,
) -> tuple[Qwen3Config, GenerationConfig, PreTrainedTokenizerFast]:
    """The bench model's config, generation config and tokenizer: everything but the weights.

    One definition for both backends, so a cuda and an mlx run describe the same model; each
    backend draws the random weights with its own framework (the values differ, the shapes,
    init distribution, tokenizer and stop ids do not).
    """
    from transformers import GenerationConfig, Qwen3Config

    dims = dict(SHAPES[shape])
    tokenizer = bench_tokenizer(dims["vocab_size"])
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen3Config(
        **dims,
        bos_token_id=ids[ENDOFTEXT],
        eos_token_id=ids[IM_END],
        pad_token_id=ids[ENDOFTEXT],
    )
    generation = GenerationConfig(
        bos_token_id=ids[ENDOFTEXT],
        eos_token_id=[ids[IM_END], ids[ENDOFTEXT]],
        pad_token_id=ids[ENDOFTEXT],
    )
    return config, generation, tokenizer


def data_rows(shape: str) -> int:
    """Synthetic rows per run: enough that no measured step meets an epoch's short batch
    (the cuda fast path's token-sized micro-batches hold a few hundred rows on a GPU)."""
    return 8000 if shape == "qwen3-1.7b" else 512


def write_data(out: Path, plan: BenchPlan) -> Path:
    """Synthetic rows as a prepared-data directory, like `qmd-ft data prepare` writes one.

    `train.jsonl` holds the rows; `val.jsonl` is empty (as prepare leaves it with no val rows),
    so no trainer spends measured time on evaluation.
    """
    rows = synthesize(data_rows(plan.shape), SHAPES[plan.shape]["vocab_size"], plan.seed)
    out.mkdir(parents=True, exist_ok=True)
    with (out / TRAIN_FILE).open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    (out / VAL_FILE).write_text("", encoding="utf-8")
    return out


def prompts(data_dir: Path, n: int) -> list[str]:
    """The first `n` synthetic prompts, rendered as eval renders them."""
    with (data_dir / TRAIN_FILE).open(encoding="utf-8") as f:
        return [json.loads(line)["prompt"] for _, line in zip(range(n), f, strict=False)]
