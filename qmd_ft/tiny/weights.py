"""The tiny model's shape, its random weights and its config.json, all as Qwen3-1.7B lays them out.

Weights come from NumPy's legacy `RandomState` (its streams are fixed across releases), so the
same seed gives byte-identical safetensors anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qmd_ft.prompt import ENDOFTEXT, IM_END

TINY_SHAPE: dict[str, Any] = {
    # 4 heads x head_dim 32: attention width equals hidden size, as in Qwen3-1.7B (16 x 128).
    "hidden_size": 128,
    # 3x hidden, Qwen3-1.7B's ratio (6144 / 2048).
    "intermediate_size": 384,
    # Enough layers to exercise per-layer code (LoRA targets, KV caches); still ~1M parameters.
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    # 2 KV heads: grouped-query attention with Qwen3-1.7B's 2:1 ratio, so repeat-KV paths run.
    "num_key_value_heads": 2,
    "head_dim": 32,
    # QMD prompts and answers are a few hundred tokens; a short context keeps the KV caches
    # that llama.cpp and friends allocate by default small.
    "max_position_embeddings": 2048,
    # Qwen3's RoPE base and norm epsilon, so the numerics follow the real model's code paths.
    "rope_theta": 1_000_000,
    "rms_norm_eps": 1e-6,
    # Tied like Qwen3-1.7B, so exporters see the tied-embedding layout they will meet there.
    "tie_word_embeddings": True,
}

INIT_STD = 0.02
"""Standard deviation of the random weights: transformers' default `initializer_range`."""

MAX_SEED = 2**32 - 1
"""The largest weights seed numpy's RandomState takes (seeds are 0..2**32-1)."""


def tensor_shapes(dims: dict[str, Any], vocab_size: int) -> list[tuple[str, tuple[int, ...]]]:
    """Names and shapes of a Qwen3ForCausalLM's weights, in module order (the draw order)."""
    hidden, head_dim = dims["hidden_size"], dims["head_dim"]
    q_width = dims["num_attention_heads"] * head_dim
    kv_width = dims["num_key_value_heads"] * head_dim
    inner = dims["intermediate_size"]
    shapes: list[tuple[str, tuple[int, ...]]] = [
        ("model.embed_tokens.weight", (vocab_size, hidden))
    ]
    for layer in range(dims["num_hidden_layers"]):
        prefix = f"model.layers.{layer}."
        shapes += [
            (prefix + "self_attn.q_proj.weight", (q_width, hidden)),
            (prefix + "self_attn.k_proj.weight", (kv_width, hidden)),
            (prefix + "self_attn.v_proj.weight", (kv_width, hidden)),
            (prefix + "self_attn.o_proj.weight", (hidden, q_width)),
            (prefix + "self_attn.q_norm.weight", (head_dim,)),
            (prefix + "self_attn.k_norm.weight", (head_dim,)),
            (prefix + "mlp.gate_proj.weight", (inner, hidden)),
            (prefix + "mlp.up_proj.weight", (inner, hidden)),
            (prefix + "mlp.down_proj.weight", (hidden, inner)),
            (prefix + "input_layernorm.weight", (hidden,)),
            (prefix + "post_attention_layernorm.weight", (hidden,)),
        ]
    shapes.append(("model.norm.weight", (hidden,)))
    if not dims["tie_word_embeddings"]:
        shapes.append(("lm_head.weight", (vocab_size, hidden)))
    return shapes


def save_weights(path: Path, dims: dict[str, Any], vocab_size: int, seed: int) -> None:
    """Draw every matrix from N(0, INIT_STD) and set every norm to 1; save float32 safetensors.

    The `format: pt` metadata is what transformers expects of a PyTorch checkpoint.
    """
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.RandomState(seed)
    tensors = {
        name: np.ones(shape, dtype=np.float32)
        if len(shape) == 1
        else (rng.standard_normal(shape) * INIT_STD).astype(np.float32)
        for name, shape in tensor_shapes(dims, vocab_size)
    }
    save_file(tensors, str(path), metadata={"format": "pt"})


def model_config(dims: dict[str, Any], vocab_size: int, ids: dict[str, int]) -> dict[str, Any]:
    """config.json with Qwen3-1.7B's keys (rope_theta at top level, as every loader reads)."""
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": ids[ENDOFTEXT],
        "eos_token_id": ids[IM_END],
        "hidden_act": "silu",
        "initializer_range": INIT_STD,
        "max_window_layers": dims["num_hidden_layers"],
        "model_type": "qwen3",
        "rope_scaling": None,
        "sliding_window": None,
        "torch_dtype": "float32",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": vocab_size,
        **dims,
    }
