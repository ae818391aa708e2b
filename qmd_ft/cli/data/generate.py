"""`qmd-ft data generate`: new examples from an LLM, kept only when schema and reward pass."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from qmd_ft.cli.common import console, err_console, plain
from qmd_ft.cli.data.report import counts
from qmd_ft.cli.progress import progress_bars
from qmd_ft.data.generate import (
    CATEGORIES,
    DEFAULT_MIN_SCORE,
    GenerateStats,
    Verdict,
    check_categories,
    generate,
    make_client,
)
from qmd_ft.data.term_senses import load_senses
from qmd_ft.errors import UserError
from qmd_ft.outputs import check_output_file


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
    with progress_bars() as on_progress:
        on_progress("generating", 0, count)

        def on_result(query: str, verdict: Verdict) -> None:
            if verdict.record is None:
                plain(f"rejected {query!r}: {verdict.reason}: {verdict.detail}")
            on_progress("generating", stats.total, count)

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
            _summary(stats, out)
            raise
    _summary(stats, out)
    if stats.stopped == "interrupted":
        err_console.print(f"interrupted: {out} is valid; run again to continue", soft_wrap=True)
        raise typer.Exit(130)
    if stats.stopped:
        raise UserError(f"{stats.stopped}; run again to continue")


def _summary(stats: GenerateStats, out: Path) -> None:
    """Printed however the run ended, so an aborted run still says what it wrote."""
    rejected = sum(stats.rejected.values())
    why = f" ({counts(stats.rejected)})" if rejected else ""
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
