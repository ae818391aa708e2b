"""The Hugging Face Hub as a registry, through huggingface_hub's own client.

The token comes from HF_TOKEN or the user's `hf auth login`; it is handed to the client only and
never formatted into a message, card or log line. Reads are pinned to a revision (the one the
gate read) and a release is one commit that adds the new files, deletes every file the new
release lacks, and names that revision as its `parent_commit`, so the Hub refuses it when
another release landed in between.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from qmd_ft.errors import UserError, is_transport_error, transport_failure
from qmd_ft.publish.registry import UNPINNED, stale_parent_error

KEEP = frozenset({".gitattributes"})
"""Files the Hub manages itself; a release leaves them in place."""


@contextmanager
def _hub_errors(what: str, repo: str) -> Iterator[None]:
    """HTTP and network failures as one line naming the request and what to do next."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError):
        raise  # an answer ("not there"), which the caller handles
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        if status == 412:
            raise stale_parent_error(repo) from e
        detail = (e.server_message or str(e).splitlines()[0])[:300]
        raise UserError(f"{what} {repo} failed: HTTP {status}: {detail}") from e
    except Exception as e:
        if not is_transport_error(e):
            raise
        url, reason = transport_failure(e)
        raise UserError(
            f"{what} {repo}: cannot reach {url or 'the Hub'}: {reason}; nothing was released, "
            "run the same command again once the network is back"
        ) from e


class HubRegistry:
    """Releases on the Hub (endpoint from HF_ENDPOINT, as the client reads it); new repos are
    created private when `private` (publish.private) is set."""

    name = "hub"

    def __init__(self, token: str | None = None, private: bool = False):
        from huggingface_hub import HfApi

        self._token = token or os.environ.get("HF_TOKEN")
        self.api = HfApi(token=self._token)
        self.private = private

    def head(self, repo: str) -> str | None:
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        try:
            with _hub_errors("read", repo):
                return self.api.repo_info(repo).sha
        except (RepositoryNotFoundError, RevisionNotFoundError):
            return None

    def _files(self, repo: str, revision: str | None) -> list[str]:
        from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

        try:
            with _hub_errors("list", repo):
                return self.api.list_repo_files(repo, revision=revision)
        except (RepositoryNotFoundError, RevisionNotFoundError):
            return []

    def exists(self, repo: str, revision: str | None = None) -> bool:
        files = self._files(repo, revision)
        return "config.json" in files or any(f.endswith(".gguf") for f in files)

    def fetch_file(self, repo: str, filename: str, revision: str | None = None) -> Path | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

        try:
            with _hub_errors("download from", repo):
                path = hf_hub_download(
                    repo, filename, revision=revision, token=self._token, endpoint=self.api.endpoint
                )
                return Path(path)
        except (EntryNotFoundError, RepositoryNotFoundError):
            return None

    def download(self, repo: str, revision: str | None = None) -> Path:
        from huggingface_hub import snapshot_download

        with _hub_errors("download", repo):
            return Path(
                snapshot_download(
                    repo, revision=revision, token=self._token, endpoint=self.api.endpoint
                )
            )

    def upload(
        self, repo: str, files: dict[str, Path], message: str, parent: str | None = UNPINNED
    ) -> str:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        if not self._token and not self.api.token:
            raise UserError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
        with _hub_errors("upload to", repo):
            # `private` applies when the repo is created; an existing repo keeps its visibility.
            self.api.create_repo(repo, exist_ok=True, private=self.private)
            head = self.head(repo)
            current = set(self._files(repo, head)) if head else set()
            # None: the gate saw no release (the repo may exist, holding only what the Hub adds).
            moved = head != parent if parent is not None else bool(current - KEEP)
            if parent != UNPINNED and moved:
                raise stale_parent_error(repo)
            stale = sorted(current - set(files) - KEEP)
            ops = [
                *(
                    CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(local))
                    for name, local in sorted(files.items())
                ),
                *(CommitOperationDelete(path_in_repo=name) for name in stale),
            ]
            info = self.api.create_commit(
                repo, operations=ops, commit_message=message, parent_commit=head
            )
        return info.oid
