"""Where releases live: one interface over the Hugging Face Hub and a local directory.

The local registry has the Hub's layout (`ROOT/owner/name/<files>`) and keeps a commit log,
so the demo and offline users run the very same gate and release code as a Hub release.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from qmd_ft.errors import UserError

if TYPE_CHECKING:
    from qmd_ft.config import PublishConfig

EVAL_FILE = "eval_results.json"
RETRIEVAL_FILE = "retrieval_results.json"
STAGE_SUFFIX = re.compile(r"-(v\d+|sft|grpo)$", re.IGNORECASE)


def check_repo_name(repo: str, force: bool = False) -> None:
    """One destination repo: refuse `-v2`/`-sft`/`-grpo` names unless forced."""
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repo):
        raise UserError(f"repo {repo!r}: expected owner/name")
    if STAGE_SUFFIX.search(repo) and not force:
        raise UserError(
            f"repo {repo!r} has a version or stage suffix: releases go to one repo "
            "(e.g. tobil/qmd-query-expansion-1.7B); pass --force to override"
        )


class Registry(Protocol):
    """What the release flow needs from a model registry."""

    name: str

    def exists(self, repo: str) -> bool:
        """Whether the repo holds a released model."""

    def fetch_file(self, repo: str, filename: str) -> Path | None:
        """A local copy of one file of the repo, or None when absent."""

    def download(self, repo: str) -> Path:
        """A local snapshot of the whole repo (to evaluate the deployed model)."""

    def upload(self, repo: str, files: dict[str, Path], message: str) -> str:
        """Commit `files` (path in repo → local file); returns a commit reference."""


class LocalRegistry:
    """A directory registry with the Hub's layout and a `.commits.jsonl` log per repo."""

    name = "local"

    def __init__(self, root: Path):
        self.root = Path(root)

    def _dir(self, repo: str) -> Path:
        return self.root / repo

    def exists(self, repo: str) -> bool:
        return (self._dir(repo) / "config.json").is_file() or any(self._dir(repo).glob("*.gguf"))

    def fetch_file(self, repo: str, filename: str) -> Path | None:
        p = self._dir(repo) / filename
        return p if p.is_file() else None

    def download(self, repo: str) -> Path:
        if not self._dir(repo).is_dir():
            raise UserError(f"{self.root}: no repo {repo}")
        return self._dir(repo)

    def upload(self, repo: str, files: dict[str, Path], message: str) -> str:
        dest = self._dir(repo)
        staging = dest.with_name(dest.name + ".staging")
        if staging.exists():
            shutil.rmtree(staging)
        if dest.is_dir():
            shutil.copytree(dest, staging)
        staging.mkdir(parents=True, exist_ok=True)
        for path_in_repo, local in files.items():
            target = staging / path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, target)
        log = staging / ".commits.jsonl"
        commit = f"local-{int(time.time() * 1000)}"
        entry = {"commit": commit, "message": message, "files": sorted(files)}
        with log.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        staging.rename(dest)  # the release appears whole or not at all
        return commit


def open_registry(publish: PublishConfig, local: Path | None = None) -> Registry:
    """Where a release goes: `local` (--registry), else `publish.registry`, else the Hub.

    On the Hub, new repos are created private when `publish.private` is set.
    """
    root = local or (Path(publish.registry) if publish.registry else None)
    if root is not None:
        return LocalRegistry(root)
    from qmd_ft.publish.hub import HubRegistry

    return HubRegistry(private=publish.private)
