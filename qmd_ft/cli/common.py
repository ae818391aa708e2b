"""What every command shares: the consoles, the debug switch, and user-error exits."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from qmd_ft.config import Config, load_config

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False)


class State:
    """Process-wide CLI switches set by the top-level callback."""

    debug: bool = False


def print_json(obj: Any) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else there."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2) + "\n")
    sys.stdout.flush()


def plain(text: str) -> None:
    """Print user data verbatim (no rich markup interpretation of brackets)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def config_or_defaults(path: Path | None, overrides: list[str] | None) -> Config:
    """`--config` and `--set` resolved, or the built-in defaults when neither is given."""
    return load_config(path, overrides) if path or overrides else Config()
