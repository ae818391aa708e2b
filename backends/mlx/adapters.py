"""LoRA adapters between mlx-lm's layout and PEFT's, so every backend reads and writes one format.

The two differ in three ways, for the same layer `y = W x + s * B A x`:

- keys: mlx-lm `model.layers.0.self_attn.q_proj.lora_a` is PEFT
  `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight` (and `lora_b` / `lora_B`);
- layout: mlx-lm stores A as (in, r) and B as (r, out), PEFT their transposes (r, in), (out, r);
- scale: mlx-lm stores s itself (`scale`), PEFT stores `lora_alpha` and `r` and uses
  s = lora_alpha / r (lora_alpha / sqrt(r) with rsLoRA).

Conversion is exact (transposes only); weights keep their dtype. mlx arrays do the I/O because
numpy has no bfloat16.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from qmd_ft.backends.mlx.lora import add_lora
from qmd_ft.errors import UserError

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
MLX_WEIGHTS = "adapters.safetensors"
PEFT_PREFIX = "base_model.model."
_PEFT_KEY = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<ab>[AB])\.weight$")
_MLX_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[ab])$")
_LAYER_PREFIX = re.compile(r"^model\.layers\.\d+\.")


def peft_config(
    rank: int,
    alpha: float,
    dropout: float,
    target_modules: Sequence[str],
    base_model: str | None,
) -> dict[str, Any]:
    """The adapter_config.json PEFT writes for a plain LoRA on a causal LM."""
    return {
        "alpha_pattern": {},
        "base_model_name_or_path": base_model,
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "layers_to_transform": None,
        "lora_alpha": alpha,
        "lora_dropout": dropout,
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": rank,
        "rank_pattern": {},
        "target_modules": sorted(target_modules),
        "task_type": "CAUSAL_LM",
        "use_dora": False,
        "use_rslora": False,
    }


def mlx_to_peft_weights(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    """`…q_proj.lora_a` (in, r) → `base_model.model.…q_proj.lora_A.weight` (r, in); B likewise."""
    out = {}
    for key, value in weights.items():
        m = _MLX_KEY.match(key)
        if m is None:
            raise ValueError(f"not an mlx-lm LoRA weight: {key}")
        out[f"{PEFT_PREFIX}{m['module']}.lora_{m['ab'].upper()}.weight"] = value.T
    return out


def peft_to_mlx_weights(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    """The inverse of `mlx_to_peft_weights`."""
    out = {}
    for key, value in weights.items():
        m = _PEFT_KEY.match(key)
        if m is None:
            raise UserError(f"unsupported PEFT adapter tensor {key} (only LoRA A/B are)")
        out[f"{m['module']}.lora_{m['ab'].lower()}"] = value.T
    return out


def peft_scale(config: dict[str, Any]) -> float:
    """The multiplier PEFT applies to B A: alpha / r, or alpha / sqrt(r) with rsLoRA."""
    rank = config["r"]
    return config["lora_alpha"] / (math.sqrt(rank) if config.get("use_rslora") else rank)


def _check_plain_lora(config: dict[str, Any], where: Path) -> None:
    """Refuse PEFT features a fused LoRA cannot express here, instead of loading them wrongly."""
    if config.get("peft_type", "LORA") != "LORA":
        raise UserError(f"{where}: peft_type {config.get('peft_type')!r} is not LoRA")
    unsupported = [
        key
        for key in (
            "use_dora",
            "rank_pattern",
            "alpha_pattern",
            "modules_to_save",
            "fan_in_fan_out",
        )
        if config.get(key)
    ]
    if config.get("bias", "none") != "none":
        unsupported.append("bias")
    if unsupported:
        raise UserError(f"{where}: PEFT options {unsupported} are not supported by the mlx backend")


def read_peft(path: Path) -> tuple[dict[str, Any], dict[str, mx.array]]:
    """A PEFT adapter directory's config and its weights in mlx-lm's layout."""
    config = json.loads((path / PEFT_CONFIG).read_text(encoding="utf-8"))
    _check_plain_lora(config, path)
    weights = peft_to_mlx_weights(mx.load(str(path / PEFT_WEIGHTS)))
    return config, weights


def layer_keys(weight_names: Sequence[str]) -> list[str]:
    """Block-relative module paths (`self_attn.q_proj`) that the LoRA weights name."""
    keys = set()
    for name in weight_names:
        module = name.rsplit(".", 1)[0]
        if not _LAYER_PREFIX.match(module):
            raise UserError(f"LoRA on {module} (outside the transformer blocks) is not supported")
        keys.add(_LAYER_PREFIX.sub("", module))
    return sorted(keys)


def apply_adapter(model: nn.Module, path: Path) -> None:
    """Add the LoRA layers an adapter directory describes (PEFT or mlx-lm) and load its weights.

    Every block gets the adapter's modules; blocks the adapter has no weights for keep B = 0,
    so they add nothing.
    """
    from mlx_lm.tuner.utils import load_adapters

    if not (path / PEFT_WEIGHTS).is_file():
        if (path / MLX_WEIGHTS).is_file():
            load_adapters(model, str(path))
            return
        raise UserError(f"{path}: no {PEFT_WEIGHTS} (nor mlx-lm {MLX_WEIGHTS}) in the adapter")
    config, weights = read_peft(path)
    add_lora(model, layer_keys(list(weights)), config["r"], peft_scale(config), 0.0)
    params = dict(tree_flatten(model.parameters()))
    for name, value in weights.items():
        if name not in params or params[name].shape != value.shape:
            raise UserError(f"{path}: {name} {tuple(value.shape)} does not fit the model")
    model.load_weights(list(weights.items()), strict=False)


def lora_weights(model: nn.Module) -> dict[str, mx.array]:
    """The model's LoRA A/B matrices, mlx-lm names."""
    return {
        name: value
        for name, value in tree_flatten(model.parameters())
        if name.endswith((".lora_a", ".lora_b"))
    }


def save_peft(model: nn.Module, out: Path, config: dict[str, Any]) -> None:
    """Write the model's LoRA weights as a PEFT adapter (config + safetensors) into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    weights = mlx_to_peft_weights(lora_weights(model))
    mx.save_safetensors(str(out / PEFT_WEIGHTS), weights, metadata={"format": "pt"})
    (out / PEFT_CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def mlx_adapter_to_peft(src: Path, dst: Path, base_model: str | None = None) -> Path:
    """Convert an mlx-lm adapter directory (e.g. from `mlx_lm.lora`) into a PEFT one.

    PEFT's alpha is chosen as `scale * rank`, so `alpha / r` reproduces mlx-lm's scale.
    """
    config = json.loads((src / PEFT_CONFIG).read_text(encoding="utf-8"))
    if config.get("fine_tune_type", "lora") != "lora":
        raise UserError(
            f"{src}: only LoRA adapters convert to PEFT, not {config['fine_tune_type']}"
        )
    params = config["lora_parameters"]
    weights = mx.load(str(src / MLX_WEIGHTS))
    targets = {name.rsplit(".", 2)[-2] for name in weights}
    dst.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(
        str(dst / PEFT_WEIGHTS), mlx_to_peft_weights(weights), metadata={"format": "pt"}
    )
    peft = peft_config(
        params["rank"],
        params["scale"] * params["rank"],
        params.get("dropout", 0.0),
        sorted(targets),
        base_model or config.get("model"),
    )
    (dst / PEFT_CONFIG).write_text(json.dumps(peft, indent=2) + "\n", encoding="utf-8")
    return dst


def peft_to_mlx_adapter(src: Path, dst: Path, num_layers: int) -> Path:
    """Convert a PEFT adapter directory into one `mlx_lm.load(adapter_path=…)` accepts.

    `num_layers` is the model's block count: mlx-lm adds LoRA to the last `num_layers` blocks.
    """
    config, weights = read_peft(src)
    dst.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(dst / MLX_WEIGHTS), weights)
    mlx_config = {
        "fine_tune_type": "lora",
        "model": config.get("base_model_name_or_path"),
        "num_layers": num_layers,
        "lora_parameters": {
            "rank": config["r"],
            "scale": peft_scale(config),
            "dropout": config.get("lora_dropout", 0.0),
            "keys": layer_keys(list(weights)),
        },
    }
    (dst / PEFT_CONFIG).write_text(json.dumps(mlx_config, indent=2) + "\n", encoding="utf-8")
    return dst
