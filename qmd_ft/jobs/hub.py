"""One authenticated Hub connection for the jobs commands, and Hub errors as one-line errors.

The token comes from HF_TOKEN or `hf auth login` (huggingface_hub's own lookup). It is handed to
the client, and to a job only as a secret, never formatted into a message, file or job field.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qmd_ft.errors import UserError, is_transport_error, transport_failure

if TYPE_CHECKING:
    from huggingface_hub import HfApi

JOBS_REPO_NAME = "qmd-ft-jobs"
"""Private dataset repo (per namespace) holding each job's inputs, script and outputs."""


@dataclass(frozen=True)
class Hub:
    """The client, its token, and the namespace jobs run in and are listed from."""

    api: HfApi
    token: str
    namespace: str

    @property
    def jobs_repo(self) -> str:
        """`<namespace>/qmd-ft-jobs`: one repo for all runs, one folder per run."""
        return f"{self.namespace}/{JOBS_REPO_NAME}"


def hub_token() -> str:
    """The user's Hub token, or a one-line error saying how to get one."""
    try:
        from huggingface_hub import get_token
    except ImportError as e:
        raise UserError("HF Jobs need huggingface_hub: pip install 'qmd-ft[hub]'") from e
    token = get_token()
    if not token:
        raise UserError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login` "
            "(jobs get it as a secret, never in their command or files)"
        )
    return token


def connect(namespace: str | None = None) -> Hub:
    """Authenticate; the namespace defaults to the token's user (one whoami call)."""
    from huggingface_hub import HfApi

    token = hub_token()
    api = HfApi(token=token)
    if namespace is None:
        with hub_errors("whoami"):
            namespace = str(api.whoami()["name"])
    return Hub(api=api, token=token, namespace=namespace)


@contextmanager
def hub_errors(what: str) -> Iterator[None]:
    """Turn the client's HTTP and connection errors into one line naming the request.

    Offline or behind a broken proxy, the client raises its transport error (e.g. ConnectError:
    Name or service not known) rather than an HTTP error; that is the user's network to fix,
    not a bug, so it gets one line with the Hub's address too.
    """
    from huggingface_hub.errors import HfHubHTTPError

    try:
        yield
    except HfHubHTTPError as e:
        status = e.response.status_code
        if status == 401:
            raise UserError(
                f"{what}: the Hub refused the token (401): check HF_TOKEN or run `hf auth login`"
            ) from e
        if status == 404:
            raise UserError(f"{what}: not found (404)") from e
        detail = e.server_message or str(e).splitlines()[0]
        raise UserError(f"{what} failed: HTTP {status}: {detail}") from e
    except Exception as e:
        if not is_transport_error(e):
            raise
        from huggingface_hub import constants

        url, reason = transport_failure(e)
        raise UserError(
            f"{what}: cannot reach the Hugging Face Hub at {url or constants.ENDPOINT}: {reason}"
        ) from e
