"""`qmd-ft bench`: the speed of training and generation, on random weights, beside upstream's.

Speed claims in this project are ratios against QMD's upstream recipe measured in the same
session on the same machine (see ../shared/bench/README.md for the H100 anchor). This package
holds what does not need torch, by role: `plan` (what a run measures, the model shapes),
`workload` (the bench model's configs and tokenizer, the synthetic data), `recipes` (the run
configs of the measured recipes), `results` (their arithmetic and the report) and `run` (the
dispatch through the backend registry). The measuring itself is the backend's
(`Backend.bench`: `qmd_ft.backends.cuda.bench`, `qmd_ft.backends.mlx.bench`), through the same
functions `qmd-ft train` and `qmd-ft eval` run. The backends' benches import the role modules,
never this package's dispatch, so nothing here and there imports the other in a cycle.

Random weights change none of the arithmetic, and they never emit a stop token at Qwen3-1.7B's
vocabulary, so every GRPO completion runs to `max_completion_length`, as in the anchor.
"""

from __future__ import annotations

from qmd_ft.bench.plan import (
    PARTS,
    SHAPES,
    BenchPlan,
)
from qmd_ft.bench.recipes import (
    GRPO_LORA,
    SFT_LORA,
    SFT_TRAINING,
    grpo_config,
    run_config,
    sft_config,
)
from qmd_ft.bench.results import (
    METRICS,
    VERSIONED,
    gen_result,
    grpo_result,
    ratios,
    report,
    sft_result,
    steady,
)
from qmd_ft.bench.run import (
    bench_backend,
    run_bench,
)
from qmd_ft.bench.workload import (
    PROMPT_WORDS,
    bench_tokenizer,
    data_rows,
    model_configs,
    prompts,
    synthesize,
    vocabulary,
    write_data,
)

__all__ = [
    "GRPO_LORA",
    "METRICS",
    "PARTS",
    "PROMPT_WORDS",
    "SFT_LORA",
    "SFT_TRAINING",
    "SHAPES",
    "VERSIONED",
    "BenchPlan",
    "bench_backend",
    "bench_tokenizer",
    "data_rows",
    "gen_result",
    "grpo_config",
    "grpo_result",
    "model_configs",
    "prompts",
    "ratios",
    "report",
    "run_bench",
    "run_config",
    "sft_config",
    "sft_result",
    "steady",
    "synthesize",
    "vocabulary",
    "write_data",
]
