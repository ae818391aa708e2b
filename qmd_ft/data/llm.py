"""Chat-completion requests to an LLM, in the Anthropic Messages or OpenAI wire format.

Standard library only (no SDK to install): `openai` covers any compatible server, llama.cpp's
included. Transient failures (429/5xx/timeouts) are retried with exponential backoff,
honouring Retry-After; the API key is sent only in its header and redacted from every message.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from qmd_ft import __version__
from qmd_ft.errors import UserError

PROVIDERS: dict[str, dict[str, str]] = {
    "anthropic": {
        "base_url": "https://api.anthropic.com",
        "model": "claude-sonnet-4-5",
        "key_env": "ANTHROPIC_API_KEY",
    },
    "openai": {
        "base_url": "https://api.openai.com/v1",
        "model": "gpt-4o-mini",
        "key_env": "OPENAI_API_KEY",
    },
}
ANTHROPIC_VERSION = "2023-06-01"
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
MAX_BACKOFF_S = 60.0
MAX_RETRY_AFTER_S = 300.0


class RequestFailed(Exception):
    """A request still failed after every retry (the message says how)."""


class BadResponse(Exception):
    """The server answered 200 with something that is not an answer in its wire format."""


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or HTTP-date), else None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _error_message(body: bytes) -> str:
    """The server's own error message from an error body (both wire formats nest it alike)."""
    text = body.decode("utf-8", "replace")
    try:
        obj = json.loads(text)
        message = obj["error"]["message"] if isinstance(obj.get("error"), dict) else obj["error"]
        text = str(message)
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    text = " ".join(text.split())
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass(frozen=True)
class Client:
    """One provider endpoint, with the retry policy; the key is never shown in its repr."""

    provider: str
    base_url: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    timeout: float = 60.0
    retries: int = 5
    max_tokens: int = 1024
    temperature: float = 0.7
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    notify: Callable[[str], None] | None = field(default=None, repr=False)

    def _request(self, system: str, user: str) -> urllib.request.Request:
        """The POST for one question in this provider's wire format."""
        headers = {"content-type": "application/json", "user-agent": f"qmd-ft/{__version__}"}
        if self.provider == "anthropic":
            url = self.base_url.rstrip("/") + "/v1/messages"
            headers["anthropic-version"] = ANTHROPIC_VERSION
            if self.api_key:
                headers["x-api-key"] = self.api_key
            body: dict[str, Any] = {
                "model": self.model,
                "max_tokens": self.max_tokens,
                "temperature": self.temperature,
                "system": system,
                "messages": [{"role": "user", "content": user}],
            }
        else:
            url = self.base_url.rstrip("/") + "/chat/completions"
            if self.api_key:
                headers["authorization"] = f"Bearer {self.api_key}"
            body = {
                "model": self.model,
                "max_tokens": self.max_tokens,
                "temperature": self.temperature,
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": user},
                ],
            }
        return urllib.request.Request(
            url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST"
        )

    def _answer_text(self, body: bytes) -> str:
        """The answer's text from a 200 body; BadResponse when it isn't one."""
        try:
            obj = json.loads(body)
            if self.provider == "anthropic":
                blocks = obj["content"]
                text = "".join(b["text"] for b in blocks if b.get("type") == "text")
            else:
                text = obj["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            raise BadResponse(f"not a valid {self.provider} answer ({e.__class__.__name__})") from e
        if not isinstance(text, str) or not text.strip():
            raise BadResponse("empty answer")
        return text

    def _redact(self, text: str) -> str:
        """Server messages are shown to the user: a key echoed back must not be."""
        return text.replace(self.api_key, "***") if self.api_key else text

    def complete(self, system: str, user: str) -> str:
        """The model's answer text; retries transient failures, raises on the rest.

        429/5xx/408/409 and timeouts or dropped connections are retried (Retry-After when the
        server sends it, else 1, 2, 4 … s up to a minute); other HTTP errors mean every request
        would fail (bad key, unknown model), so they stop the run with the server's message.
        """
        request = self._request(system, user)
        attempt = 0
        while True:
            wait = min(MAX_BACKOFF_S, 2.0**attempt)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return self._answer_text(response.read())
            except urllib.error.HTTPError as e:
                message = self._redact(_error_message(e.read()))
                if e.code not in RETRY_STATUSES:
                    raise UserError(
                        f"{self.provider} at {self.base_url} answered HTTP {e.code}: {message}"
                    ) from e
                why = f"HTTP {e.code}"
                asked = retry_after_seconds(e.headers.get("retry-after"))
                if asked is not None:
                    wait = min(asked, MAX_RETRY_AFTER_S)
            except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
                why = "timed out" if isinstance(e, TimeoutError) else f"connection: {e}"
            except urllib.error.URLError as e:
                reason = e.reason
                why = "timed out" if isinstance(reason, TimeoutError) else f"connection: {reason}"
            attempt += 1
            if attempt > self.retries:
                raise RequestFailed(f"{why} after {attempt} attempt(s)")
            if self.notify is not None:
                self.notify(f"{why}: retrying in {wait:g}s")
            self.sleep(wait)


def make_client(
    provider: str,
    model: str | None = None,
    base_url: str | None = None,
    *,
    env: Mapping[str, str] = os.environ,
    **options: Any,
) -> Client:
    """A client with defaults filled in; the key comes from the provider's env variable.

    A key is required for the provider's own endpoint; with `--base-url` (a local or other
    compatible server) it is sent when set and left out when not.
    """
    if provider not in PROVIDERS:
        raise UserError(f"--provider: {provider!r} is not one of {', '.join(PROVIDERS)}")
    if base_url is not None and not base_url.startswith(("http://", "https://")):
        raise UserError(f"--base-url: {base_url!r} must start with http:// or https://")
    spec = PROVIDERS[provider]
    key = env.get(spec["key_env"]) or None
    if key is None and base_url is None:
        raise UserError(
            f"set {spec['key_env']} for {provider}, or point --base-url at a compatible server"
        )
    return Client(
        provider=provider,
        base_url=base_url or spec["base_url"],
        model=model or spec["model"],
        api_key=key,
        **options,
    )
