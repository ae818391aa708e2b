"""The retrieval evaluation end to end: index the corpus, search every query, score, compare.

`run_retrieval_eval(expansions)` is what `qmd-ft eval --retrieval` calls with a model's outputs
(query id -> expansion text). It always scores the raw query (mode a) and, unless told not to,
the hand-written gold expansions in `evals/retrieval/gold_expansions.jsonl`: the raw query is
the floor any expansion must clear, the gold is a reference ceiling for the model. Every
system is compared with raw per query, with a paired bootstrap interval of the mean delta.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qmd_ft.resources import defaults_root
from qmd_ft.retrieval import search as search_mod
from qmd_ft.retrieval.index import (
    EMBEDDING_MODEL,
    EMBEDDING_PACKAGE,
    BM25Index,
    Embedder,
    VectorIndex,
    load_notes,
)
from qmd_ft.retrieval.metrics import METRICS, compare, mean_metrics, score_ranking
from qmd_ft.retrieval.results import (
    Corpus,
    MetricComparison,
    Metrics,
    QueryRow,
    RetrievalResults,
    RetrievalSettings,
    SystemSummary,
)

EVAL_DIR = defaults_root() / "evals" / "retrieval"
"""The shipped corpus: `notes/`, `queries.jsonl`, `gold_expansions.jsonl`."""


@dataclass(frozen=True)
class Query:
    """One judged query: `relevant` maps note file name to grade (2 answers, 1 partial)."""

    id: str
    query: str
    category: str
    relevant: dict[str, int]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def load_queries(path: Path, note_names: set[str] | None = None) -> list[Query]:
    """The judged queries; with `note_names`, every judged note must exist in the corpus.

    A judgment naming a missing note would silently cap recall, so it is an error instead.
    """
    queries = []
    for row in _jsonl(path):
        query = Query(row["id"], row["query"], row["category"], dict(row["relevant"]))
        bad = {g for g in query.relevant.values() if g not in (1, 2)}
        if not query.relevant or bad:
            raise ValueError(f"{path}: query {query.id} needs grades 1 or 2, got {query.relevant}")
        if note_names is not None and (missing := set(query.relevant) - note_names):
            raise ValueError(f"{path}: query {query.id} judges missing notes {sorted(missing)}")
        queries.append(query)
    ids = [q.id for q in queries]
    if len(ids) != len(set(ids)):
        raise ValueError(f"{path}: duplicate query ids")
    return queries


def load_expansions(path: Path) -> dict[str, str]:
    """`{"id", "expansion"}` lines as query id -> expansion text (the gold file's format)."""
    return {row["id"]: row["expansion"] for row in _jsonl(path)}


@dataclass
class Indexes:
    """Both indexes over one corpus, with how long each took to build."""

    bm25: BM25Index
    vectors: VectorIndex
    notes: int
    seconds: dict[str, float]


def build_indexes(notes_dir: Path, embedder: Embedder | None = None) -> Indexes:
    """Load the notes and build BM25 and vector indexes, timing each step."""
    t0 = time.perf_counter()
    notes = load_notes(notes_dir)
    bm25 = BM25Index(notes)
    t1 = time.perf_counter()
    embedder = embedder or Embedder()
    t2 = time.perf_counter()
    vectors = VectorIndex(notes, embedder)
    t3 = time.perf_counter()
    seconds = {"bm25_build": t1 - t0, "model_load": t2 - t1, "vector_build": t3 - t2}
    return Indexes(bm25, vectors, len(notes), seconds)


Expansions = Mapping[str, str]
"""Query id -> one expansion text."""


def _system(
    queries: list[Query], indexes: Indexes, samples: list[Expansions] | None
) -> tuple[list[dict[str, float]], list[list[str]], list[dict[str, float]]]:
    """Per-query metric rows, rankings and per-sample means for one system (None: raw).

    With several samples (sampled generation), a query's row is the mean of its samples'
    metrics and its ranking is the first sample's.
    """
    runs: list[tuple[list[dict[str, float]], list[list[str]]]] = []
    for expansions in samples if samples is not None else [None]:
        rows, rankings = [], []
        for q in queries:
            expansion = expansions.get(q.id) if expansions is not None else None
            ranked = search_mod.search(q.query, indexes.bm25, indexes.vectors, expansion)
            rows.append(score_ranking(ranked, q.relevant))
            rankings.append(ranked)
        runs.append((rows, rankings))
    merged = [
        {m: sum(run[0][i][m] for run in runs) / len(runs) for m in METRICS}
        for i in range(len(queries))
    ]
    return merged, runs[0][1], [mean_metrics(rows) for rows, _ in runs]


def _vector_texts(queries: list[Query], samples: list[Expansions] | None) -> list[str]:
    """Every text a system will send to vector search, so they embed in one batch."""
    texts = [q.query for q in queries]
    for expansions in samples or []:
        for q in queries:
            if q.id in expansions:
                subs = search_mod.parse_expansion(expansions[q.id])
                texts += [s.text for s in subs if s.type in ("vec", "hyde")]
    return texts


def _summary(
    queries: list[Query], rows: list[dict[str, float]], sample_means: list[dict[str, float]]
) -> SystemSummary:
    """A system's mean, per-category means and, over several samples, each sample's mean."""
    categories = sorted({q.category for q in queries})
    by_category = {
        c: mean_metrics([r for q, r in zip(queries, rows, strict=True) if q.category == c])
        for c in categories
    }
    summary = SystemSummary(
        mean=Metrics.model_validate(mean_metrics(rows)),
        by_category={c: Metrics.model_validate(m) for c, m in by_category.items()},
    )
    if len(sample_means) > 1:
        summary.sample_means = [Metrics.model_validate(m) for m in sample_means]
    return summary


def run_retrieval_eval(
    expansions: Expansions | Sequence[Expansions] | None,
    *,
    eval_dir: Path = EVAL_DIR,
    with_gold: bool = True,
    indexes: Indexes | None = None,
    n_resamples: int = 10_000,
    seed: int = 0,
) -> RetrievalResults:
    """Score raw queries, the given expansions (if any) and the gold expansions (if asked).

    `expansions` maps query id to a model's output text, or is a list of such maps (k sampled
    runs: each query's metrics are averaged over them, and `systems.model.sample_means` keeps
    each run's means); a query a map lacks is searched raw and listed under
    `missing_expansions[system]`, so a partial run cannot pass as a full one.
    `indexes` reuses indexes already built over `eval_dir / "notes"` (tests, benchmarks).
    Returns the document: `systems` (mean and per-category metrics), `comparisons`
    (`model_vs_raw`, `gold_vs_raw`: mean delta, bootstrap CI, wins/losses per metric),
    `per_query` rows with each system's metrics and top 10, and `timings`.
    """
    indexes = indexes or build_indexes(eval_dir / "notes")
    queries = load_queries(eval_dir / "queries.jsonl", set(indexes.vectors.names))

    systems: dict[str, list[Expansions] | None] = {"raw": None}
    if expansions is not None:
        systems["model"] = [expansions] if isinstance(expansions, Mapping) else list(expansions)
    if with_gold:
        systems["gold"] = [load_expansions(eval_dir / "gold_expansions.jsonl")]

    t0 = time.perf_counter()
    indexes.vectors.prepare(t for exp in systems.values() for t in _vector_texts(queries, exp))
    t1 = time.perf_counter()
    results = {}
    for name, exp in systems.items():
        results[name] = _system(queries, indexes, exp)
    t2 = time.perf_counter()

    raw_rows = results["raw"][0]
    comparisons = {
        f"{name}_vs_raw": {
            metric: MetricComparison.model_validate(c)
            for metric, c in compare(rows, raw_rows, n_resamples=n_resamples, seed=seed).items()
        }
        for name, (rows, _, _) in results.items()
        if name != "raw"
    }
    per_query = []
    for i, q in enumerate(queries):
        row: dict[str, Any] = {"id": q.id, "query": q.query, "category": q.category}
        for name, (rows, rankings, _) in results.items():
            row[name] = {**rows[i], "top10": rankings[i][:10]}
            if name != "raw":
                row[f"delta_{name}"] = {m: rows[i][m] - raw_rows[i][m] for m in METRICS}
        per_query.append(QueryRow.model_validate(row))

    n_searches = len(queries) * len(systems)
    return RetrievalResults(
        corpus=Corpus(
            notes=indexes.notes,
            queries=len(queries),
            embedding_model=EMBEDDING_MODEL,
            embedding_package=EMBEDDING_PACKAGE,
        ),
        settings=RetrievalSettings(
            rrf_k=search_mod.RRF_K,
            original_weight=search_mod.ORIGINAL_WEIGHT,
            expansion_weight=search_mod.EXPANSION_WEIGHT,
            list_limit=search_mod.LIST_LIMIT,
            bootstrap_resamples=n_resamples,
            seed=seed,
        ),
        missing_expansions={
            name: [q.id for q in queries if any(q.id not in e for e in exp)]
            for name, exp in systems.items()
            if exp is not None
        },
        systems={
            name: _summary(queries, rows, means) for name, (rows, _, means) in results.items()
        },
        comparisons=comparisons,
        per_query=per_query,
        timings={
            **indexes.seconds,
            "query_embedding": t1 - t0,
            "search_ms_per_query": (t2 - t1) / max(n_searches, 1) * 1000,
        },
    )
