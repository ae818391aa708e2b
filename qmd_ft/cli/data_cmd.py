"""`qmd-ft data …`: validate, prepare, stats, variants (clean/generate/import-hf later)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from qmd_ft.cli.common import console, err_console, not_available, plain, print_json
from qmd_ft.data.prepare import DataErrors, prepare
from qmd_ft.data.reader import DEFAULT_GLOB, resolve_paths
from qmd_ft.data.stats import compute_stats
from qmd_ft.data.validate import read_all, validate
from qmd_ft.data.variants import only_variants
from qmd_ft.errors import UserError

app = typer.Typer(help="Validate, prepare and inspect training data.", no_args_is_help=True)

Paths = Annotated[list[str] | None, typer.Argument(help="Files, dirs or globs.")]


def _report(problems: list, rows: int, files: int) -> int:
    """Print every problem, then one summary line; return the number of errors."""
    for p in problems:
        plain(str(p))
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    style = "red" if errors else "green"
    console.print(
        f"[{style}]{files} file(s), {rows} valid row(s): {errors} error(s), "
        f"{warnings} warning(s)[/{style}]"
    )
    return errors


@app.command("validate")
def validate_cmd(paths: Paths = None) -> None:
    """Check every line against the schema; print FILE:LINE: reason; exit 1 on any error.

    Example: qmd-ft data validate data/*.jsonl
    """
    files = resolve_paths(paths)
    result = validate(files)
    if _report(result.problems, len(result.rows), len(files)):
        raise typer.Exit(1)


@app.command("prepare")
def prepare_cmd(
    data: Annotated[str, typer.Option(help="Glob of input files.")] = DEFAULT_GLOB,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("data/train"),
    val_fraction: Annotated[float, typer.Option(min=0.0, max=0.9)] = 0.1,
    seed: Annotated[int, typer.Option(help="Split seed.")] = 42,
    evals: Annotated[
        Path | None, typer.Option(help="Eval queries to exclude from training.")
    ] = Path("evals/queries.txt"),
) -> None:
    """Validate, normalize, dedupe, exclude eval queries, split, render; deterministic.

    Example: qmd-ft data prepare --data 'data/*.jsonl' --out data/train --seed 42
    """
    files = resolve_paths([data])
    if evals is not None and not evals.is_file():
        err_console.print(f"warning: {evals} not found: no eval queries excluded")
        evals = None
    try:
        result = prepare(files, out, evals, val_fraction=val_fraction, seed=seed)
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


@app.command("stats")
def stats_cmd(paths: Paths = None, json_: Annotated[bool, typer.Option("--json")] = False) -> None:
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


@app.command("variants")
def variants_cmd(
    paths: Annotated[list[str], typer.Argument(help="Files of full examples.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output JSONL.")],
    types: Annotated[str, typer.Option(help="Comma list of types.")] = "lex,vec,hyde",
) -> None:
    """Write `/only:lex|vec|hyde` examples derived from full ones.

    Example: qmd-ft data variants data/technical.jsonl -o data/technical_only.jsonl
    """
    wanted = [t.strip() for t in types.split(",") if t.strip()]
    bad = [t for t in wanted if t not in ("lex", "vec", "hyde")]
    if bad:
        raise UserError(f"--types: {', '.join(bad)} not one of lex, vec, hyde")
    files = resolve_paths(paths)
    if any(out.resolve() == f.resolve() for f in files):
        raise UserError(f"{out}: refusing to overwrite an input file")
    result = read_all(files)
    if result.errors:
        for p in result.errors:
            plain(str(p))
        raise UserError(f"{len(result.errors)} invalid line(s) in the inputs")
    records = [v.to_record() for r in result.rows for v in only_variants(r.example, wanted)]
    tmp = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    with tmp.open("w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    console.print(f"{len(records)} variant(s) from {len(result.rows)} example(s) → {out}")


@app.command("clean")
def clean_cmd(
    paths: Annotated[list[str], typer.Argument()],
    fix: Annotated[bool, typer.Option("--fix")] = False,
    out: Annotated[Path | None, typer.Option("-o", "--out")] = None,
) -> None:
    """Flag expansions that misread a technical term (gem → gemstone).

    Example: qmd-ft data clean data/*.jsonl --fix -o data/cleaned.jsonl
    """
    not_available("data clean", 10)


@app.command("generate")
def generate_cmd(
    count: Annotated[int, typer.Option("--count")],
    out: Annotated[Path, typer.Option("-o", "--out")],
    provider: Annotated[str, typer.Option()] = "anthropic",
    base_url: Annotated[str | None, typer.Option("--base-url")] = None,
) -> None:
    """Ask an LLM for new validated examples.

    Example: qmd-ft data generate --count 50 --provider openai --base-url URL -o data/new.jsonl
    """
    not_available("data generate", 10)


@app.command("import-hf")
def import_hf_cmd(
    dataset: str,
    out: Annotated[Path, typer.Option("-o", "--out")],
    split: Annotated[str, typer.Option()] = "train",
) -> None:
    """Turn a Hugging Face dataset of queries/expansions into our schema.

    Example: qmd-ft data import-hf user/dataset --split train -o data/imported.jsonl
    """
    not_available("data import-hf", 10)
