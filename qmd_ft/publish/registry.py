"""Where releases live: one interface over the Hugging Face Hub and a local directory.

The local registry has the Hub's layout (`ROOT/owner/name/<files>`) and keeps a commit log,
so the demo and offline users run the very same gate and release code as a Hub release.

A release is one whole replacement: the files of the new release, and nothing left over from
the one before (a stale `model.safetensors` beside new shards would be loaded instead of them).
It is pinned to the revision the gate read (`parent`), so a release landing in between makes
the upload fail instead of being silently overwritten by a model gated against another one.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final, Protocol

from qmd_ft.errors import UserError

EVAL_FILE = "eval_results.json"
RETRIEVAL_FILE = "retrieval_results.json"
STAGE_SUFFIX = re.compile(r"-(v\d+|sft|grpo)$", re.IGNORECASE)
NAME_PART = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?")
"""One owner or name: the Hub's rule (letters, digits, `_.-`, not starting or ending with
`.`/`-`), which also keeps `.`, `..` and hidden names out of a local registry's folders."""

UNPINNED: Final = "<unpinned>"
"""`parent` for an upload that replaces whatever is there (the demo's baseline deploy)."""

LOG = ".commits.jsonl"


def check_repo_name(repo: str, force: bool = False) -> None:
    """One destination repo: `owner/name`, and no `-v2`/`-sft`/`-grpo` names unless forced."""
    parts = repo.split("/")
    if len(parts) != 2 or not all(NAME_PART.fullmatch(p) and ".." not in p for p in parts):
        raise UserError(
            f"repo {repo[:200]!r}: expected owner/name (letters, digits, '_', '-', '.'; "
            "not starting or ending with '.' or '-', no '..')"
        )
    if STAGE_SUFFIX.search(repo) and not force:
        raise UserError(
            f"repo {repo!r} has a version or stage suffix: releases go to one repo "
            "(e.g. tobil/qmd-query-expansion-1.7B); pass --force to override"
        )


def stale_parent_error(repo: str) -> UserError:
    """The one line for a release that lost the race against another one."""
    return UserError(
        f"{repo} changed since the gate read it (another release landed): nothing was "
        "uploaded; run publish again to gate against the new deployed model"
    )


class Registry(Protocol):
    """What the release flow needs from a model registry."""

    name: str

    def head(self, repo: str) -> str | None:
        """The repo's current revision, or None when it does not exist or has no commit."""

    def exists(self, repo: str, revision: str | None = None) -> bool:
        """Whether the repo holds a released model."""

    def fetch_file(self, repo: str, filename: str, revision: str | None = None) -> Path | None:
        """A local copy of one file of the repo, or None when absent."""

    def download(self, repo: str, revision: str | None = None) -> Path:
        """A local snapshot of the whole repo (to evaluate the deployed model)."""

    def upload(
        self, repo: str, files: dict[str, Path], message: str, parent: str | None = UNPINNED
    ) -> str:
        """Make `files` (path in repo → local file) the repo's whole content in one commit.

        `parent` is the revision the caller's decision was based on (None: the repo was
        empty); the upload fails with a UserError when the repo has moved on since.
        Returns the new commit reference.
        """


class LocalRegistry:
    """A directory registry with the Hub's layout and a `.commits.jsonl` log per repo.

    A release is swapped in by renames under a per-repo lock: the new files are written to a
    private staging folder, the deployed folder is renamed aside (`.NAME.old`), the staging
    folder renamed in, and the old one removed. A kill at any point leaves either release
    whole: the next access (under the lock) puts an old release that was set aside back when
    no new one made it in, and removes leftovers of the swap and of dead stagings.
    """

    name = "local"

    def __init__(self, root: Path):
        self.root = Path(root)

    def _dir(self, repo: str) -> Path:
        check_repo_name(repo, force=True)
        path = self.root / repo
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise UserError(f"repo {repo!r} leads outside the registry {self.root}")
        return path

    @staticmethod
    def _aside(dest: Path) -> Path:
        return dest.with_name(f".{dest.name}.old")

    @contextlib.contextmanager
    def _locked(self, repo: str) -> Iterator[Path]:
        """Hold the repo's lock (waiting for another publish to finish), recovered first."""
        import fcntl

        dest = self._dir(repo)
        if not dest.parent.is_dir():
            yield dest  # nothing to lock or recover; a read creates no folders
            return
        with open(dest.with_name(f".{dest.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self._recover(dest)
                yield dest
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _recover(self, dest: Path) -> None:
        """Finish or undo a swap a killed publish left behind (the lock is held)."""
        aside = self._aside(dest)
        if aside.exists():
            if dest.exists():
                shutil.rmtree(aside)  # the new release made it in; the old one goes
            else:
                os.rename(aside, dest)  # killed between the two renames: the old one is back
        for stale in dest.parent.glob(f".{dest.name}.staging-*"):
            shutil.rmtree(stale, ignore_errors=True)  # only the lock holder stages

    def _head(self, dest: Path) -> str | None:
        try:
            lines = (dest / LOG).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return None
        try:
            return str(json.loads(lines[-1])["commit"]) if lines else None
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(
                f"{dest / LOG}: unreadable commit log (edited by hand?): restore it, or move the "
                "repo folder away to publish into a fresh one"
            ) from e

    def head(self, repo: str) -> str | None:
        with self._locked(repo) as dest:
            return self._head(dest) if dest.is_dir() else None

    def _at(self, repo: str, revision: str | None) -> Path:
        """The repo folder, checked to still be at `revision` when one is given."""
        with self._locked(repo) as dest:
            if revision is not None and self._head(dest) != revision:
                raise stale_parent_error(repo)
            return dest

    def exists(self, repo: str, revision: str | None = None) -> bool:
        dest = self._at(repo, revision)
        return (dest / "config.json").is_file() or any(dest.glob("*.gguf"))

    def fetch_file(self, repo: str, filename: str, revision: str | None = None) -> Path | None:
        p = self._at(repo, revision) / filename
        return p if p.is_file() else None

    def download(self, repo: str, revision: str | None = None) -> Path:
        dest = self._at(repo, revision)
        if not dest.is_dir():
            raise UserError(f"{self.root}: no repo {repo}")
        return dest

    def upload(
        self, repo: str, files: dict[str, Path], message: str, parent: str | None = UNPINNED
    ) -> str:
        for name in files:
            if name.startswith(("/", ".")) or ".." in Path(name).parts:
                raise UserError(f"{name!r}: not a file name a release can hold")
        self._dir(repo).parent.mkdir(parents=True, exist_ok=True)
        with self._locked(repo) as dest:
            head = self._head(dest) if dest.is_dir() else None
            if parent != UNPINNED and head != parent:
                raise stale_parent_error(repo)
            staging = Path(
                tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.staging-{os.getpid()}-")
            )
            try:
                for path_in_repo, local in files.items():
                    target = staging / path_in_repo
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(local, target)
                commit = f"local-{time.time_ns():x}-{secrets.token_hex(4)}"
                entry = {"commit": commit, "message": message, "files": sorted(files)}
                history = (dest / LOG).read_bytes() if (dest / LOG).is_file() else b""
                line = json.dumps(entry, ensure_ascii=False) + "\n"
                (staging / LOG).write_bytes(history + line.encode())
                if dest.exists():
                    os.rename(dest, self._aside(dest))
                os.rename(staging, dest)
            except BaseException:
                self._recover(dest)  # the release as it was, and no staging left
                raise
            self._recover(dest)  # removes the old release, now set aside
        return commit
