"""`qmd-ft jobs ps | logs | inspect | cancel | pull`, and `--hf-jobs` submission's output."""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from qmd_ft.cli.common import console, plain, print_json
from qmd_ft.cli.options import JsonOpt, NamespaceOpt
from qmd_ft.errors import UserError
from qmd_ft.jobs.hub import connect
from qmd_ft.jobs.manage import (
    JobRow,
    cancel_job,
    inspect_job,
    job_logs,
    list_jobs,
    pull_outputs,
)
from qmd_ft.jobs.submit import submit_job

if TYPE_CHECKING:
    from huggingface_hub import JobInfo

app = typer.Typer(
    help="Hugging Face Jobs: list, logs, inspect, cancel, pull outputs.", no_args_is_help=True
)


SYNC_ENV = "QMD_FT_JOB_SYNC_SECONDS"
"""How often a job commits its outputs while it runs (default 300 seconds)."""


def submit_cli_job(
    argv: list[str],
    config_path: Path | None,
    *,
    flavor: str,
    timeout: str,
    namespace: str | None = None,
    required: Sequence[str | Path] = (),
    resume: str | None = None,
    extras: Sequence[str] = (),
) -> JobInfo:
    """What `--hf-jobs` does on train/eval/export: submit (see `submit_job`), then tell the user.

    Prints the job id, its URL and how to follow and fetch it (with the same --namespace); with
    `--json` in `argv`, one JSON object on stdout instead.
    """
    try:
        sync = float(os.environ.get(SYNC_ENV, "300"))
    except ValueError:
        sync = -1.0
    if not 0 < sync < 1e6:
        raise UserError(f"{SYNC_ENV}={os.environ.get(SYNC_ENV)!r}: expected seconds, e.g. 300")
    sub = submit_job(
        argv, config_path, flavor=flavor, timeout=timeout, namespace=namespace,
        required=required, resume=resume, sync_seconds=sync, extras=extras,
    )  # fmt: skip
    job = sub.job
    if "--json" in sub.command:
        print_json({"job_id": job.id, "url": job.url, "repo": sub.repo, "folder": sub.folder,
                    "outputs": sub.outputs_url})  # fmt: skip
        return job
    ns = f" --namespace {shlex.quote(namespace)}" if namespace else ""
    plain(
        f"job {job.id} submitted ({flavor}, timeout {timeout}): qmd-ft {shlex.join(sub.command)}\n"
        f"  url:     {job.url}\n"
        f"  logs:    qmd-ft jobs logs {job.id} --follow{ns}\n"
        f"  outputs: {sub.outputs_url} (committed while it runs)\n"
        f"  fetch:   qmd-ft jobs pull {job.id}{ns}"
        + (f"\n  resume:  the same command with --resume-from {job.id}" if sub.resumable else "")
    )
    return job


JobId = Annotated[str, typer.Argument(help="Job id, as `qmd-ft jobs ps` shows it.")]

STAGE_STYLE = {"RUNNING": "cyan", "SCHEDULING": "yellow", "COMPLETED": "green", "ERROR": "red"}


@app.command("ps")
def ps(
    all_: Annotated[
        bool, typer.Option("--all", "-a", help="Every job, not only qmd-ft's.")
    ] = False,
    namespace: NamespaceOpt = None,
    json_: JsonOpt = False,
) -> None:
    """List your qmd-ft jobs, newest first.

    Example: qmd-ft jobs ps
    """
    rows = [JobRow.of(job) for job in list_jobs(connect(namespace), every=all_)]
    if json_:
        print_json([asdict(r) for r in rows])
        return
    if not rows:
        console.print("no jobs" + ("" if all_ else " submitted by qmd-ft (--all lists every job)"))
        return
    table = Table(box=None, header_style="bold")
    for column in ("ID", "STATUS", "FLAVOR", "CREATED (UTC)"):
        table.add_column(column, no_wrap=True)  # an id cut short cannot be pasted back
    table.add_column("COMMAND", overflow="fold")
    for r in rows:
        style = STAGE_STYLE.get(r.status, "")
        status = f"[{style}]{r.status}[/{style}]" if style else r.status
        table.add_row(r.id, status, r.flavor, r.created, r.command.replace("[", r"\["))
    console.print(table)


@app.command("logs")
def logs(
    job_id: JobId,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Stream until it ends.")] = False,
    tail: Annotated[int | None, typer.Option(min=1, help="Only the last N lines.")] = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Print a job's logs.

    Example: qmd-ft jobs logs 6789abcd --follow
    """
    for line in job_logs(connect(namespace), job_id, follow=follow, tail=tail):
        plain(line)


@app.command("inspect")
def inspect(job_id: JobId, namespace: NamespaceOpt = None, json_: JsonOpt = False) -> None:
    """Show a job's status, hardware, command and where its outputs go.

    Example: qmd-ft jobs inspect 6789abcd
    """
    job = inspect_job(connect(namespace), job_id)
    row = JobRow.of(job)
    if json_:
        print_json(asdict(row))
        return
    started = f"{job.started_at:%Y-%m-%d %H:%M} UTC" if job.started_at else "-"
    finished = f"{job.finished_at:%Y-%m-%d %H:%M} UTC" if job.finished_at else "-"
    lines = [
        ("id", row.id),
        ("status", row.status + (f" ({row.message})" if row.message else "")),
        ("flavor", row.flavor),
        ("created", f"{row.created} UTC"),
        ("started", started),
        ("finished", finished),
        ("command", row.command),
        ("url", row.url),
        ("outputs", row.outputs or "-"),
        ("secrets", ", ".join(sorted(job.secrets or {})) or "-"),
    ]
    for key, value in lines:
        plain(f"{key + ':':<10}{value}")


@app.command("cancel")
def cancel(job_id: JobId, namespace: NamespaceOpt = None) -> None:
    """Cancel a running job.

    Example: qmd-ft jobs cancel 6789abcd
    """
    row = JobRow.of(cancel_job(connect(namespace), job_id))
    plain(f"job {row.id}: {row.status}")


@app.command("pull")
def pull(
    job_id: JobId,
    out: Annotated[Path, typer.Option(help="Where the command's relative paths land.")] = Path(),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
    namespace: NamespaceOpt = None,
) -> None:
    """Download what a job wrote (e.g. outputs/sft) to the same paths here.

    Example: qmd-ft jobs pull 6789abcd
    """
    files = pull_outputs(connect(namespace), job_id, out, force=force)
    for f in files:
        plain(str(f))
    console.print(f"{len(files)} file(s) from job {job_id}")
