"""Batched generation with mlx-lm's KV-cached `BatchGenerator`: GRPO rollouts and eval.

`BatchGenerator` prefills prompts of different lengths together and decodes every sequence in
one batch, dropping each as it stops. We use it directly rather than `batch_generate` because
GRPO needs what that helper drops: whether a sequence stopped or was cut at the length limit,
and the stop token itself (TRL trains on the `<|im_end|>` that ends a completion).

Eval text is decoded with special tokens kept, so a leaked `<|im_start|>` stays visible to the
scorer, and `<think>` blocks are removed, as the cuda backend does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlx.core as mx
import mlx.nn as nn

from qmd_ft.backend import Generator
from qmd_ft.config import EvalConfig
from qmd_ft.prompt import IM_END, strip_think

Sampler = Callable[[mx.array], mx.array]


@dataclass(frozen=True)
class Sample:
    """One generated sequence: its ids (the stop token included when it stopped)."""

    tokens: list[int]
    stopped: bool

    def text(self, tokenizer: Any) -> str:
        """The completion as the rubric scores it, in eval and in GRPO alike: the ids before the
        stop token, special tokens kept (a leaked `<|im_start|>` is one of its LEAK_MARKERS)."""
        body = self.tokens[:-1] if self.stopped else self.tokens
        return tokenizer.decode(body, skip_special_tokens=False)


def stop_ids(tokenizer: Any) -> set[int]:
    """Every id that ends a turn: the model's eos ids (config and generation config) and
    `<|im_end|>`."""
    return set(tokenizer.eos_token_ids) | {tokenizer.convert_tokens_to_ids(IM_END)}


def make_sampler(temperature: float, top_p: float) -> Sampler:
    """Greedy at temperature 0, else temperature (and nucleus when top_p < 1) sampling."""
    from mlx_lm.sample_utils import make_sampler as mlx_sampler

    return mlx_sampler(temp=temperature, top_p=top_p if top_p < 1.0 else 0.0)


def generate_batch(
    model: nn.Module,
    prompts: list[list[int]],
    max_tokens: int,
    sampler: Sampler,
    stops: set[int],
    batch_size: int,
) -> list[Sample]:
    """Continue every prompt (token ids) until a stop id or `max_tokens`; results in order."""
    from mlx_lm.generate import BatchGenerator

    gen = BatchGenerator(
        model,
        max_tokens=max_tokens,
        stop_tokens=[[s] for s in sorted(stops)],
        sampler=sampler,
        completion_batch_size=batch_size,
        prefill_batch_size=batch_size,
    )
    try:
        uids = gen.insert(prompts)
        tokens: dict[int, list[int]] = {uid: [] for uid in uids}
        stopped: dict[int, bool] = {}
        while responses := gen.next_generated():
            for r in responses:
                tokens[r.uid].append(r.token)
                if r.finish_reason is not None:
                    stopped[r.uid] = r.finish_reason == "stop"
    finally:
        gen.close()
    return [Sample(tokens[uid], stopped[uid]) for uid in uids]


def make_generator(
    model_ref: str, adapters: list[str], gen: EvalConfig, device: str | None = None
) -> Generator:
    """Load `model_ref` (+ fused `adapters`) once; return a callable over rendered prompts.

    Random draws are reseeded with `gen.seed` at every call, so the same prompts give the
    same texts.
    """
    from qmd_ft.backends.mlx.models import load_stack, use_device

    use_device(device)
    model, tokenizer, _ = load_stack(model_ref, adapters)
    model.eval()
    stops = stop_ids(tokenizer)
    sampler = make_sampler(gen.temperature, gen.top_p)

    def generate(prompts: list[str]) -> list[str]:
        """Completions for `prompts`, in order."""
        mx.random.seed(gen.seed)
        ids = [tokenizer.encode(p) for p in prompts]
        samples = generate_batch(model, ids, gen.max_new_tokens, sampler, stops, gen.batch_size)
        return [strip_think(s.text(tokenizer)) for s in samples]

    return generate
