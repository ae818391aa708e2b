"""The small interface every training backend implements, and picking one by name.

Backends live in the top-level `backends/` folder, installed as `qmd_ft.backends` (`.cuda`,
`.mlx`); each exposes `BACKEND`, an object with the methods of `Backend`. Only backends import
torch or mlx, and only when one is picked, so the core stays light.
"""

from __future__ import annotations

import importlib
import platform
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from qmd_ft.config import Config, EvalConfig
from qmd_ft.errors import UserError

BACKENDS = ("cuda", "mlx", "gguf")
"""Training backends are cuda and mlx; gguf (llama-cpp-python) only generates, for eval."""
TRAINING = ("cuda", "mlx")


def choices_help(training: bool = True) -> str:
    """The `--backend` help text, e.g. "auto, cuda or mlx." (with gguf where eval takes it)."""
    names = ["auto", *(TRAINING if training else BACKENDS)]
    return f"{', '.join(names[:-1])} or {names[-1]}."


@dataclass(frozen=True)
class TrainRequest:
    """One training stage: the resolved config, prepared data and where results go."""

    config: Config
    data_dir: Path
    output_dir: Path
    device: str | None = None
    max_steps: int | None = None
    resume: bool = False


Generator = Callable[[list[str]], list[str]]
"""Rendered prompts in, eval texts out: cut at the stop token, special tokens kept, closed think
blocks removed (`qmd_ft.prompt.strip_think`), the same on every backend."""


class Backend(Protocol):
    """What the core needs from a backend."""

    name: str

    def available(self) -> tuple[bool, str]:
        """Whether it can run here, and why not (with the fix) when it can't."""

    def sft(self, req: TrainRequest) -> Path:
        """Supervised fine-tuning; returns the PEFT adapter (or full model) directory."""

    def grpo(self, req: TrainRequest) -> Path:
        """GRPO on the merged SFT weights; returns the new PEFT adapter directory."""

    def merge(self, base: str, adapters: list[str], out: Path) -> Path:
        """Base plus adapters into one HF safetensors model dir with tokenizer."""

    def generator(
        self, model: str, adapters: list[str], gen: EvalConfig, device: str | None = None
    ) -> Generator:
        """A batched generation callable for eval."""


def _cuda_present() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_name(name: str) -> str:
    """`auto`: cuda with a CUDA device, mlx on Apple Silicon, else cuda (it runs on CPU)."""
    if name != "auto":
        if name not in BACKENDS:
            raise UserError(f"unknown backend {name!r}: choose auto, {', '.join(BACKENDS)}")
        return name
    if _cuda_present():
        return "cuda"
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        return "mlx"
    return "cuda"


def get_backend(name: str = "auto") -> Backend:
    """Import and return the named backend; a clear error when its packages are missing."""
    resolved = resolve_name(name)
    try:
        module = importlib.import_module(f"qmd_ft.backends.{resolved}")
    except ImportError as e:
        raise UserError(
            f"backend {resolved!r} cannot load ({e}); install it: pip install 'qmd-ft[{resolved}]'"
        ) from e
    backend: Backend = module.BACKEND
    ok, why = backend.available()
    if not ok:
        raise UserError(f"backend {resolved!r} is not usable here: {why}")
    return backend
