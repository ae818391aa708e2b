"""The `qmd-ft` command line: one typer app assembled from one module per command group."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from qmd_ft import __version__
from qmd_ft.cli import (
    bench_cmd,
    compare_cmd,
    config_cmd,
    data,
    demo_cmd,
    doctor_cmd,
    eval_cmd,
    export_cmd,
    jobs_cmd,
    merge_cmd,
    model_cmd,
    pipeline_cmd,
    publish_cmd,
    score_cmd,
    train_cmd,
)
from qmd_ft.cli.common import State, err_console
from qmd_ft.errors import (
    UserError,
    disk_full_line,
    is_transport_error,
    os_error_line,
    out_of_memory_line,
    transport_failure,
)

app = typer.Typer(
    name="qmd-ft",
    help="Train, evaluate, gate, export and publish QMD's query-expansion model.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"qmd-ft {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    """qmd-ft: the QMD query-expansion model, from data to a published GGUF."""
    State.debug = debug


app.add_typer(config_cmd.app, name="config")
app.add_typer(data.app, name="data")
app.add_typer(export_cmd.app, name="export")
app.add_typer(jobs_cmd.app, name="jobs")
app.command("doctor")(doctor_cmd.doctor)
app.command("make-tiny-model")(model_cmd.make_tiny_model)
app.command("score")(score_cmd.score)
app.command("train")(train_cmd.train)
app.command("merge")(merge_cmd.merge)
app.command("eval")(eval_cmd.eval_)
app.command("compare")(compare_cmd.compare_cmd)
app.command("publish")(publish_cmd.publish)
app.command("pipeline")(pipeline_cmd.pipeline)
app.command("demo")(demo_cmd.demo)
app.command("bench")(bench_cmd.bench)


def hoist_debug(argv: list[str]) -> list[str]:
    """`argv` with `--debug` moved to the front, wherever it was typed before a `--`.

    `--debug` is the root callback's option, so click only accepts it before the subcommand;
    users add it at the end of the command that just failed, which must work too.
    """
    end = argv.index("--") if "--" in argv else len(argv)
    if "--debug" not in argv[1:end]:
        return argv
    rest = [a for a in argv[1:end] if a != "--debug"]
    return [argv[0], "--debug", *rest, *argv[end:]]


def error_line(e: BaseException) -> str | None:
    """The one line for an error the user must fix outside qmd-ft, or None for a bug.

    A UserError says it itself; an unreachable server and a file the OS refuses (a directory
    where a file goes, no permission, a full disk) name the address or path and the reason.
    """
    if isinstance(e, UserError):
        return str(e)
    if is_transport_error(e):
        url, reason = transport_failure(e)
        return f"cannot reach {url or 'the server'}: {reason}"
    if isinstance(e, OSError):
        return os_error_line(e)
    return disk_full_line(e) or out_of_memory_line(e)


def main() -> None:
    """Entry point: user errors become one line on stderr and exit 1 (traceback: --debug)."""
    sys.argv[:] = hoist_debug(sys.argv)
    try:
        app()
    except KeyboardInterrupt:
        err_console.print(
            "interrupted: outputs are written whole or not at all; run the same command again "
            "(train: with --resume, to continue from the last checkpoint)",
            markup=False,
            soft_wrap=True,
        )
        sys.exit(130)
    except Exception as e:
        line = None if State.debug else error_line(e)
        if line is None:
            raise
        err_console.print(f"error: {line}", markup=False, soft_wrap=True)
        sys.exit(1)
