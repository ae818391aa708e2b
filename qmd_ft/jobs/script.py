"""The script a job runs, and which qmd-ft it installs.

The script is a PEP 723 file: `uv run job.py` installs the pinned qmd-ft from its inline
metadata; `python job.py` uses the qmd-ft already installed. Either way it downloads the job's
inputs from the jobs dataset repo at a pinned commit, runs the same `qmd-ft` command in that
work dir, and uploads every file the command created or changed next to the inputs, even when
the command failed (checkpoints and logs are what `--resume` and debugging need). It holds no
secret: huggingface_hub reads the token from the HF_TOKEN environment variable.

qmd-ft is installed from the submitting commit when it is pushed and qmd-ft's sources match it,
so the job runs exactly the code that was tried here; a release version or URL can be asked
for instead (QMD_FT_JOB_INSTALL), and an installed release (not a git checkout) pins itself.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

from qmd_ft import __version__
from qmd_ft.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("qmd_ft", "backends", "pyproject.toml")
"""What the installed package is built from: local changes here would not reach the job."""

INSTALL_ENV = "QMD_FT_JOB_INSTALL"
GIT_URL_ENV = "QMD_FT_GIT_URL"
SCRIPT_NAME = "job.py"
WORK_DIR = "qmd-ft-job"


def _git(checkout: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=checkout, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.rstrip()  # keep porcelain status columns (" M path")


def _https(url: str) -> str | None:
    """A remote's URL as a job can fetch it (ssh → https), or None for a local path."""
    if url.startswith(("https://", "http://")):
        return url
    scp = re.fullmatch(r"(?:ssh://)?[\w.-]+@([\w.-]+)[:/](.+)", url)
    return f"https://{scp[1]}/{scp[2]}" if scp else None


def package_requirement(extras: Sequence[str], install: str | None = None) -> str:
    """The PEP 508 requirement that installs this qmd-ft in the job (with `hub`, for the I/O).

    `install` (default: $QMD_FT_JOB_INSTALL) is a version (`0.1.0`, from the package index) or
    a URL (`git+https://github.com/me/qmd-ft@v0.1.0`). Without it: the submitting commit of a
    git checkout, refused when qmd-ft's sources differ from it or it is on no remote branch;
    outside a checkout, the installed version.
    """
    checkout = PROJECT_ROOT
    name = f"qmd-ft[{','.join(sorted({*extras, 'hub'}))}]"
    install = install or os.environ.get(INSTALL_ENV)
    if install:
        if "://" in install:
            return f"{name} @ {install}"
        if re.fullmatch(r"\d[\w.+!-]*", install):
            return f"{name}=={install}"
        raise UserError(
            f"{INSTALL_ENV}={install!r}: expected a version (0.1.0) or a URL (git+https://…@rev)"
        )
    top = _git(checkout, "rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() != checkout.resolve():
        return f"{name}=={__version__}"
    commit = _git(checkout, "rev-parse", "HEAD") or ""
    changed = (_git(checkout, "status", "--porcelain", "--", *SOURCES) or "").splitlines()
    how = f"or set {INSTALL_ENV} to a released version (0.1.0) or a git URL"
    if changed:
        raise UserError(
            f"uncommitted changes in qmd-ft's sources ({changed[0][3:]}"
            f"{f' and {len(changed) - 1} more' if len(changed) > 1 else ''}): the job installs "
            f"qmd-ft at commit {commit[:12]}, without them; commit and push, {how}"
        )
    branches = _git(checkout, "branch", "-r", "--contains", commit, "--format=%(refname:short)")
    if not branches:
        raise UserError(
            f"commit {commit[:12]} is on no remote branch, so the job cannot install it: "
            f"git push, {how}"
        )
    remote = branches.splitlines()[0].split("/")[0]
    url = os.environ.get(GIT_URL_ENV) or _https(_git(checkout, "remote", "get-url", remote) or "")
    if not url:
        raise UserError(
            f"git remote {remote!r} is not an https or ssh URL a job can fetch: "
            f"set {GIT_URL_ENV}=https://github.com/OWNER/qmd-ft"
        )
    return f"{name} @ git+{url}@{commit}"


_BODY = '''

def files(root: Path) -> dict[str, tuple[int, int]]:
    """Size and mtime of every file under root: what the command wrote shows up as a change."""
    out = {}
    for path in root.rglob("*"):
        if path.is_file():
            st = path.stat()
            out[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


def main() -> int:
    """Download the inputs, run the command where they are, upload what it wrote."""
    base = Path(WORK_DIR).resolve()
    snapshot_download(REPO, repo_type="dataset", revision=REVISION, local_dir=base,
                      allow_patterns=[f"{FOLDER}/inputs/*"])
    work = base / FOLDER / "inputs"
    work.mkdir(parents=True, exist_ok=True)
    before = files(work)
    print(f"$ qmd-ft {shlex.join(COMMAND)}", flush=True)
    code = subprocess.call([sys.executable, "-m", "qmd_ft", *COMMAND], cwd=work)
    changed = sorted(p for p, sig in files(work).items() if before.get(p) != sig)
    if changed:
        HfApi().create_commit(
            REPO, repo_type="dataset", commit_message=f"{FOLDER}: outputs (exit {code})",
            operations=[CommitOperationAdd(f"{FOLDER}/outputs/{p}", str(work / p))
                        for p in changed],
        )
        print(f"uploaded {len(changed)} file(s) to {REPO}: {FOLDER}/outputs/", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
'''


def render_script(
    *, requirement: str, repo: str, folder: str, revision: str, command: list[str]
) -> str:
    """The job script: inline metadata pinning qmd-ft, constants, then the fixed `_BODY`.

    Values are written as JSON literals (valid TOML and Python), so no argument can break out
    of its string.
    """
    head = f'''# /// script
# requires-python = ">=3.11"
# dependencies = [{json.dumps(requirement)}]
# ///
"""qmd-ft on Hugging Face Jobs (generated by qmd-ft {__version__}); see qmd_ft/jobs/script.py.

Runs `qmd-ft COMMAND` on the inputs in REPO (dataset) under FOLDER/inputs at commit REVISION,
then uploads what it wrote to FOLDER/outputs. `uv run {SCRIPT_NAME}` installs the pinned qmd-ft;
`python {SCRIPT_NAME}` uses the installed one. The token comes from HF_TOKEN.
"""

import shlex
import subprocess
import sys
from pathlib import Path

from huggingface_hub import CommitOperationAdd, HfApi, snapshot_download

REPO = {json.dumps(repo)}
FOLDER = {json.dumps(folder)}
REVISION = {json.dumps(revision)}
COMMAND = {json.dumps(command)}
WORK_DIR = {json.dumps(WORK_DIR)}
'''
    return head + _BODY
