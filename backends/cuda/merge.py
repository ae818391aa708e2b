"""Base + adapters into one safetensors model directory: what eval, GGUF export and publish read.

Adapters are merged in fp32 (so SFT-then-GRPO stacking adds no rounding of its own) and the
result is stored in the base checkpoint's dtype (bf16 for Qwen3-1.7B, fp32 for the tiny model),
with the base's tokenizer, chat template and generation config beside it. GRPO's policy and
the eval generator load adapters the same way, so all three see the same weights.
"""

from __future__ import annotations

from pathlib import Path

import torch

from qmd_ft.backends.cuda.loading import load_merged, load_tokenizer
from qmd_ft.manifest import lineage, write_manifest


def merge(base: str, adapters: list[str], out: Path) -> Path:
    """Write `out` (config, model.safetensors, tokenizer, manifest.json); return it."""
    from transformers import AutoConfig

    tokenizer = load_tokenizer(base)
    stored = AutoConfig.from_pretrained(base).dtype or torch.float32
    model = load_merged(base, adapters, stored)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    write_manifest(
        out,
        "merged",
        parents=[base, *adapters],
        extra={"dtype": str(stored).removeprefix("torch."), **lineage(base, adapters)},
    )
    return out
