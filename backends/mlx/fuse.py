"""Merged models: base plus fused adapters, written as Hugging Face model directories.

The output is what transformers itself would save: `model.safetensors` (HF tensor names,
`format: pt`), the source's `config.json`, and its tokenizer, chat template and generation
config copied byte for byte. Eval, GGUF export and publish read that, whichever backend trained.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

# fuse_lora lives in `lora` now; it stays importable from here.
from qmd_ft.backends.mlx.lora import fuse_lora as fuse_lora
from qmd_ft.backends.mlx.models import load_stack, weights_dtype
from qmd_ft.backends.precision import UpdateSize, report, store_dtype
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


def save_hf_model(model: nn.Module, src: Path, out: Path, dtype: str | None = None) -> Path:
    """Write a LoRA-free model as an HF checkpoint, with `src`'s config and tokenizer.

    The architecture is unchanged by fine-tuning, so `src/config.json` describes the weights;
    a `dtype` other than the source's is written into it, so transformers loads the weights in
    the dtype they are stored in.
    """
    weights = dict(tree_flatten(model.parameters()))
    if any(".lora_" in name for name in weights):
        raise ValueError("fuse_lora(model) first: an HF checkpoint has no LoRA layers")
    out.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "pt"})
    shutil.copyfile(src / "config.json", out / "config.json")
    if dtype is not None:
        config = json.loads((src / "config.json").read_text(encoding="utf-8"))
        config.update({key: dtype for key in ("dtype", "torch_dtype") if key in config})
        config.setdefault("dtype", dtype)
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    copy_tokenizer(src, out)
    return out


def merge(base: str, adapters: Sequence[str], out: Path) -> Path:
    """Base plus adapters, fused in fp32, into one HF model directory with tokenizer and manifest.

    Stored in the base's dtype when it keeps every adapter's update, else in fp32
    (`qmd_ft.backends.precision`): GRPO's update at QMD's learning rate rounds away in bf16.
    """
    sizes: list[UpdateSize] = []
    model, _, src = load_stack(base, adapters, sizes)
    stored = sizes[0].storage if sizes else weights_dtype(model)
    dtype = store_dtype(sizes, stored)
    report(sizes, stored, dtype)
    model.set_dtype(getattr(mx, dtype))
    save_hf_model(model, src, out, dtype if dtype != stored else None)
    made_of = lineage(base, adapters)
    extra = {
        "backend": "mlx",
        "dtype": dtype,
        "base_dtype": stored,
        "updates": {size.name: size.summary() for size in sizes},
        **made_of,
    }
    write_manifest(out, "merged", parents=[base, *adapters], extra=extra)
    return out
