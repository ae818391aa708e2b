"""The code a job runs: a wheel of this working tree and the lock's pins, built at submit time.

The job installs exactly what was tried here, uploaded with its inputs: a repo that lives only
on this machine, a private one, or unpushed or uncommitted changes all work, and nothing is
installed by the name `qmd-ft` from an index (a name anyone could register). Its dependencies
come from `requirements.lock`, every one hash-checked. The run's record says which commit the
tree was at and whether it had changes on top.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from qmd_ft.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
LOCK = "requirements.lock"
SOURCES = ("qmd_ft", "backends", "pyproject.toml", LOCK)
"""What the wheel and its pins are built from: changes here make the tree "dirty"."""
WHEEL_ENV = "QMD_FT_JOB_WHEEL"
"""A prebuilt wheel to ship instead of building one (e.g. outside a source checkout)."""


@dataclass(frozen=True)
class Code:
    """The wheel and lock a job installs, and where they came from."""

    wheel: Path
    lock: Path
    commit: str | None
    dirty: bool

    def record(self) -> dict[str, object]:
        """For the run's job.json: what was shipped, from which commit, with changes or not."""
        return {"wheel": self.wheel.name, "lock": LOCK, "git_commit": self.commit,
                "dirty": self.dirty}  # fmt: skip


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout


def _build(out: Path) -> Path:
    """`uv build --wheel` of the project dir (pip's wheel builder where uv is missing)."""
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if Path(uv).is_file():
        command = [uv, "build", "--wheel", "--quiet", "--out-dir", str(out), str(PROJECT_ROOT)]
    else:
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                   str(PROJECT_ROOT)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(out.glob("qmd_ft-*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        last = (done.stderr.strip().splitlines() or ["no wheel written"])[-1][:300]
        raise UserError(f"building the wheel the job installs failed: {last}")
    return wheels[0]


def ship_code(out: Path) -> Code:
    """The wheel (built into `out`, or $QMD_FT_JOB_WHEEL) and the lock a job installs."""
    lock = PROJECT_ROOT / LOCK
    if not (PROJECT_ROOT / "pyproject.toml").is_file() or not lock.is_file():
        raise UserError(
            f"qmd-ft at {PROJECT_ROOT} is not a source checkout, so there is no wheel to build "
            f"or {LOCK} to pin it with: run --hf-jobs from a clone of qmd-ft"
        )
    prebuilt = os.environ.get(WHEEL_ENV)
    if prebuilt:
        wheel = Path(prebuilt)
        if not (wheel.is_file() and wheel.name.startswith("qmd_ft-") and wheel.suffix == ".whl"):
            raise UserError(f"{WHEEL_ENV}={prebuilt}: not a qmd_ft-*.whl file")
    else:
        wheel = _build(out)
    head = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--", *SOURCES)
    commit = head.strip() if head else None
    return Code(wheel=wheel, lock=lock, commit=commit, dirty=commit is None or bool(status))
