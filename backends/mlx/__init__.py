"""The mlx backend: MLX + mlx-lm on Apple Silicon, or on any CPU with `mlx[cpu]` (Linux).

Modules by what they do: `sft` (mlx-lm's tuner), `grpo` (our loop) with `grpo_loss` (TRL's
loss and advantages), `generate` (batched KV-cache decoding), `adapters` (mlx-lm ⇄ PEFT),
`fuse` (HF model directories), `models` (loading stacks, adding LoRA), `optim`, `dataset`,
`checkpoints`, `results`, `preflight`, `bench`, `doctor`. `BACKEND` names them; each is
imported when its method runs, so picking the backend (or asking whether it is available)
costs no mlx import.

Adapters are read and written in PEFT format, so the rest of qmd-ft sees one format whichever
backend trained.
"""

from qmd_ft.backend import LazyBackend

BACKEND = LazyBackend(
    "mlx",
    __name__,
    {
        "check": ".preflight:check_stage",
        "sft": ".sft:sft",
        "grpo": ".grpo:grpo",
        "merge": ".fuse:merge",
        "generator": ".generate:make_generator",
        "bench": ".bench:measure",
        "diagnose": ".doctor:diagnose",
    },
)
