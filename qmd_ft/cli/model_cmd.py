"""`qmd-ft make-tiny-model`: the offline tiny Qwen3 used by tests and the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qmd_ft.cli.common import console
from qmd_ft.outputs import check_output_dir


def make_tiny_model(
    out: Annotated[Path, typer.Argument(help="Directory to write.")],
    # The range matches numpy's RandomState (MAX_SEED in qmd_ft.tiny_model, not imported
    # here so `--help` stays fast): a bad seed is bad usage, refused before anything is written.
    seed: Annotated[int, typer.Option(min=0, max=2**32 - 1, help="Weights seed.")] = 0,
) -> None:
    """Build the deterministic tiny Qwen3 model + tokenizer (HF format) offline.

    Example: qmd-ft make-tiny-model outputs/tiny --seed 0
    """
    check_output_dir(out)
    from qmd_ft.tiny_model import build_tiny_model

    path = build_tiny_model(out, seed=seed)
    console.print(f"tiny Qwen3 model written to {path}")
