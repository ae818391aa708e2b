"""`qmd-ft data generate`: new training examples from an LLM, kept only when they pass.

Queries come from category templates (so the set covers what QMD users search for, not what
an LLM likes to invent); the LLM writes the expansion. Every answer is checked with the schema,
the reward (below `min_score` is rejected) and the term-sense table before it is written, so
the output file only ever holds lines `qmd-ft data validate` accepts.

The output is appended one complete line at a time (write, flush, fsync): an interrupted run
leaves a valid file, and running again continues to the target count, skipping the queries the
file already holds. The queries come from `qmd_ft.data.query_templates`, the requests go
through `qmd_ft.data.llm`; this module judges the answers and writes the file.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qmd_ft.data.llm import (
    ANTHROPIC_VERSION,
    MAX_BACKOFF_S,
    MAX_RETRY_AFTER_S,
    PROVIDERS,
    RETRY_STATUSES,
    BadResponse,
    Client,
    RequestFailed,
    make_client,
    retry_after_seconds,
)
from qmd_ft.data.query_templates import (
    CATEGORIES,
    Category,
    candidate_queries,
    check_categories,
)
from qmd_ft.data.reader import Row, read_examples
from qmd_ft.data.schema import SchemaError, parse_record
from qmd_ft.data.term_senses import TermSense, misreadings
from qmd_ft.errors import UserError
from qmd_ft.prompt import INSTRUCTION
from qmd_ft.rubric import score

# The request and template names have their own modules now; they stay importable from here.
__all__ = [
    "ANTHROPIC_VERSION",
    "CATEGORIES",
    "DEFAULT_MIN_SCORE",
    "MAX_BACKOFF_S",
    "MAX_RETRY_AFTER_S",
    "PROVIDERS",
    "RETRY_STATUSES",
    "SYSTEM_PROMPT",
    "BadResponse",
    "Category",
    "Client",
    "GenerateStats",
    "RequestFailed",
    "Verdict",
    "candidate_queries",
    "check_categories",
    "existing_queries",
    "generate",
    "judge",
    "make_client",
    "retry_after_seconds",
]

DEFAULT_MIN_SCORE = 70.0

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


def _key(query: str) -> str:
    """Queries compared the way `data validate` finds duplicates, spacing aside."""
    return " ".join(query.casefold().split())


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
