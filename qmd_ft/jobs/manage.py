"""Watch and steer submitted jobs: list, logs, inspect, cancel, and pull their outputs.

Thin wrappers over huggingface_hub's Jobs client that add what qmd-ft knows: its jobs carry the
label `app=qmd-ft` (so `ps` lists only them unless asked for all) and, in their environment,
the command they run and the repo folder holding their inputs and outputs (so `pull` can put
the outputs back at the paths the command wrote them to).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from qmd_ft.errors import UserError
from qmd_ft.jobs.hub import Hub, hub_errors

if TYPE_CHECKING:
    from huggingface_hub import JobInfo

LABEL = {"app": "qmd-ft"}


@dataclass(frozen=True)
class JobRow:
    """One job as `ps` and `inspect` show it (plain values, ready for a table or JSON)."""

    id: str
    status: str
    message: str | None
    flavor: str
    created: str
    command: str
    url: str
    outputs: str | None

    @classmethod
    def of(cls, job: JobInfo) -> JobRow:
        env = job.environment or {}
        command = env.get("QMD_FT_COMMAND")
        if command is not None:
            command = f"qmd-ft {command}"
        else:
            command = " ".join([*(job.command or []), *(job.arguments or [])])
        repo, folder = env.get("QMD_FT_JOB_REPO"), env.get("QMD_FT_JOB_FOLDER")
        return cls(
            id=job.id,
            status=str(getattr(job.status.stage, "value", job.status.stage)),
            message=job.status.message,
            flavor=str(getattr(job.flavor, "value", job.flavor) or "?"),
            created=_when(job.created_at),
            command=command,
            url=job.url,
            outputs=f"{repo}/{folder}/outputs" if repo and folder else None,
        )


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M") if at else "?"


def list_jobs(hub: Hub, every: bool = False) -> list[JobInfo]:
    """The namespace's qmd-ft jobs (all its jobs with `every`), newest first."""
    with hub_errors("list jobs"):
        jobs = list(hub.api.list_jobs(labels=None if every else LABEL, namespace=hub.namespace))
    return sorted(jobs, key=lambda j: j.created_at.timestamp() if j.created_at else 0, reverse=True)


def inspect_job(hub: Hub, job_id: str) -> JobInfo:
    """One job, or a one-line error when the namespace has no such job."""
    with hub_errors(f"job {job_id} in {hub.namespace}"):
        return hub.api.inspect_job(job_id=job_id, namespace=hub.namespace)


def job_logs(hub: Hub, job_id: str, follow: bool = False, tail: int | None = None) -> Iterator[str]:
    """The job's log lines so far; with `follow`, streamed until the job ends."""
    with hub_errors(f"logs of job {job_id} in {hub.namespace}"):
        yield from hub.api.fetch_job_logs(
            job_id=job_id, namespace=hub.namespace, follow=follow, tail=tail
        )


def cancel_job(hub: Hub, job_id: str) -> JobInfo:
    """Cancel the job; returns its state afterwards."""
    with hub_errors(f"cancel job {job_id} in {hub.namespace}"):
        hub.api.cancel_job(job_id=job_id, namespace=hub.namespace)
    return inspect_job(hub, job_id)


def run_folder(hub: Hub, job: str) -> str:
    """The jobs-repo folder of a qmd-ft job (given by id, or as the folder `runs/…` itself)."""
    if job.startswith("runs/"):
        return job
    env = inspect_job(hub, job).environment or {}
    folder = env.get("QMD_FT_JOB_FOLDER")
    if not folder:
        raise UserError(f"job {job} was not submitted by qmd-ft: it has no run folder")
    return folder


def pull_outputs(hub: Hub, job_id: str, out: Path, force: bool = False) -> list[Path]:
    """Download what a qmd-ft job wrote into `out`, at the paths its command wrote them to.

    Refuses to overwrite existing files unless `force`: a pulled adapter silently replacing a
    local one would make later evals lie about which model they measured.
    """
    from huggingface_hub import snapshot_download

    job = inspect_job(hub, job_id)
    env = job.environment or {}
    repo, folder = env.get("QMD_FT_JOB_REPO"), env.get("QMD_FT_JOB_FOLDER")
    if not repo or not folder:
        raise UserError(f"job {job_id} was not submitted by qmd-ft: it has no outputs folder")
    prefix = f"{folder}/outputs/"
    with hub_errors(f"outputs of job {job_id}"):
        listed = hub.api.list_repo_files(repo, repo_type="dataset")
    names = sorted(f.removeprefix(prefix) for f in listed if f.startswith(prefix))
    if not names:
        stage = getattr(job.status.stage, "value", job.status.stage)
        raise UserError(f"job {job_id} has uploaded no outputs yet (status {stage})")
    targets = [out / name for name in names]
    clash = next((t for t in targets if t.exists()), None)
    if clash is not None and not force:
        raise UserError(f"{clash} exists: pass --force to overwrite, or --out another dir")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".qmd-ft-pull-") as tmp:
        with hub_errors(f"download outputs of job {job_id}"):
            snapshot_download(
                repo, repo_type="dataset", allow_patterns=[f"{prefix}*"],
                local_dir=tmp, token=hub.token, endpoint=hub.api.endpoint,
            )  # fmt: skip
        for name, target in zip(names, targets, strict=True):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(Path(tmp, prefix, name), target)
    return targets
