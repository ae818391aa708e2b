"""Commands of the CLI contract whose issues have not landed: full signatures, exit 1.

Each says which issue brings it, so `--help` already documents the whole interface.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qmd_ft.cli.common import not_available

Json = Annotated[bool, typer.Option("--json")]


def merge(
    base: Annotated[str, typer.Option(help="Base model dir or hub id.")],
    adapter: Annotated[list[str], typer.Option(help="Adapter(s), applied in order.")],
    out: Annotated[Path, typer.Option("-o", "--out")],
) -> None:
    """Merge base + SFT (+ GRPO) adapters into one safetensors model directory.

    Example: qmd-ft merge --base Qwen/Qwen3-1.7B --adapter outputs/sft -o outputs/merged
    """
    not_available("merge", 3)


def bench(
    backend: Annotated[str, typer.Option()] = "cuda",
    model_shape: Annotated[str, typer.Option()] = "qwen3-1.7b",
    upstream_recipe: Annotated[bool, typer.Option("--upstream-recipe")] = False,
    json_: Json = False,
) -> None:
    """Measure SFT tokens/s, GRPO s/step and generation tokens/s on random weights.

    Example: qmd-ft bench --backend cuda --upstream-recipe
    """
    not_available("bench", 11)


export_app = typer.Typer(help="Export models for serving.", no_args_is_help=True)


@export_app.command("gguf")
def export_gguf(
    model: Annotated[Path, typer.Option()],
    quant: Annotated[str, typer.Option()] = "f16,q8_0,q4_k_m,q5_k_m",
    out: Annotated[Path | None, typer.Option()] = None,
    no_verify: Annotated[bool, typer.Option("--no-verify")] = False,
) -> None:
    """Write GGUF files (and quantize them) from an HF-format model directory.

    Example: qmd-ft export gguf --model outputs/merged --quant f16,q4_k_m
    """
    not_available("export gguf", 7)


jobs_app = typer.Typer(help="Hugging Face Jobs: list, logs, inspect, cancel.", no_args_is_help=True)


@jobs_app.command("ps")
def jobs_ps() -> None:
    """List your jobs.

    Example: qmd-ft jobs ps
    """
    not_available("jobs ps", 8)


@jobs_app.command("logs")
def jobs_logs(job_id: str, follow: Annotated[bool, typer.Option("--follow")] = False) -> None:
    """Print a job's logs.

    Example: qmd-ft jobs logs 6789abcd --follow
    """
    not_available("jobs logs", 8)


@jobs_app.command("inspect")
def jobs_inspect(job_id: str) -> None:
    """Show a job's status and settings.

    Example: qmd-ft jobs inspect 6789abcd
    """
    not_available("jobs inspect", 8)


@jobs_app.command("cancel")
def jobs_cancel(job_id: str) -> None:
    """Cancel a running job.

    Example: qmd-ft jobs cancel 6789abcd
    """
    not_available("jobs cancel", 8)
