"""The Hugging Face Hub as a registry, through huggingface_hub's own client.

The token comes from HF_TOKEN or the user's `hf auth login`; it is handed to the client only and
never formatted into a message, card or log line.
"""

from __future__ import annotations

import os
from pathlib import Path

from qmd_ft.errors import UserError


class HubRegistry:
    """Releases on the Hub (endpoint from HF_ENDPOINT, as the client reads it); new repos are
    created private when `private` (publish.private) is set."""

    name = "hub"

    def __init__(self, token: str | None = None, private: bool = False):
        from huggingface_hub import HfApi

        self._token = token or os.environ.get("HF_TOKEN")
        self.api = HfApi(token=self._token)
        self.private = private

    def exists(self, repo: str) -> bool:
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            files = self.api.list_repo_files(repo)
        except RepositoryNotFoundError:
            return False
        return "config.json" in files or any(f.endswith(".gguf") for f in files)

    def fetch_file(self, repo: str, filename: str) -> Path | None:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError

        try:
            return Path(hf_hub_download(repo, filename, token=self._token))
        except (EntryNotFoundError, RepositoryNotFoundError):
            return None

    def download(self, repo: str) -> Path:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo, token=self._token))

    def upload(self, repo: str, files: dict[str, Path], message: str) -> str:
        from huggingface_hub import CommitOperationAdd
        from huggingface_hub.errors import HfHubHTTPError

        if not self._token and not self.api.token:
            raise UserError("no Hugging Face token: set HF_TOKEN or run `hf auth login`")
        try:
            # `private` applies when the repo is created; an existing repo keeps its visibility.
            self.api.create_repo(repo, exist_ok=True, private=self.private)
            ops = [
                CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(local))
                for name, local in sorted(files.items())
            ]
            info = self.api.create_commit(repo, operations=ops, commit_message=message)
        except HfHubHTTPError as e:
            raise UserError(f"upload to {repo} failed: {e.response.status_code} {e}") from e
        return info.oid
