"""Submit a qmd-ft command as a Hugging Face Job: upload what it reads, run the same command.

One private dataset repo per namespace (`<ns>/qmd-ft-jobs`) holds every run in its own folder:
`job.json` (what was asked, by which qmd-ft) and `inputs/` in a first commit, then `job.py`,
the job script pinned to that commit, in a second. The job itself is a uv job whose command is
a short bootstrap: download `job.py` at its commit and `uv run` it, so the script's inline
metadata installs qmd-ft. Passing the script as a file instead would make huggingface_hub ship
it through a storage bucket; a repo file keeps the run's inputs, script and outputs together.
HF_TOKEN reaches the job as a secret only.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from qmd_ft import __version__
from qmd_ft.errors import UserError
from qmd_ft.jobs.hub import connect, hub_errors, hub_token
from qmd_ft.jobs.inputs import job_inputs
from qmd_ft.jobs.script import SCRIPT_NAME, package_requirement, render_script

if TYPE_CHECKING:
    from huggingface_hub import JobInfo

BOOTSTRAP = (
    "import sys,subprocess,posixpath,huggingface_hub as h;"
    f"s=h.hf_hub_download(sys.argv[1],posixpath.join(sys.argv[2],{SCRIPT_NAME!r}),"
    "repo_type='dataset',revision=sys.argv[3]);"
    "sys.exit(subprocess.call(['uv','run',s]))"
)
"""`python -c` program run by the job: fetch job.py (repo, folder, commit from argv), uv-run it.

No `/` and under 255 characters: huggingface_hub checks whether each argument is a local
file, and a longer path component makes that check fail on Python < 3.14.
"""

TIMEOUT = re.compile(r"\d+(\.\d+)?[smhd]?")


def check_flavor(flavor: str) -> None:
    """Refuse a hardware flavor the Jobs API does not know (before any upload)."""
    from huggingface_hub import JobHardware

    known = [h.value for h in JobHardware]
    if flavor not in known:
        raise UserError(f"unknown flavor {flavor!r}: choose one of {', '.join(known)}")


def check_timeout(timeout: str) -> None:
    """Accept what the Jobs API accepts: a number of seconds, or with a unit s, m, h or d."""
    if not TIMEOUT.fullmatch(timeout):
        raise UserError(f"--timeout {timeout!r}: expected e.g. 90m, 2h or 3600 (seconds)")


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


def submit_job(
    argv: list[str],
    config_path: Path | None,
    *,
    flavor: str,
    timeout: str,
    namespace: str | None = None,
    extras: Sequence[str] = ("cuda",),
    install: str | None = None,
    required: Sequence[str | Path] = (),
) -> Submission:
    """Run `qmd-ft <argv>` on HF Jobs: check, upload inputs and script, submit.

    `argv` is the command line as typed after `qmd-ft` (`sys.argv[1:]`): the job options
    (--hf-jobs, --flavor, --timeout, --namespace) are dropped, paths are mapped as described in
    `qmd_ft.jobs.inputs`. `config_path` is the command's config (None without one): the files
    its values name are uploaded too. `extras` are qmd-ft's extras the job installs (`hub` is
    always added); `install` overrides which qmd-ft (see `package_requirement`). `required`
    are local paths the command cannot run without (e.g. the prepared data dir): missing ones
    stop the submission here instead of failing the job after its GPU has started. Every
    check runs before the first request.
    """
    hub_token()
    from huggingface_hub import CommitOperationAdd

    check_flavor(flavor)
    check_timeout(timeout)
    missing = [str(p) for p in required if not Path(p).exists()]
    if missing:
        raise UserError(f"{', '.join(missing)} not found: the job reads it, so create it first")
    requirement = package_requirement(extras, install)
    plan = job_inputs(argv, config_path)
    label = _label(plan.command)
    hub = connect(namespace)
    repo = hub.jobs_repo
    folder = f"runs/{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{label}-{secrets.token_hex(3)}"
    record = {
        "command": plan.command,
        "requirement": requirement,
        "submitted_by": f"qmd-ft {__version__}",
        "flavor": flavor,
        "timeout": timeout,
        "inputs": sorted(plan.files),
    }
    with hub_errors(f"upload to {repo}"):
        hub.api.create_repo(repo, repo_type="dataset", private=True, exist_ok=True)
        ops = [
            CommitOperationAdd(f"{folder}/job.json", json.dumps(record, indent=2).encode()),
            *(
                CommitOperationAdd(f"{folder}/inputs/{rel}", str(path))
                for rel, path in sorted(plan.files.items())
            ),
        ]
        inputs = hub.api.create_commit(
            repo, repo_type="dataset", operations=ops, commit_message=f"{folder}: inputs"
        )
        script = render_script(
            requirement=requirement, repo=repo, folder=folder, revision=inputs.oid,
            command=plan.command,
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
            dependencies=["huggingface_hub>=1.0"],
            env={
                "QMD_FT_JOB_REPO": repo,
                "QMD_FT_JOB_FOLDER": folder,
                "QMD_FT_COMMAND": shlex.join(plan.command),
                "PYTHONUNBUFFERED": "1",
            },
            secrets={"HF_TOKEN": hub.token},
            flavor=flavor,
            timeout=timeout,
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
