"""`qmd-ft data generate`: new training examples from an LLM, kept only when they pass.

Queries come from category templates (so the set covers what QMD users search for, not what
an LLM likes to invent); the LLM writes the expansion. Every answer is checked with the schema,
the reward (below `min_score` is rejected) and the term-sense table before it is written, so
the output file only ever holds lines `qmd-ft data validate` accepts.

The output is appended one complete line at a time (write, flush, fsync): an interrupted run
leaves a valid file, and running again continues to the target count, skipping the queries the
file already holds. Requests use the standard library only (no SDK to install), speak the
Anthropic Messages and OpenAI chat-completions wire formats (`openai` covers any compatible
server, llama.cpp's included), and retry 429/5xx/timeouts with exponential backoff, honouring
Retry-After.
"""

from __future__ import annotations

import email.utils
import http.client
import itertools
import json
import os
import random
import string
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from qmd_ft import __version__
from qmd_ft.data.reader import Row, read_examples
from qmd_ft.data.schema import SchemaError, parse_record
from qmd_ft.data.term_senses import TermSense, misreadings
from qmd_ft.errors import UserError
from qmd_ft.prompt import INSTRUCTION
from qmd_ft.rubric import score

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
DEFAULT_MIN_SCORE = 70.0


@dataclass(frozen=True)
class Category:
    """Query templates: each pattern is filled with every combination of its slots' values."""

    patterns: tuple[str, ...]
    slots: Mapping[str, tuple[str, ...]]

    def queries(self) -> list[str]:
        """Every query the templates make, in a fixed order."""
        out = []
        for pattern in self.patterns:
            names = [name for _, name, _, _ in string.Formatter().parse(pattern) if name]
            for values in itertools.product(*(self.slots[n] for n in names)):
                out.append(pattern.format(**dict(zip(names, values, strict=True))))
        return out


CATEGORIES: dict[str, Category] = {
    "technical": Category(
        ("{tool} {topic}", "how to configure {topic} in {tool}", "{tool} {topic} example"),
        {
            "tool": ("docker", "kubernetes", "nginx", "postgres", "redis", "django", "rails",
                     "react", "node.js", "terraform", "fastapi", "github actions"),
            "topic": ("environment variables", "logging", "authentication", "caching",
                      "health checks", "config file", "connection pooling", "rate limiting",
                      "secrets", "timeouts"),
        },
    ),
    "notes": Category(
        ("{meeting} notes {subject}", "ideas for {subject}", "todo {subject}",
         "{period} journal {theme}"),
        {
            "meeting": ("meeting", "standup", "1:1", "retro", "planning", "interview"),
            "subject": ("project kickoff", "q3 roadmap", "hiring plan", "website redesign",
                        "onboarding", "budget review", "launch checklist", "team offsite"),
            "period": ("morning", "weekly", "monthly", "travel"),
            "theme": ("reflections", "gratitude", "goals", "habits", "stress"),
        },
    ),
    "research": Category(
        ("what is {concept}", "{concept} explained", "how does {concept} work",
         "difference between {pair}", "history of {topic}"),
        {
            "concept": ("dependency injection", "eventual consistency", "photosynthesis",
                        "inflation", "CRISPR", "quantum entanglement", "game theory",
                        "the placebo effect", "compound interest", "plate tectonics"),
            "pair": ("sql and nosql", "tcp and udp", "stocks and bonds", "weather and climate",
                     "viruses and bacteria", "processes and threads", "mitosis and meiosis",
                     "REST and GraphQL"),
            "topic": ("the printing press", "the internet", "vaccines", "the stock market",
                      "jazz", "cartography"),
        },
    ),
    "errors": Category(
        ("{tool} {error}", "{error} fix", "how to debug {error} in {tool}"),
        {
            "tool": ("python", "node.js", "docker", "postgres", "nginx", "java", "kubernetes",
                     "git"),
            "error": ("connection refused", "permission denied", "out of memory",
                      "segmentation fault", "timeout error", "module not found",
                      "certificate verify failed", "deadlock detected", "too many open files",
                      "port already in use"),
        },
    ),
    "temporal": Category(
        ("latest {subject} news", "recent {subject} changes", "what changed in {product} {when}",
         "best {item} right now"),
        {
            "subject": ("AI", "kubernetes", "python", "climate policy", "electric cars",
                        "web browsers", "smartphones"),
            "product": ("kubernetes", "python", "react", "postgres", "iOS", "typescript"),
            "when": ("this year", "latest version", "last release"),
            "item": ("laptops", "budget phones", "noise cancelling headphones",
                     "mechanical keyboards", "password managers", "note taking apps"),
        },
    ),
    "entities": Category(
        ("{entity} {aspect}", "who is {person}", "{person} {work}"),
        {
            "entity": ("Stripe", "AWS Lambda", "Shopify", "GitHub Actions", "Tesla Model Y",
                       "Notion", "Figma", "Cloudflare Workers", "PostgreSQL", "Vercel"),
            "aspect": ("pricing", "API limits", "alternatives", "setup guide", "review",
                       "outage history"),
            "person": ("Ada Lovelace", "Alan Turing", "Grace Hopper", "Linus Torvalds",
                       "Marie Curie", "Satya Nadella"),
            "work": ("biography", "famous quotes", "key contributions"),
        },
    ),
    "short": Category(
        ("{word}", "{word} {qualifier}"),
        {
            "word": ("auth", "config", "setup", "api", "cache", "logs", "deploy", "backup",
                     "sso", "cron", "dns", "ssl", "oauth", "cors", "vpn", "webhook"),
            "qualifier": ("docs", "error", "guide", "settings", "example"),
        },
    ),
    "multilingual": Category(
        ("wie funktioniert {de}", "comment configurer {fr}", "cómo instalar {es}", "{ja}の使い方"),
        {
            "de": ("eine Wärmepumpe", "Docker Compose", "die Steuererklärung", "ein VPN",
                   "Photovoltaik", "eine Hypothek", "Git Rebase", "die Rentenversicherung"),
            "fr": ("un serveur nginx", "la sauvegarde automatique", "un routeur wifi", "git",
                   "une imprimante réseau", "un VPN", "PostgreSQL", "le pare-feu Windows"),
            "es": ("Python en Windows", "Docker en Ubuntu", "un certificado SSL", "Node.js",
                   "Postgres", "WordPress", "un servidor VPN", "Git en Mac"),
            "ja": ("Docker", "Git", "Excel", "Python", "Notion", "Slack", "VSCode", "Figma"),
        },
    ),
}  # fmt: skip

SYSTEM_PROMPT = """\
You write training data for a search-query expansion model. Given a search query, answer with \
these lines and nothing else:
hyde: one passage of 50 to 200 characters that a document answering the query would contain
lex: 2 or 3 lines of short keyword phrases for keyword (BM25) search; each keeps the query's \
key terms and every name in it
vec: 2 or 3 lines, each a natural-language question or phrase for semantic search, longer \
than the lex lines
Rules: every line starts with "hyde:", "lex:" or "vec:"; no two lines are near-duplicates and \
none repeats the query; technical terms keep their technical meaning (a Ruby gem is a package, \
not a stone; yarn is a package manager, not wool); answer in the query's language; no \
thinking, no markdown, no numbering, no other text.

Example for "configure nginx reverse proxy":
hyde: In nginx, add a location block with proxy_pass http://127.0.0.1:3000; and set \
proxy_set_header Host $host so the backend sees the original request.
lex: nginx reverse proxy proxy_pass
lex: nginx location block upstream config
vec: how do I set up nginx as a reverse proxy in front of a local application server
vec: what nginx configuration forwards incoming requests to a backend service on another port"""


class RequestFailed(Exception):
    """A request still failed after every retry (the message says how)."""


class BadResponse(Exception):
    """The server answered 200 with something that is not an answer in its wire format."""


def _key(query: str) -> str:
    """Queries compared the way `data validate` finds duplicates, spacing aside."""
    return " ".join(query.casefold().split())


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


def check_categories(categories: list[str]) -> None:
    """Raise UserError naming any category that has no templates."""
    unknown = [c for c in categories if c not in CATEGORIES]
    if unknown:
        raise UserError(f"--category: {', '.join(unknown)} not one of {', '.join(CATEGORIES)}")


def candidate_queries(categories: list[str], seed: int) -> Iterator[str]:
    """Template queries, taking turns across categories, each category in a seeded order."""
    rng = random.Random(seed)
    pools = []
    for name in categories:
        queries = CATEGORIES[name].queries()
        rng.shuffle(queries)
        pools.append(iter(queries))
    while pools:
        for queries in list(pools):
            query = next(queries, None)
            if query is None:
                pools.remove(queries)
            else:
                yield query


def _strip_fences(text: str) -> str:
    """Drop a markdown code fence around the answer (a harmless habit of chat models)."""
    lines = text.strip().split("\n")
    if len(lines) >= 2 and lines[0].startswith("```") and lines[-1].strip() == "```":
        lines = lines[1:-1]
    return "\n".join(lines)


@dataclass(frozen=True)
class Verdict:
    """An answer judged: the record to write, or the rejection reason (summary key + detail)."""

    record: dict[str, str] | None
    reason: str = ""
    detail: str = ""


def judge(
    query: str, answer: str, min_score: float, senses: list[TermSense] | None = None
) -> Verdict:
    """Schema first, then misread technical terms, then the reward against `min_score`."""
    try:
        example = parse_record({"input": query, "output": _strip_fences(answer)})
    except SchemaError as e:
        return Verdict(None, "schema", str(e))
    found = misreadings(example, senses or [])
    if found:
        return Verdict(None, "misread term", str(found[0]))
    result = score(query, example.output)
    if result.percentage < min_score:
        why = "; ".join(result.deductions) or "low score"
        return Verdict(None, "score", f"score {result.percentage:.1f}% < {min_score:g}% ({why})")
    return Verdict(example.to_record())


@dataclass
class GenerateStats:
    """What a run did; filled in as it goes, so an interrupted run still has its numbers."""

    target: int = 0
    existing: int = 0
    requests: int = 0
    kept: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    repaired_tail: bool = False
    stopped: str | None = None

    @property
    def total(self) -> int:
        """Examples in the output file now."""
        return self.existing + self.kept


def existing_queries(path: Path) -> tuple[set[str], bool]:
    """Query keys already in `path`, and whether an interrupted last line was cut off.

    A run killed mid-write can leave a last line without its newline; it is removed (it
    cannot be a complete example). Any other invalid line is the user's to fix: appending to
    a file `data validate` rejects would hide the problem.
    """
    if not path.exists():
        return set(), False
    repaired = False
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        try:
            parse_record(json.loads(data[cut:]))
        except (ValueError, SchemaError, RecursionError):
            with path.open("r+b") as f:
                f.truncate(cut)
            repaired = True
        else:
            with path.open("ab") as f:
                f.write(b"\n")
    keys: set[str] = set()
    errors = []
    for item in read_examples(path):
        if isinstance(item, Row):
            keys.add(_key(item.example.query))
        elif item.severity == "error":
            errors.append(item)
    if errors:
        raise UserError(
            f"{path}: {len(errors)} invalid line(s) (first: {errors[0]}); "
            "fix them or write to another file"
        )
    return keys, repaired


def _append(f: Any, record: dict[str, str]) -> None:
    """One complete line, then flush and fsync: a crash can never leave half an example."""
    f.write(json.dumps(record, ensure_ascii=False) + "\n")
    f.flush()
    os.fsync(f.fileno())


def generate(
    client: Client,
    out: Path,
    count: int,
    categories: list[str],
    *,
    min_score: float = DEFAULT_MIN_SCORE,
    seed: int = 0,
    senses: list[TermSense] | None = None,
    max_rejections: int | None = None,
    stats: GenerateStats | None = None,
    on_result: Callable[[str, Verdict], None] | None = None,
) -> GenerateStats:
    """Grow `out` to `count` examples; `count` is the target total, so a rerun continues.

    Stops early (saying why in `stats.stopped`) when the templates run out of new queries,
    when rejections pass `max_rejections` (default: the number still needed, at least 20:
    a model that fails that often needs a look, not more requests), or when a request fails
    after all its retries.
    """
    check_categories(categories)
    stats = stats if stats is not None else GenerateStats()
    stats.target = count
    done, stats.repaired_tail = existing_queries(out)
    stats.existing = len(done)
    needed = count - stats.existing
    if needed <= 0:
        return stats
    limit = max_rejections if max_rejections is not None else max(20, needed)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8", newline="\n") as f:
        for query in candidate_queries(categories, seed):
            if stats.kept >= needed:
                break
            if _key(query) in done:
                continue
            done.add(_key(query))
            stats.requests += 1
            try:
                answer = client.complete(SYSTEM_PROMPT, f"{INSTRUCTION} {query}")
            except BadResponse as e:
                verdict = Verdict(None, "bad response", str(e))
            except RequestFailed as e:
                stats.stopped = f"request for {query!r} failed: {e}"
                break
            else:
                verdict = judge(query, answer, min_score, senses)
            if verdict.record is not None:
                _append(f, verdict.record)
                stats.kept += 1
            else:
                stats.rejected[verdict.reason] += 1
            if on_result is not None:
                on_result(query, verdict)
            if sum(stats.rejected.values()) >= limit:
                stats.stopped = f"{limit} answers rejected: check the model and reasons above"
                break
        else:
            if stats.kept < needed:
                stats.stopped = "the category templates have no new queries left"
    return stats
