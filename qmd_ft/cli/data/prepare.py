"""`qmd-ft data prepare`: the training split every trainer reads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qmd_ft.cli.common import console, plain
from qmd_ft.data.prepare import DataErrors, prepare
from qmd_ft.data.reader import DEFAULT_GLOB, resolve_paths
from qmd_ft.errors import UserError
from qmd_ft.outputs import check_output_dir


def prepare_cmd(
    data: Annotated[str, typer.Option(help="Glob of input files.")] = DEFAULT_GLOB,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("data/train"),
    val_fraction: Annotated[float, typer.Option(min=0.0, max=0.9)] = 0.1,
    seed: Annotated[int, typer.Option(help="Split seed.")] = 42,
    evals: Annotated[Path, typer.Option(help="Eval queries to exclude from training.")] = Path(
        "evals/queries.txt"
    ),
    no_evals: Annotated[
        bool, typer.Option("--no-evals", help="Exclude no eval queries (there is no eval set).")
    ] = False,
) -> None:
    """Validate, normalize, dedupe, exclude eval queries, split, render; deterministic.

    A missing --evals file is an error, not a warning: training on the eval queries would
    make every later eval score look better than the model is.

    Example: qmd-ft data prepare --data 'data/*.jsonl' --out data/train --seed 42
    """
    check_output_dir(out)
    files = resolve_paths([data])
    if not no_evals and not evals.is_file():
        raise UserError(
            f"--evals {evals}: not found; eval queries cannot be excluded from training "
            "(give the eval set, or --no-evals when there is none)"
        )
    try:
        result = prepare(
            files, out, None if no_evals else evals, val_fraction=val_fraction, seed=seed
        )
    except DataErrors as e:
        for p in e.problems:
            plain(str(p))
        raise UserError(f"{len(e.problems)} invalid line(s): fix them, then prepare again") from e
    c = result.info["counts"]
    console.print(
        f"{c['rows_read']} rows from {len(files)} file(s): {c['duplicates_dropped']} duplicate(s) "
        f"dropped, {c['eval_queries_excluded']} eval quer(ies) excluded → "
        f"train {c['train']}, val {c['val']} in {out}/"
    )
