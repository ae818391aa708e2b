"""Batched generation for eval: rendered prompts in, clean completions out.

Prompts are left-padded so every row's continuation starts at the same column; each row is cut
at its first stop token (`<|im_end|>` or another eos the model declares), decoded with special
tokens kept (so a leaked `<|im_start|>` stays visible to the scorer), and its `<think>` blocks
are removed (`qmd_ft.prompt.strip_think`). With `eval.fast_generation` the tokens come from
`qmd_ft.backends.cuda.fastgen` (static KV cache, optionally compiled with CUDA graphs) instead of HF
`generate`: same greedy output, faster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from qmd_ft.backend import Generator
from qmd_ft.backends.cuda.fastgen import Sampling, StaticDecoder
from qmd_ft.backends.cuda.loading import (
    generation_dtype,
    load_merged,
    load_tokenizer,
    resolve_device,
    stop_token_ids,
)
from qmd_ft.backends.cuda.speed import eval_generation
from qmd_ft.config import EvalConfig
from qmd_ft.prompt import strip_think

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def cut_at_stop(ids: Sequence[int], stops: set[int]) -> list[int]:
    """Token ids up to (not including) the first stop id; padding after it goes too."""
    out: list[int] = []
    for token in ids:
        if token in stops:
            break
        out.append(token)
    return out


def make_generator(
    model: str,
    adapters: list[str],
    gen: EvalConfig,
    device: str | None = None,
    fast: bool | None = None,
    compile: bool | None = None,
) -> Generator:
    """Load `model` (+ merged `adapters`) once; return a callable over rendered prompts.

    Greedy when `gen.temperature` is 0, else sampled with `temperature`/`top_p` from a
    generator seeded with `gen.seed` at every call, so the same prompts give the same texts.
    Every generation setting comes from `gen`: checkpoints like Qwen3-1.7B ship sampling
    defaults (top_k 20, temperature 0.6, top_p 0.95) that must not leak into an eval.
    `fast`/`compile` choose the fast path (None: `eval.fast_generation`/`compile_generation`).
    """
    from transformers import GenerationConfig

    dev = resolve_device(device)
    tokenizer = load_tokenizer(model, padding_side="left")
    lm = load_merged(model, adapters, generation_dtype(model, adapters, dev)).to(dev).eval()
    stops = stop_token_ids(tokenizer, lm)
    sample = gen.temperature > 0
    fast_cfg, compile_cfg = eval_generation(gen)
    if fast_cfg if fast is None else fast:
        compiled = compile_cfg if compile is None else compile
        return _fast_generator(lm, tokenizer, gen, stops, compiled)
    # Replaces the checkpoint's own generation config rather than being merged with it:
    # transformers fills a passed config's default-valued fields from the model's.
    lm.generation_config = GenerationConfig(
        max_new_tokens=gen.max_new_tokens,
        do_sample=sample,
        temperature=gen.temperature if sample else 1.0,
        top_p=gen.top_p if sample else 1.0,
        top_k=0 if sample else None,
        eos_token_id=stops,
        pad_token_id=tokenizer.pad_token_id,
    )

    @torch.inference_mode()
    def generate(prompts: list[str]) -> list[str]:
        """Completions for `prompts`, in order, `gen.batch_size` at a time."""
        if sample:
            torch.manual_seed(gen.seed)
        texts: list[str] = []
        for start in range(0, len(prompts), gen.batch_size):
            batch = tokenizer(
                prompts[start : start + gen.batch_size], return_tensors="pt", padding=True
            ).to(dev)
            out = lm.generate(**batch)
            width = batch["input_ids"].shape[1]
            for row in out[:, width:].tolist():
                ids = cut_at_stop(row, set(stops))
                texts.append(strip_think(tokenizer.decode(ids, skip_special_tokens=False)))
        return texts

    return generate


def _fast_generator(
    lm: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    gen: EvalConfig,
    stops: list[int],
    compile: bool,
) -> Generator:
    """The eval generator on `StaticDecoder`: same batching, cutting and cleaning as HF's."""
    decoder = StaticDecoder(lm, compile=compile)
    sampling = Sampling(gen.temperature, gen.top_p if gen.temperature > 0 else 1.0)
    stop_set = set(stops)

    def generate(prompts: list[str]) -> list[str]:
        """Completions for `prompts`, in order, `gen.batch_size` at a time."""
        if not sampling.greedy:
            torch.manual_seed(gen.seed)
        texts: list[str] = []
        for start in range(0, len(prompts), gen.batch_size):
            batch = [tokenizer(p)["input_ids"] for p in prompts[start : start + gen.batch_size]]
            rows = decoder.generate(
                batch, gen.max_new_tokens, sampling, stops, tokenizer.pad_token_id
            )
            for row in rows:
                ids = cut_at_stop(row, stop_set)
                texts.append(strip_think(tokenizer.decode(ids, skip_special_tokens=False)))
        return texts

    return generate
