"""The cuda backend: PyTorch + TRL + PEFT on a CUDA GPU, or on the CPU with `--device cpu`.

Modules by what they do: `sft` and `grpo` (the two TRL stages), `training` (what they share),
`preflight` (checks before any stage trains), `merge`, `generate`, `loading` (devices, models,
adapters), `data`, `launch` (multi-GPU). The stage modules are imported when a method runs,
so picking the backend costs no torch import.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from qmd_ft.backend import Generator, TrainRequest
from qmd_ft.config import EvalConfig

REQUIRED = ("torch", "transformers", "trl", "peft", "datasets", "accelerate")


class CudaBackend:
    """`qmd_ft.backend.Backend` on torch/TRL/PEFT."""

    name = "cuda"

    def available(self) -> tuple[bool, str]:
        """Usable when its packages are installed; without a GPU it runs on the CPU."""
        missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"missing {', '.join(missing)}: pip install 'qmd-ft[cuda]'"
        return True, ""

    def check(
        self, stage: str, req: TrainRequest, processes: int = 1, sft_pending: bool = False
    ) -> None:
        """Fail fast on a planned stage's config, paths and device (see `preflight`)."""
        from qmd_ft.backends.cuda.preflight import check_stage

        check_stage(stage, req, processes, sft_pending)

    def sft(self, req: TrainRequest) -> Path:
        """TRL SFT, completion-only loss; LoRA adapter or full model in `req.output_dir`."""
        from qmd_ft.backends.cuda.sft import run_sft

        return run_sft(req)

    def grpo(self, req: TrainRequest) -> Path:
        """TRL GRPO with the qmd_ft reward on the merged SFT weights; a fresh LoRA adapter."""
        from qmd_ft.backends.cuda.grpo import run_grpo

        return run_grpo(req)

    def merge(self, base: str, adapters: list[str], out: Path) -> Path:
        """Base + adapters into one safetensors model dir with tokenizer and manifest."""
        from qmd_ft.backends.cuda.merge import merge

        return merge(base, adapters, out)

    def generator(
        self, model: str, adapters: list[str], gen: EvalConfig, device: str | None = None
    ) -> Generator:
        """Batched HF generation over rendered prompts."""
        from qmd_ft.backends.cuda.generate import make_generator

        return make_generator(model, adapters, gen, device)


BACKEND = CudaBackend()
