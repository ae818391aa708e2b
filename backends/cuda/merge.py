"""Base + adapters into one safetensors model directory: what eval, GGUF export and publish read.

Adapters are merged in fp32 (so SFT-then-GRPO stacking adds no rounding of its own), and each
adapter's update is measured against the base checkpoint's dtype (`precision`): the merged
weights are stored in that dtype (bf16 for Qwen3-1.7B, fp32 for the tiny model) when it keeps
every update, and in fp32 when it would round one away, which is what GRPO's update at QMD's
learning rate does in bf16. The GGUF export then converts from those fp32 weights, and eval
loads them in fp32 (`loading.generation_dtype`), so the gate, the release and its GGUF all see
what GRPO learned. The base's tokenizer, chat template and generation config go beside it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from qmd_ft.backends.cuda.loading import dtype_name, load_model, load_tokenizer, merge_adapters
from qmd_ft.backends.precision import UpdateSize, report, store_dtype
from qmd_ft.manifest import lineage, write_manifest


def merge(base: str, adapters: list[str], out: Path) -> Path:
    """Write `out` (config, model.safetensors, tokenizer, manifest.json); return it."""
    from transformers import AutoConfig

    tokenizer = load_tokenizer(base)
    stored = dtype_name(AutoConfig.from_pretrained(base).dtype)
    sizes: list[UpdateSize] = []
    model = merge_adapters(load_model(base, torch.float32), adapters, sizes, stored)
    dtype = store_dtype(sizes, stored)
    report(sizes, stored, dtype)
    model = model.to(getattr(torch, dtype))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    write_manifest(
        out,
        "merged",
        parents=[base, *adapters],
        extra={
            "dtype": dtype,
            "base_dtype": stored,
            "updates": {size.name: size.summary() for size in sizes},
            **lineage(base, adapters),
        },
    )
    return out
