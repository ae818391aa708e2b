"""Search one query the way QMD's `hybridQuery` does, without the LLM reranker.

QMD routes typed expansions exclusively: `lex:` lines go to BM25 only, `vec:` and `hyde:` lines
to vector search only, and the original query goes to both. Each sub-query yields a ranked
list (20 results), and the lists are fused by weighted reciprocal-rank fusion:

    score(d) = sum over lists of weight / (k + rank + 1),  k = 60, rank from 0
             + 0.05 if d is first in any list, + 0.02 if its best rank is 2nd or 3rd

The original query's two lists weigh 2.0 and every expansion list 1.0, so an expansion can
add candidates and reorder ties but cannot easily bury an exact match. (QMD gives 2.0 to "the
first two lists", which are the original's two whenever its BM25 finds anything; we weigh by
role so that an original query with no BM25 hit does not hand the double weight to the
first lex line.)

Left out on purpose: the reranker (this measures what the expansion retrieves, before any
reranking) and QMD's strong-signal shortcut that skips expansion when BM25 is already sure
(here every query is expanded, so every expansion is measured).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from qmd_ft.retrieval.index import BM25Index, VectorIndex

RRF_K = 60
ORIGINAL_WEIGHT = 2.0
EXPANSION_WEIGHT = 1.0
LIST_LIMIT = 20  # results per sub-query, as QMD asks of FTS and sqlite-vec
CANDIDATE_LIMIT = 40  # QMD's RERANK_CANDIDATE_LIMIT: what fusion hands on
TOP_RANK_BONUS = {0: 0.05, 1: 0.02, 2: 0.02}

SubQueryType = Literal["lex", "vec", "hyde"]
_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_LINE = re.compile(r"^(lex|vec|hyde):\s*(.*)$")


@dataclass(frozen=True)
class SubQuery:
    """One typed expansion line: `lex` searches BM25, `vec` and `hyde` search vectors."""

    type: SubQueryType
    text: str


@dataclass(frozen=True)
class RankedList:
    """One backend's results for one sub-query, with the RRF weight it carries."""

    source: Literal["fts", "vec"]
    query: str
    weight: float
    names: list[str]


def parse_expansion(text: str) -> list[SubQuery]:
    """The typed lines of a model's output, in order; other lines and think blocks are ignored.

    QMD keeps only lines it can route, so a malformed line simply contributes nothing here.
    """
    subs = []
    for raw in _THINK.sub("", text.replace("<|im_end|>", "")).splitlines():
        match = _LINE.match(raw.strip())
        if match and match.group(2).strip():
            subs.append(SubQuery(match.group(1), match.group(2).strip()))  # type: ignore[arg-type]
    return subs


def rrf_fuse(lists: list[RankedList], k: int = RRF_K) -> list[str]:
    """QMD's weighted RRF with top-rank bonus; ties keep first-seen order, as JS's stable sort."""
    scores: dict[str, float] = {}
    best_rank: dict[str, int] = {}
    for ranked in lists:
        for rank, name in enumerate(ranked.names):
            scores[name] = scores.get(name, 0.0) + ranked.weight / (k + rank + 1)
            best_rank[name] = min(best_rank.get(name, rank), rank)
    for name, rank in best_rank.items():
        scores[name] += TOP_RANK_BONUS.get(rank, 0.0)
    return sorted(scores, key=lambda name: -scores[name])


def ranked_lists(
    query: str, expansion: list[SubQuery], bm25: BM25Index, vectors: VectorIndex
) -> list[RankedList]:
    """Every sub-query's ranked list, in QMD's order: FTS original, lex; vec original, vec/hyde.

    Empty lists are dropped, as QMD drops them.
    """
    lists = [RankedList("fts", query, ORIGINAL_WEIGHT, bm25.search(query, LIST_LIMIT))]
    lists += [
        RankedList("fts", sub.text, EXPANSION_WEIGHT, bm25.search(sub.text, LIST_LIMIT))
        for sub in expansion
        if sub.type == "lex"
    ]
    lists.append(RankedList("vec", query, ORIGINAL_WEIGHT, vectors.search(query, LIST_LIMIT)))
    lists += [
        RankedList("vec", sub.text, EXPANSION_WEIGHT, vectors.search(sub.text, LIST_LIMIT))
        for sub in expansion
        if sub.type in ("vec", "hyde")
    ]
    return [ranked for ranked in lists if ranked.names]


def search(
    query: str,
    bm25: BM25Index,
    vectors: VectorIndex,
    expansion: str | None = None,
    limit: int = CANDIDATE_LIMIT,
) -> list[str]:
    """Fused note names for a query, best first.

    With `expansion=None` this is mode (a), the raw query on both backends; with a model's
    output it is mode (b), the raw query plus every routed expansion line.
    """
    subs = parse_expansion(expansion) if expansion else []
    return rrf_fuse(ranked_lists(query, subs, bm25, vectors))[:limit]
