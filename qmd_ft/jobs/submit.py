"""Submit a qmd-ft command as a Hugging Face Job: upload what it reads, run the same command.

One private dataset repo per namespace (`<ns>/qmd-ft-jobs`) holds every run in its own folder:
`job.json` (what was asked, by which code), `inputs/` and `code/` (a wheel of this working tree
and requirements.lock) in a first commit, then `job.py`, the job script pinned to that commit,
in a second. The job itself is a uv job whose command is a short bootstrap: download `job.py`
at its commit and `uv run` it in its place. Passing the script as a file instead would make
huggingface_hub ship it through a storage bucket; a repo file keeps the run's inputs, code,
script and outputs together. HF_TOKEN reaches the job as a secret only.

Every check (token, flavor, timeout, GPU count, required files, the wheel build) runs before
the first request, so a bad argument costs no upload and no GPU time.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qmd_ft import __version__
from qmd_ft.errors import UserError
from qmd_ft.jobs.code import LOCK, ship_code
from qmd_ft.jobs.hub import connect, hub_errors, hub_token
from qmd_ft.jobs.inputs import job_inputs
from qmd_ft.jobs.manage import run_folder
from qmd_ft.jobs.script import HUB_REQUIREMENT, SCRIPT_NAME, render_script

if TYPE_CHECKING:
    from huggingface_hub import JobInfo

BOOTSTRAP = (
    "import os,sys,posixpath,huggingface_hub as h;"
    f"s=h.hf_hub_download(sys.argv[1],posixpath.join(sys.argv[2],{SCRIPT_NAME!r}),"
    "repo_type='dataset',revision=sys.argv[3]);"
    "os.execvp('uv',['uv','run',s])"
)
"""`python -c` program run by the job: fetch job.py (repo, folder, commit from argv), uv-run it
in this process's place, so the SIGTERM of a timeout or cancel reaches the script.

No `/` and under 255 characters: huggingface_hub checks whether each argument is a local
file, and a longer path component makes that check fail on Python < 3.14.
"""

TIMEOUT = re.compile(r"(?:\d+|\d+\.\d+[smhd]|\d+[smhd])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def check_flavor(flavor: str) -> None:
    """Refuse a hardware flavor the Jobs API does not know (before any upload)."""
    from huggingface_hub import JobHardware

    known = [h.value for h in JobHardware]
    if flavor not in known:
        raise UserError(f"unknown flavor {flavor!r}: choose one of {', '.join(known)}")


def flavor_gpus(flavor: str) -> int:
    """GPUs a flavor has: 0 for cpu-*, N for a `…xN` name (`a10g-largex4`, `h200x8`), else 1."""
    if flavor.startswith("cpu"):
        return 0
    many = re.search(r"x(\d+)$", flavor)
    return int(many[1]) if many else 1


def check_gpus(flavor: str, gpus: int | None) -> int:
    """The DDP process count for `flavor`: `gpus` when it fits, else a one-line error."""
    have = flavor_gpus(flavor)
    if gpus is None:
        return max(have, 1)
    if gpus > max(have, 1):
        raise UserError(
            f"--gpus {gpus}: flavor {flavor} has {have} GPU(s); pick a flavor with more "
            f"(e.g. a10g-largex4, h200x8) or fewer --gpus"
        )
    return gpus


def timeout_seconds(timeout: str) -> int:
    """What the Jobs API makes of `timeout` (seconds, or a number with unit s, m, h or d),
    refused here when it would fail or round to nothing there."""
    if not TIMEOUT.fullmatch(timeout):
        raise UserError(
            f"--timeout {timeout[:40]!r}: expected whole seconds (3600) or a number with a unit "
            "(90m, 1.5h, 2d)"
        )
    unit = timeout[-1] if timeout[-1] in UNITS else "s"
    seconds = int(float(timeout.rstrip("smhd")) * UNITS[unit])
    if seconds < 1:
        raise UserError(f"--timeout {timeout!r}: at least one second")
    return seconds


def check_timeout(timeout: str) -> None:
    """Accept what the Jobs API accepts (see `timeout_seconds`)."""
    timeout_seconds(timeout)


def check_hub_version() -> None:
    """Refuse a huggingface_hub whose Jobs API lacks labels (a TypeError after the uploads)."""
    from importlib.metadata import version

    from packaging.version import Version

    have = version("huggingface_hub")
    need = HUB_REQUIREMENT.split(">=")[1]
    if Version(have) < Version(need):
        raise UserError(
            f"HF Jobs need huggingface_hub>={need} (installed: {have}): "
            f"pip install -U 'huggingface_hub>={need}'"
        )


def _label(command: list[str]) -> str:
    """`train-sft`, `eval`, `export-gguf`: the subcommand words, for the job's name and labels."""
    words = []
    for tok in command:
        if tok.startswith("-") or len(words) == 2:
            break
        words.append(re.sub(r"[^A-Za-z0-9_-]", "", tok))
    return "-".join(w for w in words if w) or "command"


@dataclass(frozen=True)
class Submission:
    """A submitted job and where its run lives in the jobs repo."""

    job: JobInfo
    command: list[str]
    repo: str
    folder: str
    outputs_url: str

    @property
    def resumable(self) -> bool:
        """A training run: cut by a timeout or cancel, `--resume-from` continues it."""
        return self.command[:1] == ["train"]


def submit_job(
    argv: list[str],
    config_path: Path | None,
    *,
    flavor: str,
    timeout: str,
    namespace: str | None = None,
    required: Sequence[str | Path] = (),
    resume: str | None = None,
    sync_seconds: float = 300,
    extras: Sequence[str] = (),
) -> Submission:
    """Run `qmd-ft <argv>` on HF Jobs: check, upload inputs, code and script, submit.

    `argv` is the command line as typed after `qmd-ft` (`sys.argv[1:]`): the job options
    (--hf-jobs, --flavor, --timeout, --namespace, --resume-from) are dropped, paths are mapped
    as described in `qmd_ft.jobs.inputs`. `config_path` is the command's config (None without
    one): the files its values name are uploaded too. `required` are local paths the command
    cannot run without (e.g. the prepared data dir): missing ones stop the submission here
    instead of failing the job after its GPU has started. `resume` is the run folder (in the
    same jobs repo) whose uploaded outputs the job starts from. `extras` are requirements the
    job installs after the lock (llama-cpp-python for GGUF work: it has no wheel to lock).
    """
    hub_token()
    check_hub_version()
    from huggingface_hub import CommitOperationAdd

    check_flavor(flavor)
    seconds = timeout_seconds(timeout)
    missing = [str(p) for p in required if not Path(p).exists()]
    if missing:
        raise UserError(f"{', '.join(missing)} not found: the job reads it, so create it first")
    plan = job_inputs(argv, config_path)
    if resume and "--resume" not in plan.command:
        plan.command.append("--resume")
    label = _label(plan.command)
    with tempfile.TemporaryDirectory(prefix="qmd-ft-wheel-") as tmp:
        code = ship_code(Path(tmp))
        hub = connect(namespace)
        repo = hub.jobs_repo
        resume = run_folder(hub, resume) if resume else None
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        folder = f"runs/{stamp}-{label}-{secrets.token_hex(3)}"
        record = {
            "command": plan.command,
            "code": code.record(),
            "submitted_by": f"qmd-ft {__version__}",
            "flavor": flavor,
            "timeout": timeout,
            "resume_from": resume,
            "extras": list(extras),
            "inputs": sorted(plan.files),
        }
        with hub_errors(f"upload to {repo}"):
            hub.api.create_repo(repo, repo_type="dataset", private=True, exist_ok=True)
            ops = [
                CommitOperationAdd(f"{folder}/job.json", json.dumps(record, indent=2).encode()),
                CommitOperationAdd(f"{folder}/code/{code.wheel.name}", str(code.wheel)),
                CommitOperationAdd(f"{folder}/code/{LOCK}", str(code.lock)),
                *(
                    CommitOperationAdd(f"{folder}/inputs/{rel}", str(path))
                    for rel, path in sorted(plan.files.items())
                ),
            ]
            inputs = hub.api.create_commit(
                repo, repo_type="dataset", operations=ops, commit_message=f"{folder}: inputs"
            )
            script = render_script(
                repo=repo, folder=folder, revision=inputs.oid, command=plan.command,
                wheel=code.wheel.name, lock=LOCK, flavor=flavor, gpus=flavor_gpus(flavor),
                resume=resume, sync_seconds=sync_seconds, extras=extras,
            )  # fmt: skip
            pinned = hub.api.create_commit(
                repo,
                repo_type="dataset",
                operations=[CommitOperationAdd(f"{folder}/{SCRIPT_NAME}", script.encode())],
                commit_message=f"{folder}: job script",
            )
    with hub_errors("run job"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "'HfApi.run_uv_job' is experimental")
        job = hub.api.run_uv_job(
            "python",
            script_args=["-c", BOOTSTRAP, repo, folder, pinned.oid],
            dependencies=[HUB_REQUIREMENT],
            env={
                "QMD_FT_JOB_REPO": repo,
                "QMD_FT_JOB_FOLDER": folder,
                "QMD_FT_COMMAND": shlex.join(plan.command),
                "PYTHONUNBUFFERED": "1",
            },
            secrets={"HF_TOKEN": hub.token},
            flavor=flavor,
            timeout=seconds,
            name=f"qmd-ft-{label}",
            labels={"app": "qmd-ft", "command": label},
            namespace=hub.namespace,
        )
    return Submission(
        job=job,
        command=plan.command,
        repo=repo,
        folder=folder,
        outputs_url=f"{hub.api.endpoint}/datasets/{repo}/tree/main/{folder}/outputs",
    )
