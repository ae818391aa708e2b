"""`qmd-ft data …`: validate, prepare, stats, variants, clean, generate, import-hf."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from qmd_ft.cli.common import console, err_console, plain, print_json
from qmd_ft.data.clean import clean
from qmd_ft.data.generate import (
    CATEGORIES,
    DEFAULT_MIN_SCORE,
    GenerateStats,
    Verdict,
    check_categories,
    generate,
    make_client,
)
from qmd_ft.data.import_hf import columns, import_rows, load_rows, resolve_mapping, row_locator
from qmd_ft.data.migrate import migrate_only
from qmd_ft.data.prepare import DataErrors, prepare
from qmd_ft.data.reader import DEFAULT_GLOB, resolve_paths
from qmd_ft.data.stats import compute_stats
from qmd_ft.data.term_senses import load_senses
from qmd_ft.data.validate import read_all, validate
from qmd_ft.data.variants import only_variants
from qmd_ft.errors import UserError
from qmd_ft.outputs import check_output_dir, check_output_file

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
    result = read_all(_inputs_for(paths, out))
    _stop_on(result.errors, f"{len(result.errors)} invalid line(s) in the inputs")
    records = [v.to_record() for r in result.rows for v in only_variants(r.example, wanted)]
    _write_jsonl(out, records)
    console.print(f"{len(records)} variant(s) from {len(result.rows)} example(s) → {out}")


@app.command("migrate-only")
def migrate_only_cmd(
    paths: Annotated[list[str], typer.Argument(help="Files in QMD's `x only: lex` spelling.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output JSONL (a new file).")],
) -> None:
    """Rewrite `query only: lex` rows (QMD's handcrafted file) to `query /only:lex`.

    Rubric v1 only reads ` /only:`; other rows are copied as they are. Nothing is written when
    a row is still invalid after the rewrite, and never over an input.

    Example: qmd-ft data migrate-only qmd_expansion_handcrafted_only.jsonl -o data/qmd_only.jsonl
    """
    result = migrate_only(_inputs_for(paths, out))
    n = len(result.problems)
    _stop_on(result.problems, f"{n} invalid line(s) after migrating; nothing written")
    _write_jsonl(out, [e.to_record() for e in result.examples])
    console.print(
        f"{result.rewritten} of {len(result.examples)} row(s) rewritten to /only: form → {out}"
    )


def _inputs_for(paths: list[str], out: Path) -> list[Path]:
    """The input files of a command that writes OUT: found, none of them OUT, OUT writable."""
    files = resolve_paths(paths)
    _refuse_input_as_output(out, files)
    check_output_file(out)
    return files


def _stop_on(problems: list, message: str) -> None:
    """Print every problem (FILE:LINE: reason) and stop with `message`, before any write."""
    if problems:
        for p in problems:
            plain(str(p))
        raise UserError(message)


def _refuse_input_as_output(out: Path, inputs: list[Path]) -> None:
    """Outputs go to a new file: rewriting an input in place loses it if the run goes wrong."""
    if any(out.resolve() == f.resolve() for f in inputs):
        raise UserError(f"{out}: refusing to overwrite an input file")


def _write_jsonl(out: Path, records: list[dict[str, str]]) -> None:
    """Write all records through a temporary file, so OUT is either complete or untouched.

    The temporary file goes away if the write fails (full disk, OUT turned into a directory
    meanwhile): a stray `OUT.tmp` would be picked up by the next `data/*` glob.
    """
    tmp = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as f:
            for rec in records:
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def _counts(counter: Counter[str]) -> str:
    """`a: 2, b: 1` (most common first), or nothing for an empty counter."""
    return ", ".join(f"{k}: {n}" for k, n in counter.most_common())


@contextmanager
def _progress(description: str, total: int | None) -> Iterator[Progress]:
    """A progress bar on stderr that disappears when done (stdout keeps only the report)."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        # Off a terminal a transient bar leaves only a blank line, e.g. before an error line.
        disable=not err_console.is_terminal,
    )
    with progress:
        progress.add_task(description, total=total)
        yield progress


@app.command("clean")
def clean_cmd(
    paths: Annotated[list[str], typer.Argument(help="Files, dirs or globs.")],
    fix: Annotated[
        bool, typer.Option("--fix", help="Write kept and corrected rows to -o (never in place).")
    ] = False,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Output JSONL for --fix.")] = None,
    terms: Annotated[
        Path | None, typer.Option("--terms", help="Extra term senses (YAML, same shape).")
    ] = None,
) -> None:
    """Flag expansions that misread a technical term (gem → gemstone); exit 1 on findings.

    A term counts as technical when the query's other words say so ("ruby gem install").
    --fix drops the misread lines (or the row, when what is left is not a valid example).

    Example: qmd-ft data clean data/*.jsonl --fix -o data/cleaned.jsonl
    """
    if fix and out is None:
        raise UserError("--fix needs -o OUT: clean never rewrites its input")
    if out is not None and not fix:
        raise UserError("-o is only written with --fix")
    files = resolve_paths(paths)
    if out is not None:
        _refuse_input_as_output(out, files)
        check_output_file(out)
    senses = load_senses(terms)
    total = sum(f.read_bytes().count(b"\n") for f in files)
    with _progress("cleaning", total) as bar:
        result = clean(files, senses, on_item=lambda: bar.advance(bar.task_ids[0]))
    for p in result.findings:
        plain(str(p))
    n = sum(result.outcomes.values())
    dropped = result.outcomes["dropped"]
    why = f" ({_counts(result.drop_reasons)})" if dropped else ""
    summary = (
        f"{n} row(s) in {len(files)} file(s), {len(result.findings)} finding(s): "
        f"{result.outcomes['kept']} kept, {result.outcomes['fixed']} fixed, {dropped} dropped{why}"
    )
    if out is not None:
        _write_jsonl(out, result.records)
        for p in result.dropped:
            plain(str(p))
        console.print(f"{summary} → {len(result.records)} row(s) in {out}", soft_wrap=True)
        return
    style = "red" if result.findings else "green"
    console.print(f"{summary} (with --fix)", style=style, markup=False, soft_wrap=True)
    if result.findings:
        raise typer.Exit(1)


@app.command("generate")
def generate_cmd(
    count: Annotated[
        int, typer.Option("--count", min=1, help="Target examples in OUT (a rerun continues).")
    ],
    out: Annotated[Path, typer.Option("-o", "--out", help="JSONL to append to.")],
    provider: Annotated[str, typer.Option(help="anthropic or openai (any compatible server).")] = (
        "anthropic"
    ),
    model: Annotated[str | None, typer.Option(help="Model name (default per provider).")] = None,
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="Endpoint: OpenAI-style ends in /v1, Anthropic's not."),
    ] = None,
    category: Annotated[
        list[str] | None,
        typer.Option(help=f"Repeatable; default all: {', '.join(CATEGORIES)}."),
    ] = None,
    min_score: Annotated[
        float, typer.Option("--min-score", min=0, max=100, help="Reject answers scoring below.")
    ] = DEFAULT_MIN_SCORE,
    seed: Annotated[int, typer.Option(help="Order in which template queries are drawn.")] = 0,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds per request.")] = 60.0,
    retries: Annotated[
        int, typer.Option(min=0, help="Retries per request (429/5xx/timeouts).")
    ] = 5,
    terms: Annotated[
        Path | None, typer.Option("--terms", help="Extra term senses (see `data clean`).")
    ] = None,
) -> None:
    """Ask an LLM to expand template queries; keep only answers that pass schema and reward.

    The API key comes from ANTHROPIC_API_KEY / OPENAI_API_KEY (optional with --base-url).
    Each kept example is appended and synced at once: an interrupted run leaves a valid file,
    and running the same command again continues to --count.

    Example: qmd-ft data generate --count 50 --provider openai --base-url URL -o data/new.jsonl
    """
    check_output_file(out)
    categories = category or list(CATEGORIES)
    check_categories(categories)
    senses = load_senses(terms)
    client = make_client(
        provider,
        model,
        base_url,
        timeout=timeout,
        retries=retries,
        notify=lambda msg: err_console.print(f"retry: {msg}", markup=False),
    )
    stats = GenerateStats()
    with _progress("generating", count) as bar:

        def on_result(query: str, verdict: Verdict) -> None:
            if verdict.record is None:
                plain(f"rejected {query!r}: {verdict.reason}: {verdict.detail}")
            bar.update(bar.task_ids[0], completed=stats.total)

        try:
            generate(
                client,
                out,
                count,
                categories,
                min_score=min_score,
                seed=seed,
                senses=senses,
                stats=stats,
                on_result=on_result,
            )
        except KeyboardInterrupt:
            stats.stopped = "interrupted"
        except UserError:
            _generate_summary(stats, out)
            raise
    _generate_summary(stats, out)
    if stats.stopped == "interrupted":
        err_console.print(f"interrupted: {out} is valid; run again to continue", soft_wrap=True)
        raise typer.Exit(130)
    if stats.stopped:
        raise UserError(f"{stats.stopped}; run again to continue")


def _generate_summary(stats: GenerateStats, out: Path) -> None:
    """Printed however the run ended, so an aborted run still says what it wrote."""
    rejected = sum(stats.rejected.values())
    why = f" ({_counts(stats.rejected)})" if rejected else ""
    if stats.repaired_tail:
        err_console.print(
            f"{out}: removed an incomplete last line left by an interrupted run", soft_wrap=True
        )
    console.print(
        f"{stats.requests} answer(s) requested: {stats.kept} kept, {rejected} rejected{why}; "
        f"{out} holds {stats.total}/{stats.target} example(s)",
        markup=False,
        soft_wrap=True,
    )


@app.command("import-hf")
def import_hf_cmd(
    dataset: Annotated[str, typer.Argument(help="Hub id, saved dataset dir, data dir or file.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Output JSONL.")],
    split: Annotated[str, typer.Option(help="Split to read (hub ids and saved dataset dicts).")] = (
        "train"
    ),
    query_field: Annotated[
        str | None, typer.Option("--query-field", help="Column holding the query.")
    ] = None,
    output_field: Annotated[
        str | None,
        typer.Option("--output-field", help="Column holding the expansion (text or per type)."),
    ] = None,
) -> None:
    """Turn a Hugging Face dataset of queries/expansions into our schema.

    Every row is written or listed with where it is (FILE:LINE for .jsonl, else SOURCE row N)
    and why it was skipped.

    Example: qmd-ft data import-hf user/dataset --split train -o data/imported.jsonl
    """
    source = Path(dataset)
    if source.exists():
        _refuse_input_as_output(out, [source])
    check_output_file(out)
    rows = load_rows(dataset, split)
    mapping = resolve_mapping(columns(rows), query_field, output_field)
    err_console.print(mapping.describe(), markup=False)
    with _progress("importing", len(rows)) as bar:
        result = import_rows(
            rows,
            mapping,
            on_row=lambda: bar.advance(bar.task_ids[0]),
            where=row_locator(dataset, rows),
        )
    for where, reason in result.skipped:
        plain(f"{where}: skipped: {reason}")
    skipped = len(result.skipped)
    why = f" ({_counts(result.reasons)})" if skipped else ""
    summary = f"{result.rows} row(s): {len(result.records)} imported, {skipped} skipped{why}"
    if not result.records:
        raise UserError(f"{summary}: nothing to write")
    _write_jsonl(out, result.records)
    console.print(f"{summary} → {out}", markup=False, soft_wrap=True)
