"""`qmd-ft doctor`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from qmd_ft.cli.common import console, print_json


def doctor(json_: Annotated[bool, typer.Option("--json")] = False) -> None:
    """What this machine can run (each backend, GGUF export, HF login) and the fix for each gap.

    Example: qmd-ft doctor
    """
    from qmd_ft.backend import REGISTRY
    from qmd_ft.doctor import run_checks

    checks = run_checks()
    if json_:
        print_json([c.__dict__ for c in checks])
        return
    table = Table(title="qmd-ft doctor")
    for col in ("", "what", "status", "fix"):
        table.add_column(col, overflow="fold")
    for c in checks:
        # Details and fixes are plain text: escaped, so rich keeps `.[cuda]` instead of eating it.
        mark = "[green]✓[/green]" if c.ok else "[red]✗[/red]"
        table.add_row(mark, escape(c.what), escape(c.detail), escape(c.fix))
    console.print(table)
    for spec in REGISTRY:
        console.print(f"--backend {spec.name}: {escape(spec.help)}", highlight=False)
