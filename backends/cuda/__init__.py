"""The cuda backend: PyTorch + TRL + PEFT on a CUDA GPU, or on the CPU with `--device cpu`.

Modules by what they do: `sft` and `grpo` (the two TRL stages), `training` (what they share),
`preflight` (checks before any stage trains), `merge`, `generate`, `loading` (devices, models,
adapters), `data`, `launch` (multi-GPU), `bench`, `doctor`. `BACKEND` names them; each is
imported when its method runs, so picking the backend costs no torch import.
"""

from qmd_ft.backend import LazyBackend

BACKEND = LazyBackend(
    "cuda",
    __name__,
    {
        "check": ".preflight:check_stage",
        "sft": ".sft:run_sft",
        "grpo": ".grpo:run_grpo",
        "merge": ".merge:merge",
        "generator": ".generate:make_generator",
        "bench": ".bench:measure",
        "diagnose": ".doctor:diagnose",
        "launched": ".launch:launched",
        "relaunch": ".launch:relaunch",
    },
)
