"""Speed switches of the cuda backend: what they are, where they come from, what they need.

Every switch defaults to the plain path, so a config without them trains exactly as before. They
are read from `config.training` (and `config.eval` for eval generation) with `getattr`, so they
work as soon as the config schema declares them and keep their defaults until then; callers that
must choose them regardless of the config (`qmd-ft bench`, tests) pass a `SpeedOptions` instead.

What each buys, and why it is safe:

- `padding_free`: TRL flattens each micro-batch into one row with `position_ids` restarting at
  every example, so no pad token is computed. transformers turns those positions into varlen
  boundaries for flash-attn, a sparse document BlockMask for flex_attention, or (CPU only) a
  block-diagonal mask for sdpa, so no example attends to another: the loss equals the padded
  batch's (tests/test_cuda_speed.py). `packed_attention` picks the kernel.
- `tokens_per_batch`: sizes micro-batches in tokens instead of rows (`auto`: from the GPU's
  free memory once the model is placed), the one knob that moves a 1.7B LoRA run from
  launch-bound to compute-bound. It sets micro-batch and gradient accumulation *together*, so
  an optimizer step still sees the recipe's `batch_size x gradient_accumulation_steps`
  examples, in the same order: step count, learning-rate schedule and gradients are the plain
  path's (transformers normalizes the loss by the tokens of the whole step).
- Fused linear cross-entropy is always on: TRL 1.16's SFTTrainer computes the loss through its
  chunked LM head, so the 151,936-wide logits are never materialized. `use_liger_kernel` adds
  Liger's RMSNorm/RoPE/SwiGLU kernels (TRL refuses Liger's own cross-entropy, which would replace
  the fused head); it needs the `liger-kernel` package and a CUDA device.
- `torch_compile`: transformers' Trainer compiles the training model.
- `fast_generation`: GRPO rollouts (and eval, through `config.eval`) use
  `qmd_ft.backends.cuda.fastgen`: the LoRA merged into a generation copy, a static KV cache,
  all completions of a step in one batch; `compile_generation` also compiles its decode step
  with CUDA graphs.
- `use_vllm`: TRL's colocated vLLM generates GRPO rollouts (users' GPUs usually have it).

`padding_free`, `tokens_per_batch`, `use_liger_kernel` and `torch_compile` shape SFT; GRPO's
batches are its completions, and its cost is the rollout, which the last three switches cover.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Literal

import torch

from qmd_ft.errors import UserError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

    from qmd_ft.config import Config, EvalConfig, LoraConfig

TokensPerBatch = int | Literal["auto"] | None

ACTIVATION_BYTES_PER_TOKEN_LAYER = 2 * 14
"""bf16 bytes kept for backward per token, per layer, per hidden unit (plus the MLP's share
below): a deliberately high estimate for LoRA without activation checkpointing, so `auto` leaves
room for the allocator's fragmentation and the optimizer."""

AUTO_MEMORY_FRACTION = 0.5
"""Share of the GPU's free memory that `tokens_per_batch: auto` plans activations into."""

AUTO_MAX_TOKENS = 65_536

ADAM_STATE_BYTES = 8
"""AdamW's two fp32 moments per trainable parameter."""


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

        Padding-free batches run on a kernel that respects sequence boundaries
        (`packed_attention`: flash-attn, else flex_attention), or on a GPU with neither fall
        back to padded batches. Liger needs its package and CUDA; compiling and sizing batches
        to memory pay off only on a GPU (on a CPU compiling costs minutes for seconds of work).
        """
        cuda = device == "cuda"
        return cls(
            padding_free=not cuda or flash_attn_available() or triton_available(),
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


def triton_available() -> bool:
    """True when Triton is importable: what flex_attention compiles its GPU kernels with."""
    return importlib.util.find_spec("triton") is not None


def packed_attention(speed: SpeedOptions, device: str) -> tuple[SpeedOptions, str | None]:
    """The switches and attention kernel a run loads its model with (None: sdpa, the default).

    A padding-free batch is one row of many examples, and attention must not cross them.
    sdpa can only do that with a dense block-diagonal mask over the whole flattened batch
    (T x T: 144M entries at 12k tokens), so on a GPU packed batches use a kernel that reads
    the boundaries instead: flash-attn's varlen kernels when installed, else transformers'
    flex_attention, which turns the restarting `position_ids` into a sparse document
    `BlockMask` (Triton, shipped with torch's CUDA wheels: nothing to build). Without either,
    the run falls back to padded batches and says so. A CPU keeps sdpa: its batches are a few
    rows (flex_attention has no CPU backward), so the mask stays small.
    """
    if not speed.padding_free or device != "cuda":
        return speed, None
    if flash_attn_available():
        return speed, "flash_attention_2"
    if triton_available():
        return speed, "flex_attention"
    print(
        "training.padding_free: no flash-attn or Triton (flex_attention) on this machine, and "
        "sdpa would build a dense mask over the packed batch; training on padded batches"
    )
    return replace(speed, padding_free=False), None


def activation_bytes_per_token(config: PretrainedConfig) -> int:
    """An upper estimate of the activation memory one training token needs (bf16, no ckpt)."""
    text = config.get_text_config()
    per_layer = ACTIVATION_BYTES_PER_TOKEN_LAYER * text.hidden_size
    per_layer += 2 * 5 * text.intermediate_size  # gate, up, act, product, down input
    return text.num_hidden_layers * per_layer


def trainable_parameters(model: torch.nn.Module, lora: LoraConfig | None) -> int:
    """Parameters the optimizer will hold: every one for full fine-tuning, else LoRA's A and B.

    Counted before PEFT wraps the model, with PEFT's own rule for which modules a
    `target_modules` list names, so the count is the adapter the trainer will build.
    """
    if lora is None:
        return sum(p.numel() for p in model.parameters())
    from peft import LoraConfig as PeftLoraConfig
    from peft.tuners.tuners_utils import check_target_module_exists

    targets = PeftLoraConfig(r=lora.rank, target_modules=list(lora.target_modules))
    return sum(
        lora.rank * (module.in_features + module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and check_target_module_exists(targets, name)
    )


def training_state_bytes(model: torch.nn.Module, lora: LoraConfig | None) -> int:
    """Memory the first optimizer step adds to a placed model: gradients and AdamW's states.

    AdamW keeps two fp32 moments per trainable parameter; gradients take the parameter's
    dtype (fp32 master weights under full fine-tuning, fp32 LoRA weights, which PEFT also
    allocates on top of the placed base).
    """
    trainable = trainable_parameters(model, lora)
    per_param = 4 + ADAM_STATE_BYTES + (4 if lora is not None else 0)
    return trainable * per_param


def auto_tokens_per_batch(model: torch.nn.Module, lora: LoraConfig | None, free_bytes: int) -> int:
    """Tokens per micro-batch that fit this process's GPU once the model sits on it.

    `free_bytes` is measured after the model is placed (`placed_free_bytes`), so its weights
    are already counted; gradients and optimizer states come off next, and a share
    (`AUTO_MEMORY_FRACTION`) of what is left is planned for activations at the per-token
    estimate. Never more than `AUTO_MAX_TOKENS` (beyond it steps are compute bound already).
    A card that cannot hold the training state at all is refused with the numbers.
    """
    state = training_state_bytes(model, lora)
    left = free_bytes - state
    tokens = int(left * AUTO_MEMORY_FRACTION) // activation_bytes_per_token(model.config)
    if tokens < 1:
        gib = 2**30
        raise UserError(
            f"training.tokens_per_batch auto: {free_bytes / gib:.1f} GiB free after placing the "
            f"model cannot hold its gradients and optimizer states ({state / gib:.1f} GiB); "
            "use LoRA, more GPUs or a smaller model"
        )
    return min(tokens, AUTO_MAX_TOKENS)


def placed_free_bytes(model: torch.nn.Module) -> int:
    """Free memory of this process's GPU after moving `model` onto it.

    The device is the current one, which `loading.resolve_device` set from `LOCAL_RANK` under
    `--gpus N`, so each process sizes its own card and none touches GPU 0 by default.
    """
    device = torch.device("cuda", torch.cuda.current_device())
    model.to(device)
    torch.cuda.synchronize(device)
    free, _ = torch.cuda.mem_get_info(device)
    return free


def rows_per_batch(tokens_per_batch: int, lengths: list[int], floor: int = 1) -> int:
    """Micro-batch size in examples so a batch holds about `tokens_per_batch` real tokens.

    Uses the mean tokenized length of the training examples: padding-free batches cost their
    real tokens (a padded batch costs its longest row per row, a little more).
    """
    mean = sum(lengths) / max(len(lengths), 1)
    return max(floor, int(tokens_per_batch // max(mean, 1.0)))


def split_step(
    tokens_per_batch: int, lengths: list[int], examples_per_step: int
) -> tuple[int, int]:
    """(micro-batch rows, accumulation steps) for a token budget, keeping the recipe's step.

    The micro-batch is the largest divisor of `examples_per_step` (the recipe's `batch_size x
    gradient_accumulation_steps`) that fits the budget, so micro x accumulation is exactly the
    recipe's examples per optimizer step. A budget below one example of mean length cannot
    keep that and is refused.
    """
    rows = rows_per_batch(tokens_per_batch, lengths, floor=0)
    if rows < 1:
        mean = sum(lengths) / max(len(lengths), 1)
        raise UserError(
            f"training.tokens_per_batch {tokens_per_batch}: holds no example (mean length "
            f"{mean:.0f} tokens); raise it or leave it unset"
        )
    fit = min(rows, examples_per_step)
    micro = max(d for d in range(1, fit + 1) if examples_per_step % d == 0)
    return micro, examples_per_step // micro
