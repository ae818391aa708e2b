"""Merged models: base plus fused adapters, written as Hugging Face model directories.

The output is what transformers itself would save: `model.safetensors` (HF tensor names,
`format: pt`), the source's `config.json`, and its tokenizer, chat template and generation
config copied byte for byte. Eval, GGUF export and publish read that, whichever backend trained.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

# fuse_lora lives in `lora` now; it stays importable from here.
from qmd_ft.backends.mlx.lora import fuse_lora as fuse_lora
from qmd_ft.backends.mlx.models import load_stack
from qmd_ft.manifest import lineage, write_manifest

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "generation_config.json",
)
"""Files that travel with every artifact, so each one loads with its own tokenizer."""


def copy_tokenizer(src: Path, out: Path) -> None:
    """Copy the tokenizer and generation files that `src` has into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)


def save_hf_model(model: nn.Module, src: Path, out: Path) -> Path:
    """Write a LoRA-free model as an HF checkpoint, with `src`'s config and tokenizer.

    The architecture is unchanged by fine-tuning, so `src/config.json` describes the weights.
    """
    weights = dict(tree_flatten(model.parameters()))
    if any(".lora_" in name for name in weights):
        raise ValueError("fuse_lora(model) first: an HF checkpoint has no LoRA layers")
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "pt"})
    shutil.copyfile(src / "config.json", out / "config.json")
    copy_tokenizer(src, out)
    return out


def merge(base: str, adapters: Sequence[str], out: Path) -> Path:
    """Base plus adapters, fused, into one HF model directory with tokenizer and manifest."""
    model, _, src = load_stack(base, adapters)
    save_hf_model(model, src, out)
    made_of = lineage(base, adapters)
    write_manifest(out, "merged", parents=[base, *adapters], extra={"backend": "mlx", **made_of})
    return out
