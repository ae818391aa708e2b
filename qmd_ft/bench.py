"""`qmd-ft bench`: the speed of training and generation, on random weights, beside upstream's.

Speed claims in this project are ratios against QMD's upstream recipe measured in the same
session on the same machine (see ../shared/bench/README.md for the H100 anchor). This module
holds what does not need torch: the plan of a run, the model shapes, the synthetic data (lengths
drawn like QMD's: prompts of 3-10 query words, completions ~50 tokens for 75% of rows and ~140
for the rest), what both backends share of the bench model (its configs and word-level tokenizer),
the run configs of the measured recipes, the arithmetic of the results, and the report. The
measuring itself is the backend's (`qmd_ft.backends.cuda.bench`, `qmd_ft.backends.mlx.bench`),
through the same functions `qmd-ft train` and `qmd-ft eval` run; transformers and tokenizers are
imported only inside the functions that build the bench model (neither needs torch).

Random weights change none of the arithmetic, and they never emit a stop token at Qwen3-1.7B's
vocabulary, so every GRPO completion runs to `max_completion_length`, as in the anchor.
"""

from __future__ import annotations

import json
import random
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qmd_ft.backend import get_backend
from qmd_ft.config import Config, load_config
from qmd_ft.data.prepare import TRAIN_FILE, VAL_FILE
from qmd_ft.errors import UserError
from qmd_ft.prompt import (
    ENDOFTEXT,
    IM_END,
    NO_THINK,
    SPECIAL_TOKENS,
    render_completion,
    render_prompt,
    user_message,
)
from qmd_ft.tiny_model import QWEN3_CHAT_TEMPLATE, TINY_SHAPE

if TYPE_CHECKING:
    from transformers import GenerationConfig, PreTrainedTokenizerFast, Qwen3Config

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

VERSIONED = ("mlx", "mlx_lm", "torch", "transformers", "trl")
"""Packages whose versions a result's setup may record, in the report's order."""

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


# ------------------------------------------------------------------ the bench model and data


def bench_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """A word-level tokenizer of exactly `vocab_size` tokens with Qwen3's specials and template.

    Whitespace splits words, so token counts are word counts; `<|im_end|>` is eos and
    `<|endoftext|>` pad, as in Qwen3, and the chat template is Qwen3's, so the upstream recipe's
    conversational rows render as they would on the real model. transformers' fast tokenizer
    class needs no torch, so the mlx backend loads the very same files.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tokens = vocabulary(vocab_size, SPECIAL_TOKENS)
    core = Tokenizer(models.WordLevel({t: i for i, t in enumerate(tokens)}, unk_token=ENDOFTEXT))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    core.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        chat_template=QWEN3_CHAT_TEMPLATE,
    )


def model_configs(
    shape: str,
) -> tuple[Qwen3Config, GenerationConfig, PreTrainedTokenizerFast]:
    """The bench model's config, generation config and tokenizer: everything but the weights.

    One definition for both backends, so a cuda and an mlx run describe the same model; each
    backend draws the random weights with its own framework (the values differ, the shapes,
    init distribution, tokenizer and stop ids do not).
    """
    from transformers import GenerationConfig, Qwen3Config

    dims = dict(SHAPES[shape])
    tokenizer = bench_tokenizer(dims["vocab_size"])
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen3Config(
        **dims,
        bos_token_id=ids[ENDOFTEXT],
        eos_token_id=ids[IM_END],
        pad_token_id=ids[ENDOFTEXT],
    )
    generation = GenerationConfig(
        bos_token_id=ids[ENDOFTEXT],
        eos_token_id=[ids[IM_END], ids[ENDOFTEXT]],
        pad_token_id=ids[ENDOFTEXT],
    )
    return config, generation, tokenizer


def data_rows(shape: str) -> int:
    """Synthetic rows per run: enough that no measured step meets an epoch's short batch
    (the cuda fast path's token-sized micro-batches hold a few hundred rows on a GPU)."""
    return 8000 if shape == "qwen3-1.7b" else 512


def write_data(out: Path, plan: BenchPlan) -> Path:
    """Synthetic rows as a prepared-data directory, like `qmd-ft data prepare` writes one.

    `train.jsonl` holds the rows; `val.jsonl` is empty (as prepare leaves it with no val rows),
    so no trainer spends measured time on evaluation.
    """
    rows = synthesize(data_rows(plan.shape), SHAPES[plan.shape]["vocab_size"], plan.seed)
    out.mkdir(parents=True, exist_ok=True)
    with (out / TRAIN_FILE).open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    (out / VAL_FILE).write_text("", encoding="utf-8")
    return out


def prompts(data_dir: Path, n: int) -> list[str]:
    """The first `n` synthetic prompts, rendered as eval renders them."""
    with (data_dir / TRAIN_FILE).open(encoding="utf-8") as f:
        return [json.loads(line)["prompt"] for _, line in zip(range(n), f, strict=False)]


# ------------------------------------------------------------------ the measured recipes

SFT_LORA = {"rank": 16, "alpha": 32, "dropout": 0.0}
"""configs/sft.yaml's adapter (every projection, the default target list)."""

GRPO_LORA = {"rank": 4, "alpha": 8, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
"""configs/grpo.yaml's adapter."""

SFT_TRAINING = {
    "batch_size": 4,
    "gradient_accumulation_steps": 4,
    "learning_rate": 2e-4,
    "max_length": 512,
    "lr_scheduler": "cosine",
}
"""configs/sft.yaml's optimizer and batch (4 x 4 rows per optimizer step)."""


def run_config(model_dir: Path, data_dir: Path, out: Path, **sections: Any) -> Config:
    """A run config on the bench model: logs every step, never checkpoints mid-run."""
    values: dict[str, Any] = {
        "model": {"base": str(model_dir), "output": str(out)},
        "dataset": {"name": str(data_dir), "prompt_field": "prompt"},
        "training": {"logging_steps": 1, "save_steps": 1_000_000},
    }
    for section, keys in sections.items():
        values[section] = {**values.get(section, {}), **keys}
    return load_config(None, values)


def sft_config(model_dir: Path, data_dir: Path, out: Path) -> Config:
    """The SFT run both backends measure: configs/sft.yaml's recipe on the bench model."""
    return run_config(model_dir, data_dir, out, training=SFT_TRAINING, lora=SFT_LORA)


def grpo_config(model_dir: Path, data_dir: Path, out: Path, plan: BenchPlan) -> Config:
    """The GRPO run both backends measure: configs/grpo.yaml's recipe, with all of a step's
    completions in one micro-batch (the accumulation split only costs time)."""
    training = {
        "batch_size": plan.completions_per_step,
        "learning_rate": 5e-7,
        "max_grad_norm": 0.5,
    }
    grpo = {
        "num_generations": plan.num_generations,
        "max_completion_length": plan.gen_tokens,
        "beta": 0.04,
    }
    return run_config(model_dir, data_dir, out, training=training, grpo=grpo, lora=GRPO_LORA)


# ------------------------------------------------------------------ results


def steady(values: list[float], warmup: int) -> list[float]:
    """The values after the first `warmup` (all of them when nothing would be left)."""
    return values[warmup:] if len(values) > warmup else values


def sft_result(times: list[float], tokens: list[float], warmup: int) -> dict[str, Any]:
    """Steady real tokens/s of one SFT run from its step times and real tokens per step."""
    times = times[: len(tokens)]
    rate = sum(steady(tokens, warmup)) / sum(steady(times, warmup))
    return {
        "sft_real_tokens_per_s": round(rate, 1),
        "sft_step_s": [round(t, 3) for t in times],
        "sft_tokens_per_step": [int(t) for t in tokens],
    }


def grpo_result(
    times: list[float], log_history: list[dict[str, Any]], warmup: int
) -> dict[str, Any]:
    """Steady seconds per optimizer step of one GRPO run, and its completion lengths."""
    lengths = [e["completions/mean_length"] for e in log_history if "completions/mean_length" in e]
    return {
        "grpo_step_s": round(statistics.median(steady(times, warmup)), 3),
        "grpo_step_s_all": [round(t, 3) for t in times],
        "grpo_mean_completion_len": round(statistics.fmean(lengths), 1) if lengths else None,
    }


def gen_result(made: int, timings: list[float]) -> dict[str, Any]:
    """Generation tokens/s of the second of two equal calls; the first (warmup) apart."""
    return {
        "gen_tokens_per_s": round(made / timings[1], 1),
        "gen_first_call_s": round(timings[0], 2),
    }


def cuda_visible() -> bool:
    """True when torch is installed and sees a CUDA device (imports torch only to ask)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def mlx_gpu_visible() -> bool:
    """True when mlx is installed with a GPU (Metal) device (imports mlx only to ask)."""
    try:
        import mlx.core as mx
    except ImportError:
        return False
    return bool(mx.is_available(mx.gpu))


BACKENDS = ("cuda", "mlx")


def run_bench(plan: BenchPlan, backend: str = "cuda") -> dict[str, Any]:
    """Measure `plan` with the named backend; the result dict of `report`'s input."""
    plan.check()
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend}: bench measures {' or '.join(BACKENDS)}")
    if backend == "mlx" and plan.speed:
        raise UserError("--speed: the mlx backend has no speed switches (they are cuda's)")
    get_backend(backend)  # a one-line error when its packages are missing
    if backend == "cuda":
        from qmd_ft.backends.cuda.bench import measure
    else:
        from qmd_ft.backends.mlx.bench import measure

    result = measure(plan)
    result["setup"] = {"backend": backend, **result["setup"]}
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
    versions = ", ".join(f"{name} {info[name]}" for name in VERSIONED if name in info)
    lines.append("")
    lines.append(
        f"{info.get('backend', 'cuda')} on {info['device']} | shape {info['shape']} "
        f"({info['params']:,} params) | {versions}"
    )
    lines.append("ours: " + ", ".join(f"{k}={v}" for k, v in result["ours_speed"].items()))
    if info.get("upstream_device"):
        lines.append(f"upstream recipe on {info['upstream_device']}")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    """Numbers for the table: thousands separated above 100, three significant digits below."""
    if not isinstance(value, int | float):
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
