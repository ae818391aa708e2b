"""Loading models for the mlx backend: a base checkpoint with its stacked adapters fused in.

A "stack" is what the config calls `model.base` plus `model.adapters` (and, for GRPO, the SFT
result): each PEFT adapter is applied and fused into the weights in order, so the next adapter,
or a fresh LoRA for training, sits on plain linear layers exactly as it did when it was trained.
A full model directory in the stack (the output of full fine-tuning) replaces what came before.
Fresh LoRA layers for training come from `qmd_ft.backends.mlx.lora`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from qmd_ft.backends.mlx.adapters import apply_adapter

# add_lora and lora_keys live in `lora` now; they stay importable from here.
from qmd_ft.backends.mlx.lora import add_lora as add_lora
from qmd_ft.backends.mlx.lora import fuse_lora
from qmd_ft.backends.mlx.lora import lora_keys as lora_keys
from qmd_ft.backends.precision import UpdateSize
from qmd_ft.errors import UserError

HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.jinja", "tokenizer.model"]


def use_device(device: str | None) -> None:
    """Pick mlx's default device: `cpu`, or the accelerator for `gpu`/`cuda`/`mps`/`metal`."""
    if device is None:
        return
    if device == "cpu":
        mx.set_default_device(mx.cpu)
    elif device in ("gpu", "cuda", "mps", "metal"):
        if not mx.is_available(mx.gpu):
            raise UserError(f"--device {device}: this mlx build has no GPU (mlx[cpu]); use cpu")
        mx.set_default_device(mx.gpu)
    else:
        raise UserError(f"--device {device!r}: the mlx backend takes cpu or gpu")


def model_dir(ref: str | Path) -> Path:
    """The local directory of a model or adapter: the path itself, else its Hub snapshot."""
    path = Path(ref)
    if path.exists():
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(ref), allow_patterns=HUB_PATTERNS))
    except Exception as e:  # the Hub raises many types; all mean "cannot get it"
        raise UserError(f"model {ref!r}: not a local path and not downloadable ({e})") from e


def is_adapter(path: Path) -> bool:
    """True for an adapter directory (PEFT or mlx-lm), False for a full model."""
    return (path / "adapter_config.json").is_file()


def load_stack(
    base: str, adapters: Sequence[str] = (), sizes: list[UpdateSize] | None = None
) -> tuple[nn.Module, Any, Path]:
    """Load `base`, then apply and fuse each adapter in order.

    Returns the model (plain linear layers, no LoRA left), mlx-lm's tokenizer wrapper, and the
    directory whose config and tokenizer files describe the result. With a `sizes` list (the
    merge), the weights are widened to fp32 first, so the fused sum is not rounded to the
    base's dtype, and each adapter's update is measured against that dtype and appended.
    """
    from mlx_lm.utils import load

    dirs = [model_dir(ref) for ref in [base, *adapters]]
    full_models = [i for i, d in enumerate(dirs) if not is_adapter(d)]
    if not full_models:
        raise UserError(f"{base}: is an adapter, not a model; give the base model first")
    start = full_models[-1]
    model, tokenizer = load(str(dirs[start]))
    stored = weights_dtype(model)
    if sizes is not None:
        model.set_dtype(mx.float32)
    for adapter in dirs[start + 1 :]:
        apply_adapter(model, adapter)
        size = UpdateSize(str(adapter), stored) if sizes is not None else None
        fuse_lora(model, size)
        if size is not None and sizes is not None:
            sizes.append(size)
    return model, tokenizer, dirs[start]


DTYPE_NAMES = {mx.bfloat16: "bfloat16", mx.float16: "float16", mx.float32: "float32"}


def weights_dtype(model: nn.Module) -> str:
    """The dtype the model's floating-point weights are held in (`bfloat16`, ... )."""
    for _, value in tree_flatten(model.parameters()):
        if value.dtype in DTYPE_NAMES:
            return DTYPE_NAMES[value.dtype]
    return "float32"
