"""`qmd-ft config show|check`."""

from __future__ import annotations

from pathlib import Path

import typer

from qmd_ft.cli.common import console, plain
from qmd_ft.cli.options import SetOpt
from qmd_ft.config import dump_config, load_config

app = typer.Typer(help="Inspect and validate config files.", no_args_is_help=True)


@app.command("show")
def show(file: Path, set_: SetOpt = None) -> None:
    """Print the resolved config: defaults, then FILE, then --set overrides.

    Example: qmd-ft config show configs/sft.yaml --set training.epochs=1
    """
    plain(dump_config(load_config(file, set_)).rstrip())


@app.command("check")
def check(file: Path, set_: SetOpt = None) -> None:
    """Exit 1 naming the key path of any error; exit 0 when the config is valid.

    Example: qmd-ft config check configs/grpo.yaml
    """
    load_config(file, set_)
    console.print(f"{file}: ok")
