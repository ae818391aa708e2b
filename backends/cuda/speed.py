"""Speed switches of the cuda backend: what they are, where they come from, what they need.

Every switch defaults to the plain path, so a config without them trains exactly as before. They
are read from `config.training` (and `config.eval` for eval generation) with `getattr`, so they
work as soon as the config schema declares them and keep their defaults until then; callers that
must choose them regardless of the config (`qmd-ft bench`, tests) pass a `SpeedOptions` instead.

What each buys, and why it is safe:

- `padding_free`: TRL flattens each micro-batch into one row with `position_ids` restarting at
  every example, so no pad token is computed. transformers turns those positions into a
  per-example (block-diagonal) causal mask for sdpa, or varlen boundaries for flash-attn, so no
  example attends to another: the loss equals the padded batch's (tests/test_cuda_speed.py).
- `tokens_per_batch`: sizes micro-batches in tokens instead of rows (`auto`: from the GPU's
  free memory), the one knob that moves a 1.7B LoRA run from launch-bound to compute-bound.
- Fused linear cross-entropy is always on: TRL 1.16's SFTTrainer computes the loss through its
  chunked LM head, so the 151,936-wide logits are never materialized. `use_liger_kernel` adds
  Liger's RMSNorm/RoPE/SwiGLU kernels (TRL refuses Liger's own cross-entropy, which would replace
  the fused head); it needs the `liger-kernel` package and a CUDA device.
- `torch_compile`: transformers' Trainer compiles the training model.
- `fast_generation`: GRPO rollouts (and eval, through `config.eval`) use
  `qmd_ft.backends.cuda.fastgen`:
  the LoRA merged into a generation copy, a static KV cache, all completions of a step in one
  batch; `compile_generation` also compiles its decode step with CUDA graphs.
- `use_vllm`: TRL's colocated vLLM generates GRPO rollouts (users' GPUs usually have it).

`padding_free`, `tokens_per_batch`, `use_liger_kernel` and `torch_compile` shape SFT; GRPO's
batches are its completions, and its cost is the rollout, which the last three switches cover.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Literal

from qmd_ft.errors import UserError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

    from qmd_ft.config import Config, EvalConfig

TokensPerBatch = int | Literal["auto"] | None

ACTIVATION_BYTES_PER_TOKEN_LAYER = 2 * 14
"""bf16 bytes kept for backward per token, per layer, per hidden unit (plus the MLP's share
below): a deliberately high estimate for LoRA without activation checkpointing, so `auto` leaves
room for the allocator's fragmentation and the optimizer."""

AUTO_MEMORY_FRACTION = 0.5
"""Share of the GPU's free memory that `tokens_per_batch: auto` plans activations into."""

AUTO_MAX_TOKENS = 65_536


@dataclass(frozen=True)
class SpeedOptions:
    """The speed switches of one training run (all off: the plain path)."""

    padding_free: bool = False
    tokens_per_batch: TokensPerBatch = None
    use_liger_kernel: bool = False
    torch_compile: bool = False
    fast_generation: bool = False
    compile_generation: bool = False
    use_vllm: bool = False

    @classmethod
    def from_config(cls, cfg: Config) -> SpeedOptions:
        """The switches `config.training` sets; absent fields keep their plain defaults."""
        return cls(**{f.name: getattr(cfg.training, f.name, f.default) for f in fields(cls)})

    @classmethod
    def fast(cls, device: str) -> SpeedOptions:
        """The switches this machine runs fastest with: what `qmd-ft bench` measures as "ours".

        On a GPU without flash-attn, padding-free batches of thousands of tokens would pay for
        sdpa's dense block-diagonal mask (attention over the whole flattened batch), so there
        token-sized padded batches grouped by length (a few % padding, per-row attention) are
        used instead. Liger needs its package and CUDA; compiling and sizing batches to memory
        pay off only on a GPU (on a CPU compiling costs minutes for seconds of work).
        """
        cuda = device == "cuda"
        return cls(
            padding_free=not cuda or flash_attn_available(),
            tokens_per_batch="auto" if cuda else None,
            use_liger_kernel=cuda and liger_available(),
            torch_compile=cuda,
            fast_generation=True,
            compile_generation=cuda,
            use_vllm=False,
        )

    def with_overrides(self, pairs: dict[str, Any]) -> SpeedOptions:
        """A copy with some switches changed (`qmd-ft bench --speed name=value`)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(pairs) - known)
        if unknown:
            raise UserError(f"unknown speed option(s) {unknown}; known: {', '.join(sorted(known))}")
        return replace(self, **pairs)


def eval_generation(gen: EvalConfig) -> tuple[bool, bool]:
    """(fast_generation, compile_generation) for eval, from `config.eval` when it declares them."""
    return bool(getattr(gen, "fast_generation", False)), bool(
        getattr(gen, "compile_generation", False)
    )


def liger_available() -> bool:
    """True when the `liger_kernel` package is importable (its kernels are Triton, CUDA only)."""
    return importlib.util.find_spec("liger_kernel") is not None


def vllm_available() -> bool:
    """True when vLLM is importable (TRL's `use_vllm` needs it)."""
    return importlib.util.find_spec("vllm") is not None


def flash_attn_available() -> bool:
    """True when the flash-attn package is importable (varlen kernels for padding-free)."""
    return importlib.util.find_spec("flash_attn") is not None


def check_speed(speed: SpeedOptions, device: str) -> None:
    """Refuse switches this machine cannot honour, before any model is loaded.

    A silent fallback would make a config that asked for a fast path train slowly (or, for
    vLLM, not at all) hours later; an error says what to install or drop.
    """
    if speed.use_liger_kernel and (device != "cuda" or not liger_available()):
        raise UserError(
            "training.use_liger_kernel needs the liger-kernel package and a CUDA device "
            "(pip install liger-kernel), or set it to false"
        )
    if speed.use_vllm:
        if device != "cuda" or not vllm_available():
            raise UserError(
                "training.use_vllm needs vLLM and a CUDA device (pip install vllm), or set it to "
                "false (training.fast_generation is the built-in fast rollout)"
            )
        if speed.fast_generation:
            raise UserError("training.use_vllm and training.fast_generation: choose one")
    tpb = speed.tokens_per_batch
    if tpb is not None and tpb != "auto" and (not isinstance(tpb, int) or tpb <= 0):
        raise UserError(f"training.tokens_per_batch {tpb!r}: a positive integer or auto")


def attn_implementation(speed: SpeedOptions, device: str) -> str | None:
    """The attention kernel a run loads its model with (None: transformers' default, sdpa).

    Padding-free batches need per-example attention; flash-attn does that natively from the
    sequence boundaries, sdpa through a block-diagonal mask transformers builds from the
    positions. Both are exact; flash-attn skips the masked blocks, so it is used when present.
    """
    if speed.padding_free and device == "cuda" and flash_attn_available():
        return "flash_attention_2"
    return None


def activation_bytes_per_token(config: PretrainedConfig) -> int:
    """An upper estimate of the activation memory one training token needs (bf16, no ckpt)."""
    text = config.get_text_config()
    per_layer = ACTIVATION_BYTES_PER_TOKEN_LAYER * text.hidden_size
    per_layer += 2 * 5 * text.intermediate_size  # gate, up, act, product, down input
    return text.num_hidden_layers * per_layer


def auto_tokens_per_batch(config: PretrainedConfig, device: str, max_length: int) -> int | None:
    """Tokens per micro-batch that fit the card: half its free memory over the per-token cost.

    None on a CPU, where batches are sized by `training.batch_size` as before. Never less than
    one full-length example, never more than `AUTO_MAX_TOKENS` (beyond it steps are compute
    bound already and longer micro-batches only delay the first log line).
    """
    if device != "cuda":
        return None
    import torch

    free, _ = torch.cuda.mem_get_info()
    tokens = int(free * AUTO_MEMORY_FRACTION) // activation_bytes_per_token(config)
    return max(max_length, min(tokens, AUTO_MAX_TOKENS))


def rows_per_batch(tokens_per_batch: int, lengths: list[int], floor: int = 1) -> int:
    """Micro-batch size in examples so a batch holds about `tokens_per_batch` real tokens.

    Uses the mean tokenized length of the training examples: padding-free batches cost their
    real tokens, and the padded path with length grouping comes close to it.
    """
    mean = sum(lengths) / max(len(lengths), 1)
    return max(floor, int(tokens_per_batch // max(mean, 1.0)))
