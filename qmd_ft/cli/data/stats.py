"""`qmd-ft data stats`: what the training data holds."""

from __future__ import annotations

import json

from rich.table import Table

from qmd_ft.cli.common import console, plain, print_json
from qmd_ft.cli.data.report import Paths
from qmd_ft.cli.options import JsonOpt
from qmd_ft.data.reader import resolve_paths
from qmd_ft.data.stats import compute_stats
from qmd_ft.data.validate import read_all
from qmd_ft.errors import UserError


def stats_cmd(paths: Paths = None, json_: JsonOpt = False) -> None:
    """Counts per file and type, length distributions, short-query and only-mode shares.

    Example: qmd-ft data stats --json
    """
    files = resolve_paths(paths)
    result = read_all(files)
    if result.errors:
        for p in result.errors:
            plain(str(p))
        raise UserError(f"{len(result.errors)} invalid line(s); run `qmd-ft data validate`")
    stats = compute_stats(result.rows)
    if json_:
        print_json(stats)
        return
    table = Table(title=f"{stats['rows']} examples")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    for path, n in stats["per_file"].items():
        table.add_row(f"rows in {path}", str(n))
    for key in ("lines_per_type", "modes", "query_words", "output_chars"):
        table.add_row(key.replace("_", " "), json.dumps(stats[key]))
    table.add_row("short queries (≤2 words)", f"{stats['short_query_share']:.1%}")
    table.add_row("only-mode share", f"{stats['only_mode_share']:.1%}")
    console.print(table)
