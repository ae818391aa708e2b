"""`qmd-ft bench`: the speed of training and generation, on random weights, beside upstream's.

Speed claims in this project are ratios against QMD's upstream recipe measured in the same
session on the same machine (see ../shared/bench/README.md for the H100 anchor). This module
holds what does not need torch: the plan of a run, the model shapes, the synthetic data (lengths
drawn like QMD's: prompts of 3-10 query words, completions ~50 tokens for 75% of rows and ~140
for the rest) and the report. The measuring itself is the backend's (`backends.cuda.bench`),
through the same functions `qmd-ft train` and `qmd-ft eval` run.

Random weights change none of the arithmetic, and they never emit a stop token at Qwen3-1.7B's
vocabulary, so every GRPO completion runs to `max_completion_length`, as in the anchor.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from qmd_ft.backend import get_backend
from qmd_ft.errors import UserError
from qmd_ft.prompt import NO_THINK, render_completion, render_prompt, user_message
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

PROMPT_WORDS = ("user", "assistant", NO_THINK, *user_message("").split())
"""Words of the fixed prompt text; the bench tokenizer gives each its own token."""

PARTS = ("sft", "grpo", "gen")

METRICS = (
    # (result key, label, higher is better)
    ("sft_real_tokens_per_s", "SFT real (non-pad) tokens/s", True),
    ("grpo_step_s", "GRPO s per optimizer step", False),
    ("gen_tokens_per_s", "generation tokens/s", True),
)


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


def vocabulary(vocab_size: int, specials: tuple[str, ...]) -> list[str]:
    """The bench tokenizer's tokens in id order: prompt words, `w<i>` filler, specials last.

    Word-level, so a synthetic text of n words is exactly n tokens, and exactly `vocab_size`
    tokens, so the embedding and LM head have the real model's width.
    """
    words = list(dict.fromkeys(PROMPT_WORDS))
    fill = vocab_size - len(words) - len(specials)
    if fill < 16:
        raise UserError(f"vocab_size {vocab_size} is too small for the bench tokenizer")
    return words + [f"w{i}" for i in range(fill)] + list(specials)


def synthesize(n: int, vocab_size: int, seed: int) -> list[dict[str, Any]]:
    """Prepared-data rows (`prompt`, `completion`, `messages`) of random filler words.

    Lengths follow the upstream measurement: 3-10 query words; completions N(50, 20) words for
    75% of rows and N(140, 25) for the rest, at least 8. `prompt`/`completion` are what
    `qmd-ft train` reads; `messages` is the upstream recipe's conversational form.
    """
    rng = random.Random(seed)
    fill = vocab_size - len(set(PROMPT_WORDS)) - 8

    def words(count: int) -> str:
        return " ".join(f"w{rng.randrange(fill)}" for _ in range(count))

    rows = []
    for _ in range(n):
        query = words(rng.randint(3, 10))
        short = rng.random() < 0.75
        length = int(rng.gauss(50, 20)) if short else int(rng.gauss(140, 25))
        completion = words(max(8, length))
        rows.append(
            {
                "prompt": render_prompt(query),
                "completion": render_completion(completion),
                "messages": [
                    {"role": "user", "content": user_message(query)},
                    {"role": "assistant", "content": completion},
                ],
            }
        )
    return rows


def cuda_visible() -> bool:
    """True when torch is installed and sees a CUDA device (imports torch only to ask)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def run_bench(plan: BenchPlan, backend: str = "cuda") -> dict[str, Any]:
    """Measure `plan` with the named backend; the result dict of `report`'s input."""
    plan.check()
    if backend != "cuda":
        raise UserError(f"--backend {backend}: bench measures the cuda backend only")
    get_backend(backend)  # a one-line error when its packages are missing
    from backends.cuda.bench import measure

    result = measure(plan)
    if "upstream" in result:
        result["ratios"] = ratios(result["ours"], result["upstream"])
    return result


def ratios(ours: dict[str, Any], upstream: dict[str, Any]) -> dict[str, float]:
    """How many times better ours is per metric (a speedup: > 1 is faster)."""
    out: dict[str, float] = {}
    for key, _, higher in METRICS:
        a, b = ours.get(key), upstream.get(key)
        if isinstance(a, int | float) and isinstance(b, int | float) and a > 0 and b > 0:
            out[key] = round(a / b if higher else b / a, 2)
    return out


def report(result: dict[str, Any]) -> str:
    """The result as a plain-text table (upstream and ratio columns when measured)."""
    upstream = result.get("upstream")
    head = ["metric", "ours"] + (["upstream recipe", "ratio"] if upstream else [])
    rows = [head]
    for key, label, _ in METRICS:
        if key not in result["ours"]:
            continue
        row = [label, _fmt(result["ours"][key])]
        if upstream:
            row += [_fmt(upstream.get(key)), f"{result['ratios'].get(key, float('nan')):.2f}x"]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    info = result["setup"]
    lines.append("")
    lines.append(
        f"{info['device']} | shape {info['shape']} ({info['params']:,} params) | "
        f"torch {info['torch']}, transformers {info['transformers']}, trl {info['trl']}"
    )
    lines.append("ours: " + ", ".join(f"{k}={v}" for k, v in result["ours_speed"].items()))
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    """Numbers for the table: thousands separated above 100, three significant digits below."""
    if not isinstance(value, int | float):
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
