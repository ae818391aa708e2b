"""Fast batched generation: a static KV cache, one batch per call, optionally CUDA graphs.

HF `generate` is launch-bound at QMD's sizes: for a 1.7B model at batch 16 a decode step is a
few milliseconds of GPU work, and its Python loop (logits processors, stopping criteria that
read the GPU every step, a cache that grows by concatenation) costs as much again. This loop
keeps every decode step the same shape (the KV cache is allocated once at its final length, the
attention mask covers it whole, positions are fed explicitly), so the step can be compiled and
replayed as a CUDA graph, and it reads the GPU only every `CHECK_EVERY` steps to see whether
all rows have stopped.

It is the same arithmetic as HF generation: left-padded prompts, positions counted from each
row's first real token, padded slots masked out; greedy output is token-for-token HF's
(tests/test_cuda_speed.py). Sampling draws from the same distribution (temperature, top-k,
top-p) with the Gumbel-max trick, which needs no data-dependent control flow, so it compiles into
the step too; its random stream differs from HF's.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

CHECK_EVERY = 8
"""Decode steps between two reads of the "every row stopped" flag (each read syncs the GPU)."""

CACHE_BUCKET = 64
"""Cache lengths are rounded up to this, so prompts of nearby lengths reuse one compiled step."""

COMPILE_OPTIONS: dict[str, Any] = {"mode": "reduce-overhead", "fullgraph": False, "dynamic": False}
"""`torch.compile` options of the decode step: CUDA graphs, one static shape per step."""


@dataclass(frozen=True)
class Sampling:
    """How the next token is chosen: greedy at temperature 0, else sampled."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0

    @property
    def greedy(self) -> bool:
        """True when the most likely token is always taken."""
        return self.temperature <= 0


def select_next(logits: torch.Tensor, sampling: Sampling) -> torch.Tensor:
    """The next token of each row from its fp32 logits `(batch, vocab)`.

    Top-k and top-p filter as transformers' warpers do (top-p keeps the smallest set whose
    probability reaches `top_p`, always at least one token); Gumbel-max then samples from the
    softmax of what is left.
    """
    if sampling.greedy:
        return logits.argmax(dim=-1)
    logits = logits / sampling.temperature
    if sampling.top_k > 0:
        kth = torch.topk(logits, min(sampling.top_k, logits.size(-1)), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if sampling.top_p < 1.0:
        ordered, order = torch.sort(logits, dim=-1, descending=True)
        probs = ordered.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs > sampling.top_p
        ordered = ordered.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, ordered)
    uniform = torch.rand_like(logits).clamp_(min=torch.finfo(logits.dtype).tiny)
    return (logits - torch.log(-torch.log(uniform))).argmax(dim=-1)


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts as one left-padded `(batch, width)` id tensor and its 0/1 mask."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        if prompt:
            ids[row, width - len(prompt) :] = torch.tensor(list(prompt), dtype=torch.long)
            mask[row, width - len(prompt) :] = 1
    return ids, mask


def cut_after_stop(ids: Sequence[int], stops: set[int]) -> list[int]:
    """Token ids up to and including the first stop id (TRL's completion format)."""
    out: list[int] = []
    for token in ids:
        out.append(token)
        if token in stops:
            break
    return out


def own_code(fn: Callable[..., Any], tag: str) -> Callable[..., Any]:
    """`fn` with a code object of its own, so torch.compile keeps a separate cache for it.

    Dynamo stores compiled graphs, and counts recompiles against `recompile_limit` (8), per
    code object. Every decode step is the same source function, so without this every
    decoder in a process (eval's, then GRPO's, each with several batch shapes and samplings)
    would recompile one shared entry until the limit, after which torch silently runs the
    step eagerly: no error, just slow generation. One code object per (decoder, sampling,
    shape) compiles exactly once and never recompiles.
    """
    code = fn.__code__.replace(co_name=f"{fn.__name__}_{tag}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


class StaticDecoder:
    """Generates with one model; keeps its caches and compiled steps between calls.

    A cache is allocated per (batch, length bucket) and reset in place between calls, so a
    compiled step sees the same tensors each time and its CUDA graph is replayed, not rebuilt.
    Each (sampling, batch, length) gets its own compiled step (`own_code`), so no shape or
    other decoder in the process can push a step past torch's recompile limit. The model's
    weights may change between calls (GRPO's policy) as long as they are updated in place,
    which keeps the graph's pointers valid.
    """

    def __init__(self, model: PreTrainedModel, *, compile: bool = False):
        self.model = model
        self.compile = compile
        self._caches: dict[tuple[int, int], object] = {}
        self._steps: dict[tuple[Sampling, int, int], Callable[..., torch.Tensor]] = {}

    def _cache(self, batch: int, length: int) -> object:
        """The static cache for this shape, emptied for a new batch of prompts."""
        from transformers import StaticCache

        key = (batch, length)
        cache = self._caches.get(key)
        if cache is None:
            cache = StaticCache(config=self.model.config, max_cache_len=length)
            self._caches[key] = cache
        else:
            cache.reset()
        return cache

    def _step(self, sampling: Sampling, batch: int, length: int) -> Callable[..., torch.Tensor]:
        """One decode step (forward of one token per row, then the choice of the next)."""
        key = (sampling, batch, length)
        step = self._steps.get(key)
        if step is not None:
            return step
        model = self.model

        def decode(
            token: torch.Tensor, position: torch.Tensor, mask: torch.Tensor, cache: object
        ) -> torch.Tensor:
            logits = model(
                input_ids=token,
                attention_mask=mask,
                position_ids=position,
                cache=cache,
                use_cache=True,
            ).logits[:, -1]
            return select_next(logits.float(), sampling)

        if self.compile:
            tag = f"{id(self):x}_{len(self._steps)}_b{batch}_l{length}"
            decode = torch.compile(own_code(decode, tag), **COMPILE_OPTIONS)
        self._steps[key] = decode
        return decode

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int,
        sampling: Sampling,
        stop_ids: Sequence[int],
        pad_id: int,
    ) -> list[list[int]]:
        """Completions of `prompts` (token ids), each ending at its first stop id if any.

        All prompts go in one batch; rows that stopped keep decoding pad tokens (the shapes
        must not change) until every row has stopped or `max_new_tokens` are made.
        """
        model = self.model
        device = model.device
        ids, prompt_mask = left_pad(prompts, pad_id)
        batch, width = ids.shape
        length = -(-(width + max_new_tokens) // CACHE_BUCKET) * CACHE_BUCKET
        ids, prompt_mask = ids.to(device), prompt_mask.to(device)
        # The whole cache is attendable except the left padding; causality hides the future.
        mask = torch.ones((batch, length), dtype=torch.long, device=device)
        mask[:, :width] = prompt_mask
        positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
        next_position = prompt_mask.sum(-1, keepdim=True)
        stops = torch.tensor(list(stop_ids) or [-1], device=device)
        cache = self._cache(batch, length)

        logits = model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1]
        out = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
        out[:, 0] = select_next(logits.float(), sampling)
        finished = torch.isin(out[:, 0], stops)
        step = self._step(sampling, batch, length)
        made = 1
        while made < max_new_tokens:
            if made % CHECK_EVERY == 0 and bool(finished.all()):
                break
            if self.compile:
                torch.compiler.cudagraph_mark_step_begin()
            token = out[:, made - 1 : made]
            chosen = step(token, next_position + (made - 1), mask, cache)
            out[:, made] = torch.where(finished, pad_id, chosen)
            finished |= torch.isin(out[:, made], stops)
            made += 1
        stop_set = set(stop_ids)
        return [cut_after_stop(row, stop_set) for row in out[:, :made].tolist()]
