"""`data generate` against a local HTTP server speaking the Anthropic and OpenAI wire formats.

The server runs in a thread on 127.0.0.1 and plays a script per test: good answers, malformed
ones, 429 with Retry-After, 5xx, answers slower than the client's timeout, fatal errors.
Backoff never sleeps for real: the client's sleep function records the waits instead.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from qmd_ft.data.generate import (
    CATEGORIES,
    SYSTEM_PROMPT,
    Client,
    GenerateStats,
    Verdict,
    candidate_queries,
    generate,
    judge,
    make_client,
    retry_after_seconds,
)
from qmd_ft.data.reader import Row, read_examples
from qmd_ft.data.term_senses import load_senses
from qmd_ft.errors import UserError
from qmd_ft.prompt import INSTRUCTION

ROOT = Path(__file__).resolve().parents[1]


def good_answer(query: str) -> str:
    """An expansion that passes the schema and scores well above 70% for template queries."""
    return (
        f"hyde: This passage explains {query} with practical steps, short examples and the "
        "usual pitfalls.\n"
        f"lex: {query} configuration reference\n"
        f"lex: {query} tutorial examples overview\n"
        f"vec: how does {query} work in practice for everyday projects\n"
        f"vec: what should a beginner know about {query} before getting started"
    )


# A step of a server script: ("ok",) answers well; ("text", s) answers s; ("raw", bytes) sends
# a 200 body as is; ("fenced",) a good answer in a markdown fence; ("status", code, headers,
# body) an error; ("slow", seconds) answers well but late.
Step = tuple[Any, ...]


class FakeProvider:
    """A scripted endpoint: steps are used in order, then every request is answered well."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.url = ""
        self.script: list[Step] = []
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()

    def next_step(self) -> Step:
        with self.lock:
            return self.script.pop(0) if self.script else ("ok",)

    def wire(self, text: str) -> bytes:
        if self.provider == "anthropic":
            body: dict[str, Any] = {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
            }
        else:
            body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}
        return json.dumps(body).encode()


def make_handler(fake: FakeProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

        def send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            user = body["messages"][-1]["content"]
            query = user.removeprefix(INSTRUCTION).strip()
            with fake.lock:
                fake.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                        "query": query,
                    }
                )
            step = fake.next_step()
            if step[0] == "ok":
                self.send(200, fake.wire(good_answer(query)))
            elif step[0] == "fenced":
                self.send(200, fake.wire(f"```text\n{good_answer(query)}\n```"))
            elif step[0] == "text":
                self.send(200, fake.wire(step[1]))
            elif step[0] == "raw":
                self.send(200, step[1])
            elif step[0] == "status":
                self.send(step[1], step[3], step[2])
            elif step[0] == "slow":
                time.sleep(step[1])
                self.send(200, fake.wire(good_answer(query)))

    return Handler


@pytest.fixture(params=["anthropic", "openai"])
def server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A FakeProvider for each wire format, served on 127.0.0.1 (proxies bypassed)."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    fake = FakeProvider(request.param)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(fake))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    fake.url = f"http://{host}:{port}" + ("/v1" if request.param == "openai" else "")
    yield fake
    httpd.shutdown()
    httpd.server_close()


def client_for(fake: FakeProvider, waits: list[float] | None = None, **kw: Any) -> Client:
    sleep: Callable[[float], None] = waits.append if waits is not None else _no_sleep
    options = {"timeout": 5.0, "retries": 3, "sleep": sleep, **kw}
    return Client(fake.provider, fake.url, "test-model", api_key="sk-test-secret", **options)


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"unexpected backoff sleep of {seconds}s")


def rows(path: Path) -> list[Row]:
    items = list(read_examples(path))
    assert all(isinstance(i, Row) for i in items), items  # every line valid
    return items  # type: ignore[return-value]


def test_success_writes_valid_examples_in_the_wire_format(server: FakeProvider, tmp_path: Path):
    out = tmp_path / "new.jsonl"
    stats = generate(client_for(server), out, 3, ["technical", "short"])
    assert (stats.kept, stats.requests, sum(stats.rejected.values())) == (3, 3, 0)
    written = rows(out)
    assert [r.example.query for r in written] == [r["query"] for r in server.requests]
    req = server.requests[0]
    if server.provider == "anthropic":
        assert req["path"] == "/v1/messages"
        assert req["headers"]["x-api-key"] == "sk-test-secret"
        assert req["headers"]["anthropic-version"] == "2023-06-01"
        assert req["body"]["system"] == SYSTEM_PROMPT
    else:
        assert req["path"] == "/v1/chat/completions"
        assert req["headers"]["authorization"] == "Bearer sk-test-secret"
        assert req["body"]["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert req["body"]["model"] == "test-model"


def test_malformed_and_weak_answers_are_rejected_never_written(
    server: FakeProvider, tmp_path: Path
) -> None:
    server.script = [
        ("text", "Sure! Here are some expansions:\n- docker logs"),  # schema
        ("text", "lex: pricing plans\nvec: how much it costs"),  # valid, scores < 90%
        ("raw", b"<html>gateway</html>"),  # not JSON
        ("raw", b'{"unexpected": true}'),  # JSON, not the wire format
        ("fenced",),  # a markdown fence around a good answer: accepted
    ]
    seen: list[tuple[str, Verdict]] = []
    out = tmp_path / "new.jsonl"
    stats = generate(
        client_for(server),
        out,
        2,
        ["entities"],
        min_score=90,  # the rubric is lenient: weak answers still score 70-88%
        on_result=lambda q, v: seen.append((q, v)),
    )
    assert stats.rejected == {"schema": 1, "score": 1, "bad response": 2}
    assert stats.kept == 2 and stats.requests == 6
    assert len(rows(out)) == 2
    reasons = [v.detail for _, v in seen if v.record is None]
    assert "does not start with hyde:, lex: or vec:" in reasons[0]
    assert reasons[1].startswith("score ") and "< 90%" in reasons[1]
    assert reasons[2] == f"not a valid {server.provider} answer (JSONDecodeError)"
    assert reasons[3] == f"not a valid {server.provider} answer (KeyError)"


def test_429_honours_retry_after_and_5xx_backs_off(server: FakeProvider, tmp_path: Path):
    server.script = [
        ("status", 429, {"retry-after": "7"}, b'{"error": {"message": "slow down"}}'),
        ("status", 503, {}, b"overloaded"),
        ("status", 500, {}, b"oops"),
    ]
    waits: list[float] = []
    out = tmp_path / "new.jsonl"
    stats = generate(client_for(server, waits), out, 1, ["short"])
    assert waits == [7.0, 2.0, 4.0]  # Retry-After, then 2**attempt
    assert stats.kept == 1 and len(server.requests) == 4


def test_timeouts_are_retried_then_give_up_leaving_a_valid_file(
    server: FakeProvider, tmp_path: Path
) -> None:
    waits: list[float] = []
    server.script = [("slow", 0.6)]
    out = tmp_path / "new.jsonl"
    stats = generate(client_for(server, waits, timeout=0.2), out, 1, ["short"])
    assert stats.kept == 1 and waits == [1.0]

    server.script = [("slow", 0.6)] * 3
    stats = generate(client_for(server, waits, timeout=0.2, retries=2), out, 3, ["short"])
    assert stats.kept == 0
    assert stats.stopped is not None and "timed out after 3 attempt(s)" in stats.stopped
    assert len(rows(out)) == 1


def test_fatal_http_error_stops_with_the_server_message_and_no_key(
    server: FakeProvider, tmp_path: Path
) -> None:
    server.script = [("status", 401, {}, b'{"error": {"message": "bad key sk-test-secret"}}')]
    with pytest.raises(UserError, match="HTTP 401: bad key \\*\\*\\*") as e:
        generate(client_for(server), tmp_path / "new.jsonl", 2, ["short"])
    assert "sk-test-secret" not in str(e.value)
    assert "sk-test-secret" not in repr(client_for(server))


def test_interrupted_run_leaves_valid_file_and_rerun_continues(
    server: FakeProvider, tmp_path: Path
) -> None:
    out = tmp_path / "new.jsonl"

    def interrupt_after_two(query: str, verdict: Verdict) -> None:
        if stats.kept == 2:
            raise KeyboardInterrupt

    stats = GenerateStats()
    with pytest.raises(KeyboardInterrupt):
        generate(
            client_for(server), out, 5, ["technical"], stats=stats, on_result=interrupt_after_two
        )
    assert len(rows(out)) == 2
    first_queries = [r["query"] for r in server.requests]

    # A kill in mid-write would leave half a line: the rerun cuts it off, then continues.
    with out.open("ab") as f:
        f.write(b'{"input": "half a li')
    stats = generate(client_for(server), out, 5, ["technical"])
    assert stats.repaired_tail and stats.existing == 2 and stats.kept == 3
    written = [r.example.query for r in rows(out)]
    assert len(written) == len(set(written)) == 5
    assert written[:2] == first_queries
    assert not set(first_queries) & {r["query"] for r in server.requests[2:]}

    # At the target already: no request at all.
    before = len(server.requests)
    assert generate(client_for(server), out, 5, ["technical"]).kept == 0
    assert len(server.requests) == before


def test_refuses_to_append_to_a_file_with_invalid_lines(server: FakeProvider, tmp_path: Path):
    out = tmp_path / "new.jsonl"
    out.write_text('{"input": "q"}\n')
    with pytest.raises(UserError, match="1 invalid line"):
        generate(client_for(server), out, 2, ["short"])
    assert server.requests == []


def test_cli_end_to_end_without_key_prints_summary(server: FakeProvider, tmp_path: Path):
    out = tmp_path / "new.jsonl"
    env = {"PATH": "", "no_proxy": "127.0.0.1", "OPENAI_API_KEY": "", "ANTHROPIC_API_KEY": ""}
    r = subprocess.run(
        [sys.executable, "-m", "qmd_ft", "data", "generate", "--count", "2", "--provider",
         server.provider, "--base-url", server.url, "--category", "errors", "-o", str(out)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert f"2 answer(s) requested: 2 kept, 0 rejected; {out} holds 2/2" in r.stdout
    assert len(rows(out)) == 2
    assert all("x-api-key" not in q["headers"] for q in server.requests)
    assert all("authorization" not in q["headers"] for q in server.requests)


def test_key_required_for_the_providers_own_endpoint() -> None:
    with pytest.raises(UserError, match="set ANTHROPIC_API_KEY"):
        make_client("anthropic", env={})
    with pytest.raises(UserError, match="--provider"):
        make_client("cohere", env={})
    with pytest.raises(UserError, match="must start with http"):
        make_client("openai", base_url="localhost:8080/v1", env={})
    client = make_client("openai", env={"OPENAI_API_KEY": "sk-x"})
    assert client.base_url == "https://api.openai.com/v1" and client.api_key == "sk-x"
    assert "sk-x" not in repr(client)


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=30)), now) == 30.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_judge_rejects_misread_terms_and_queries_rotate_categories() -> None:
    answer = "lex: ruby gem install\nlex: gemstone jewelry\nvec: how to install a gem with bundler"
    verdict = judge("ruby gem install", answer, 0, load_senses())
    assert verdict.reason == "misread term" and "gemstone" in verdict.detail
    queries = list(candidate_queries(["short", "multilingual"], seed=1))
    assert len(queries) == len(set(queries)) > 40
    assert queries[0] in CATEGORIES["short"].queries()
    assert queries[1] in CATEGORIES["multilingual"].queries()
    assert queries == list(candidate_queries(["short", "multilingual"], seed=1))
