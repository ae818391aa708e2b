"""LoRA layers on an mlx-lm model: which linears to target, wrapping them, fusing them back.

The bottom of the mlx backend's model code: `adapters` (adapter files), `models` (loading a
stack) and `fuse` (writing merged models) build on these three operations, never the reverse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_unflatten

from qmd_ft.errors import UserError

if TYPE_CHECKING:
    from qmd_ft.backends.precision import UpdateSize


def lora_keys(model: nn.Module, target_modules: Sequence[str]) -> list[str]:
    """Layer-relative paths (`self_attn.q_proj`) of the linear layers PEFT would target.

    PEFT matches a target name against the end of each module's path; mlx-lm wants the paths
    inside one transformer block, which are the same in every block.
    """
    targets = set(target_modules)
    keys = [
        name
        for name, module in model.layers[0].named_modules()
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in targets
    ]
    found = {k.rsplit(".", 1)[-1] for k in keys}
    if missing := sorted(targets - found):
        raise UserError(f"lora.target_modules: {missing} match no linear layer of the model")
    return sorted(keys)


def add_lora(
    model: nn.Module, keys: Sequence[str], rank: int, scale: float, dropout: float
) -> None:
    """Freeze the model and wrap the `keys` linears of every block in LoRA layers.

    mlx-lm's `scale` multiplies the low-rank product directly: it equals PEFT's
    `lora_alpha / r`, not alpha itself.
    """
    from mlx_lm.tuner.utils import linear_to_lora_layers

    model.freeze()
    linear_to_lora_layers(
        model,
        len(model.layers),
        {"rank": rank, "scale": scale, "dropout": dropout, "keys": list(keys)},
    )


def fuse_lora(model: nn.Module, size: UpdateSize | None = None) -> None:
    """Replace every LoRA layer by one linear layer holding W + scale * B A.

    With `size`, each layer's update (fused minus original weight, in fp32) is measured into
    it (`qmd_ft.backends.precision`), which is how a merge decides the dtype to store.
    """
    fused = []
    for name, module in model.named_modules():
        if not hasattr(module, "fuse"):
            continue
        layer = module.fuse()
        if size is not None:
            weight = np.array(module.linear.weight.astype(mx.float32))
            size.add(weight, np.array(layer.weight.astype(mx.float32)) - weight)
        fused.append((name, layer))
    if fused:
        model.update_modules(tree_unflatten(fused))
