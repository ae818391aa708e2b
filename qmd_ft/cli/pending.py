"""Commands of the CLI contract whose issues have not landed: full signatures, exit 1.

Each says which issue brings it, so `--help` already documents the whole interface.
"""

from __future__ import annotations

from typing import Annotated

import typer

from qmd_ft.cli.common import not_available

Json = Annotated[bool, typer.Option("--json")]


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
