"""Shared by the cuda backend tests: a handful of examples, configs, and a memorized model.

The tiny model is random, so it writes gibberish, every GRPO reward is 0 and nothing can be
checked about stopping or think blocks. `memorized_model` fixes that in seconds: full
fine-tuning at a high learning rate makes it recite the examples below (one with a think
block), so greedy generation has a known right answer and sampled GRPO rollouts earn rewards
that vary. It is built once per session, on disk under pytest's base temp dir.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from qmd_ft.config import Config, load_config
from qmd_ft.data.prepare import TRAIN_FILE, prepare
from qmd_ft.prompt import render_completion, render_prompt

EXAMPLES: list[tuple[str, str]] = [
    (
        "rust error handling",
        "hyde: Rust handles errors with Result and the ? operator.\n"
        "lex: rust Result error handling\nlex: rust question mark operator\n"
        "vec: idiomatic error handling in Rust programs\nvec: how Result and panic differ in Rust",
    ),
    (
        "git rebase vs merge",
        "hyde: git merge keeps history with a merge commit while rebase replays commits.\n"
        "lex: git rebase merge difference\nlex: linear history git rebase\n"
        "vec: when should I use git rebase instead of git merge\n"
        "vec: pros and cons of rebasing versus merging",
    ),
    (
        "sourdough starter feeding",
        "hyde: Feed a sourdough starter daily with equal weights of flour and water.\n"
        "lex: sourdough starter feeding\nlex: levain flour water ratio\n"
        "vec: how often to feed a sourdough starter\nvec: keeping a sourdough culture active",
    ),
    (
        "vim search and replace",
        "hyde: In Vim, :%s/old/new/g replaces every match in the file.\n"
        "lex: vim substitute command\nlex: vim find replace regex\n"
        "vec: how to search and replace text in Vim\nvec: using the substitute command with flags",
    ),
    (
        "kubernetes pod restart loop",
        "hyde: A pod in CrashLoopBackOff keeps restarting because its container exits.\n"
        "lex: CrashLoopBackOff kubernetes\nlex: pod keeps restarting kubectl logs\n"
        "vec: why does my kubernetes pod keep restarting\n"
        "vec: debugging a container that crashes repeatedly",
    ),
    (
        "python async database queries",
        "hyde: Use an async driver such as asyncpg with asyncio and await the queries.\n"
        "lex: python asyncio database\nlex: asyncpg async query\n"
        "vec: how to run database queries asynchronously in Python\n"
        "vec: using async and await with SQL drivers",
    ),
    (
        "Marie Curie discoveries",
        "hyde: Marie Curie discovered polonium and radium and won two Nobel Prizes.\n"
        "lex: Marie Curie radium polonium\nlex: Curie Nobel Prize radioactivity\n"
        "vec: what did Marie Curie discover\nvec: scientific achievements of Marie Curie",
    ),
    (
        "budget spreadsheet template",
        "hyde: A monthly budget spreadsheet lists income, fixed costs, spending and savings.\n"
        "lex: budget spreadsheet template\nlex: monthly expenses tracker\n"
        "vec: a simple spreadsheet to plan my monthly budget\n"
        "vec: how to track personal income and expenses",
    ),
]

THINK_QUERY = "why is the sky blue"
THINK_ANSWER = "lex: sky blue rayleigh scattering\nvec: why the daytime sky looks blue"
THINK_COMPLETION = f"<think>\nLight scattering question.\n</think>\n\n{THINK_ANSWER}"
"""An answer with a think block: the data toolkit refuses such rows, so it is written straight
into the prepared train split, to teach the memorized model to think before it answers."""

RECIPE = {
    "batch_size": 2,
    "gradient_accumulation_steps": 2,
    "epochs": 2,
    "lr_scheduler": "cosine",
    "warmup_ratio": 0.25,
}
"""The training section the recipe tests (CPU and gpu) train with, step for step alike."""

LORA = {"rank": 8, "alpha": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}


def write_examples(path: Path, examples: list[tuple[str, str]] = EXAMPLES) -> Path:
    """The examples as QMD's `{"input", "output"}` JSONL (what `data prepare` reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for query, output in examples:
            f.write(json.dumps({"input": query, "output": output}) + "\n")
    return path


def prepared(root: Path, val_fraction: float = 0.25) -> Path:
    """The examples through `qmd_ft.data.prepare`: `root/prepared` with train/val splits."""
    source = write_examples(root / "raw" / "examples.jsonl")
    return prepare([source], root / "prepared", None, val_fraction=val_fraction, seed=0).out_dir


def make_config(
    base: Path, output: Path, data: Path, lora: dict[str, Any] | None = LORA, **sections: Any
) -> Config:
    """A small-run config on the tiny model; `sections` override keys per section."""
    values: dict[str, Any] = {
        "model": {"base": str(base), "output": str(output)},
        "dataset": {"name": str(data), "prompt_field": "prompt"},
        "training": {
            "batch_size": 4,
            "learning_rate": 5e-3,
            "logging_steps": 1,
            "save_steps": 1000,
            "max_length": 256,
            "lr_scheduler": "constant",
        },
        "lora": lora,
    }
    for section, keys in sections.items():
        values[section] = {**values.get(section, {}), **keys}
    return load_config(None, values)


def memorized_model(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model fully fine-tuned to recite EXAMPLES and the think example (cached)."""
    from qmd_ft.backend import TrainRequest
    from qmd_ft.backends.cuda.sft import run_sft

    root = tmp_path_factory.getbasetemp() / "cuda-memorized"
    out = root / "model"
    if (out / "manifest.json").is_file():
        return out
    data = prepared(root, val_fraction=0.0)
    think = {
        "prompt": render_prompt(THINK_QUERY),
        "completion": render_completion(THINK_COMPLETION),
    }
    with (data / TRAIN_FILE).open("a", encoding="utf-8") as f:
        f.write(json.dumps(think) + "\n")
    # One batch holds every row, so each step is an epoch: 60 steps bring the loss near 0.
    training = {"learning_rate": 3e-3, "batch_size": len(EXAMPLES) + 1, "logging_steps": 10}
    cfg = make_config(tiny_model_dir, out, data, lora=None, training=training)
    return run_sft(TrainRequest(cfg, data, out, device="cpu", max_steps=60))


def log_history(out: Path) -> list[dict[str, Any]]:
    """The logged entries of a finished run (`trainer_state.json` in its output dir)."""
    return json.loads((out / "trainer_state.json").read_text())["log_history"]


def train_steps(
    tiny_model_dir: Path,
    data: Path,
    out: Path,
    speed: Any,
    device: str,
    training: dict[str, Any],
) -> dict[str, list[Any]]:
    """SFT on `training` with the speed switches `speed`; the per-step log (step, loss, lr,
    grad norm) the recipe tests compare between switches."""
    from qmd_ft.backend import TrainRequest
    from qmd_ft.backends.cuda.sft import run_sft

    cfg = make_config(tiny_model_dir, out, data, training=training)
    run_sft(TrainRequest(cfg, data, out, device=device), speed=speed)
    steps = [e for e in log_history(out) if "loss" in e]
    return {
        "steps": [e["step"] for e in steps],
        "loss": [e["loss"] for e in steps],
        "lr": [e["learning_rate"] for e in steps],
        "grad_norm": [e["grad_norm"] for e in steps],
    }
