"""The mlx backend: MLX + mlx-lm on Apple Silicon, or on any CPU with `mlx[cpu]` (Linux).

Modules by what they do: `sft` (mlx-lm's tuner), `grpo` (our loop) with `grpo_loss` (TRL's
loss and advantages), `generate` (batched KV-cache decoding), `adapters` (mlx-lm ⇄ PEFT),
`fuse` (HF model directories), `models` (loading stacks, adding LoRA), `optim`, `dataset`,
`checkpoints`, `results`. They are imported when a method runs, so picking the backend (or
asking whether it is available) costs no mlx import.

Adapters are read and written in PEFT format, so the rest of qmd-ft sees one format whichever
backend trained.
"""

from __future__ import annotations

import importlib.util
import platform
from pathlib import Path

from qmd_ft.backend import Generator, TrainRequest
from qmd_ft.config import EvalConfig

REQUIRED = ("mlx", "mlx_lm")


class MlxBackend:
    """`qmd_ft.backend.Backend` on MLX and mlx-lm."""

    name = "mlx"

    def available(self) -> tuple[bool, str]:
        """Usable when mlx and mlx-lm are installed (Metal on Apple Silicon, else CPU)."""
        missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
        if missing:
            extra = "mlx[cpu]" if platform.system() == "Linux" else "mlx"
            return False, f"missing {', '.join(missing)}: pip install 'qmd-ft[mlx]' ({extra})"
        return True, ""

    def check(
        self, stage: str, req: TrainRequest, processes: int = 1, sft_pending: bool = False
    ) -> None:
        """Fail fast on a planned stage's model path, device, output dir and batch (one
        process; `sft_pending` needs no check here: the mlx stages load model.sft themselves)."""
        from qmd_ft.backends.mlx.preflight import check_stage

        check_stage(stage, req)

    def sft(self, req: TrainRequest) -> Path:
        """mlx-lm tuner SFT, completion-only loss; PEFT adapter or full model in the output."""
        from qmd_ft.backends.mlx.sft import sft

        return sft(req)

    def grpo(self, req: TrainRequest) -> Path:
        """Our MLX GRPO loop (TRL's loss) on the merged SFT weights; a fresh LoRA adapter."""
        from qmd_ft.backends.mlx.grpo import grpo

        return grpo(req)

    def merge(self, base: str, adapters: list[str], out: Path) -> Path:
        """Base + PEFT adapters fused into one HF safetensors model dir with tokenizer."""
        from qmd_ft.backends.mlx.fuse import merge

        return merge(base, adapters, out)

    def generator(
        self, model: str, adapters: list[str], gen: EvalConfig, device: str | None = None
    ) -> Generator:
        """Batched mlx-lm generation over rendered prompts."""
        from qmd_ft.backends.mlx.generate import make_generator

        return make_generator(model, adapters, gen, device)


BACKEND = MlxBackend()
