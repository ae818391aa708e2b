"""The run configs both backends measure: QMD's configs/sft.yaml and configs/grpo.yaml recipes on
the bench model, through the same `Config` that `qmd-ft train` reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qmd_ft.bench.plan import BenchPlan
from qmd_ft.config import Config, load_config

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
