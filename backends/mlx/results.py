"""What a training stage leaves in its output directory, the same files as the cuda backend.

- LoRA: a PEFT adapter (`adapter_config.json`, `adapter_model.safetensors`) plus the tokenizer.
- Full fine-tuning: an HF model directory (`model.safetensors`, `config.json`, tokenizer).
- `trainer_state.json` with `global_step` and `log_history` (HF's file, from `log.jsonl`).
- `manifest.json`: config, data hash, parents, versions, final metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlx.nn as nn

from qmd_ft.backend import TrainRequest
from qmd_ft.backends.mlx.adapters import peft_config, save_peft
from qmd_ft.backends.mlx.checkpoints import read_log
from qmd_ft.backends.mlx.dataset import data_hash
from qmd_ft.backends.mlx.fuse import copy_tokenizer, save_hf_model
from qmd_ft.config import Config
from qmd_ft.manifest import write_manifest


def save_trained(model: nn.Module, cfg: Config, src: Path, out: Path) -> None:
    """The trained weights: a PEFT adapter of `cfg.lora`, or the whole model without one.

    `src` is the model directory whose config and tokenizer the weights belong to.
    """
    if cfg.lora is None:
        save_hf_model(model, src, out)
        return
    lora = cfg.lora
    config = peft_config(lora.rank, lora.alpha, lora.dropout, lora.target_modules, cfg.model.base)
    save_peft(model, out, config)
    copy_tokenizer(src, out)


def last_logged(out: Path, key: str) -> float | None:
    """The most recent logged value of a metric."""
    for record in reversed(read_log(out)):
        if key in record:
            return record[key]
    return None


def finish(
    req: TrainRequest,
    kind: str,
    *,
    global_step: int,
    parents: list[str],
    metrics: dict[str, Any],
) -> Path:
    """Write trainer_state.json and manifest.json beside the saved weights; return the dir."""
    out = req.output_dir
    state = {"global_step": global_step, "log_history": read_log(out)}
    (out / "trainer_state.json").write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    write_manifest(
        out,
        kind,
        config=req.config.model_dump(mode="json"),
        data_hash=data_hash(req.data_dir),
        parents=parents,
        extra={
            "backend": "mlx",
            "metrics": {"global_step": global_step, **metrics},
            "data_dir": str(req.data_dir),
            "device": req.device or "default",
        },
    )
    return out
