"""What one `qmd-ft bench` run measures: the model shapes, the parts, the step counts.

Shared by the core (`qmd_ft.bench.run`) and the backends' benches, so it imports neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qmd_ft.errors import UserError
from qmd_ft.tiny_model import TINY_SHAPE

SHAPES: dict[str, dict[str, Any]] = {
    # Qwen/Qwen3-1.7B's config.json: 1,720,574,976 parameters with the tied embedding.
    "qwen3-1.7b": {
        "vocab_size": 151_936,
        "hidden_size": 2048,
        "intermediate_size": 6144,
        "num_hidden_layers": 28,
        "num_attention_heads": 16,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "max_position_embeddings": 40_960,
        "rope_theta": 1_000_000,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": True,
    },
    # qmd_ft.tiny_model's shape and vocabulary size: seconds on a CPU.
    "tiny": {"vocab_size": 1024, **TINY_SHAPE},
}

PARTS = ("sft", "grpo", "gen")


@dataclass(frozen=True)
class BenchPlan:
    """One `qmd-ft bench` run: what to build, what to measure, how long."""

    shape: str = "qwen3-1.7b"
    device: str | None = None
    upstream: bool = False
    parts: tuple[str, ...] = PARTS
    sft_steps: int = 12
    grpo_steps: int = 3
    warmup: int = 2
    gen_tokens: int = 200
    gen_batch: int = 16
    completions_per_step: int = 16
    num_generations: int = 4
    seed: int = 0
    speed: dict[str, Any] = field(default_factory=dict)

    def lengths(self) -> dict[str, int]:
        """The step counts and lengths a result's `setup` records (same keys on every backend)."""
        keys = ("sft_steps", "grpo_steps", "warmup", "gen_tokens", "gen_batch")
        return {k: getattr(self, k) for k in (*keys, "completions_per_step")}

    def check(self) -> None:
        """Refuse plans that cannot give a number (unknown shape or part, too few steps)."""
        if self.shape not in SHAPES:
            raise UserError(f"--model-shape {self.shape}: choose {', '.join(SHAPES)}")
        unknown = [p for p in self.parts if p not in PARTS]
        if unknown or not self.parts:
            raise UserError(f"--parts {','.join(self.parts)}: choose among {', '.join(PARTS)}")
        for name in ("sft_steps", "grpo_steps", "gen_tokens", "gen_batch"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if self.warmup < 0:
            raise UserError("--warmup must be 0 or more")
        if self.completions_per_step % self.num_generations:
            raise UserError("completions per step must be a multiple of num_generations")
