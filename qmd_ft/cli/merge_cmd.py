"""`qmd-ft merge`: base + adapters into the one model directory everything downstream reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qmd_ft.backend import get_backend
from qmd_ft.cli.common import plain
from qmd_ft.cli.options import BackendOpt
from qmd_ft.outputs import check_output_dir


def merge(
    base: Annotated[str, typer.Option(help="Base model dir or hub id.")],
    adapter: Annotated[list[str], typer.Option(help="Adapter(s), applied in order.")],
    out: Annotated[Path, typer.Option("-o", "--out")],
    backend: BackendOpt = "auto",
) -> None:
    """Merge base + SFT (+ GRPO) adapters into one safetensors model directory.

    Example: qmd-ft merge --base Qwen/Qwen3-1.7B --adapter outputs/sft -o outputs/merged
    """
    check_output_dir(out)  # before loading and merging, not after
    path = get_backend(backend).merge(base, adapter, out)
    plain(f"merged {base} + {len(adapter)} adapter(s) -> {path}")
