"""`qmd-ft data variants` and `data migrate-only`: rows derived from others, to a new file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qmd_ft.cli.common import console
from qmd_ft.cli.data.report import OutJsonl, stop_on
from qmd_ft.data.migrate import migrate_only
from qmd_ft.data.reader import resolve_paths
from qmd_ft.data.validate import read_all
from qmd_ft.data.variants import only_variants
from qmd_ft.data.writer import check_new_output, write_jsonl
from qmd_ft.errors import UserError


def variants_cmd(
    paths: Annotated[list[str], typer.Argument(help="Files of full examples.")],
    out: OutJsonl,
    types: Annotated[str, typer.Option(help="Comma list of types.")] = "lex,vec,hyde",
) -> None:
    """Write `/only:lex|vec|hyde` examples derived from full ones.

    Example: qmd-ft data variants data/technical.jsonl -o data/technical_only.jsonl
    """
    wanted = [t.strip() for t in types.split(",") if t.strip()]
    bad = [t for t in wanted if t not in ("lex", "vec", "hyde")]
    if bad:
        raise UserError(f"--types: {', '.join(bad)} not one of lex, vec, hyde")
    result = read_all(_inputs_for(paths, out))
    stop_on(result.errors, f"{len(result.errors)} invalid line(s) in the inputs")
    records = [v.to_record() for r in result.rows for v in only_variants(r.example, wanted)]
    write_jsonl(out, records)
    console.print(f"{len(records)} variant(s) from {len(result.rows)} example(s) → {out}")


def migrate_only_cmd(
    paths: Annotated[list[str], typer.Argument(help="Files in QMD's `x only: lex` spelling.")],
    out: OutJsonl,
) -> None:
    """Rewrite `query only: lex` rows (QMD's handcrafted file) to `query /only:lex`.

    Rubric v1 only reads ` /only:`; other rows are copied as they are. Nothing is written when
    a row is still invalid after the rewrite, and never over an input.

    Example: qmd-ft data migrate-only qmd_expansion_handcrafted_only.jsonl -o data/qmd_only.jsonl
    """
    result = migrate_only(_inputs_for(paths, out))
    n = len(result.problems)
    stop_on(result.problems, f"{n} invalid line(s) after migrating; nothing written")
    write_jsonl(out, [e.to_record() for e in result.examples])
    console.print(
        f"{result.rewritten} of {len(result.examples)} row(s) rewritten to /only: form → {out}"
    )


def _inputs_for(paths: list[str], out: Path) -> list[Path]:
    """The input files of a command that writes OUT: found, none of them OUT, OUT writable."""
    files = resolve_paths(paths)
    check_new_output(out, files)
    return files
