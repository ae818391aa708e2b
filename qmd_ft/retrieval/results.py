"""The retrieval results document `qmd-ft eval --retrieval` writes and the gate reads.

Per system (`raw`: the query alone, `model`: its expansions, `gold`: the hand-written ones) the
mean and per-category metrics, per query each system's metrics and top 10, and the paired
comparisons with raw. Metric keys are the metric names (`recall@10`), aliases of the fields.
A file needs only its per-query rows (what the gate pairs); the rest is typed when present and
written back as it was read (`qmd_ft.results`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from qmd_ft.results import ExportedFrom, ResultsModel, Sampling, read_document
from qmd_ft.retrieval.metrics import METRICS

SYSTEMS = ("raw", "model", "gold")
"""The raw query, the model's expansions, the gold expansions: a per-query row's keys."""


class Metrics(ResultsModel):
    """recall@5, recall@10, MRR and nDCG@10 (see `qmd_ft.retrieval.metrics`)."""

    recall_at_5: float = Field(alias="recall@5")
    recall_at_10: float = Field(alias="recall@10")
    mrr: float
    ndcg_at_10: float = Field(alias="ndcg@10")

    def value(self, metric: str) -> float:
        """One metric by its name in `METRICS` (as configs and the gate name it)."""
        return getattr(self, _FIELD[metric])

    def as_dict(self) -> dict[str, float]:
        """The four metrics by name, in `METRICS` order."""
        return {m: self.value(m) for m in METRICS}


_FIELD = {field.alias or name: name for name, field in Metrics.model_fields.items()}
"""Metric name (`recall@10`) -> field name (`recall_at_10`)."""


class QueryMetrics(Metrics):
    """One system's metrics on one query, with the first ten notes it ranked."""

    top10: list[str] = Field(default_factory=list)


class SystemSummary(ResultsModel):
    """One system's means: overall, per category and (sampled) per sample run."""

    mean: Metrics
    by_category: dict[str, Metrics] = Field(default_factory=dict)
    sample_means: list[Metrics] | None = None


class MetricComparison(ResultsModel):
    """A system against raw on one metric: mean paired delta, bootstrap interval, wins."""

    mean_delta: float
    ci_low: float
    ci_high: float
    wins: int
    losses: int


class QueryRow(ResultsModel):
    """One judged query: each system's metrics and each expansion system's delta vs raw."""

    id: str
    query: str | None = None
    category: str | None = None
    raw: QueryMetrics | None = None
    model: QueryMetrics | None = None
    delta_model: Metrics | None = None
    gold: QueryMetrics | None = None
    delta_gold: Metrics | None = None

    def system(self, name: str) -> QueryMetrics | None:
        """The metrics of system `name` (one of `SYSTEMS`) on this query, if it was run."""
        if name not in SYSTEMS:
            raise ValueError(f"unknown retrieval system {name!r}: one of {', '.join(SYSTEMS)}")
        return getattr(self, name)


class Corpus(ResultsModel):
    """What was searched: the note and query counts and the embedding model."""

    notes: int
    queries: int
    embedding_model: str | None = None
    embedding_package: str | None = None


class RetrievalSettings(ResultsModel):
    """QMD's fusion constants and the bootstrap's, as the numbers were computed."""

    rrf_k: int
    original_weight: float
    expansion_weight: float
    list_limit: int
    bootstrap_resamples: int
    seed: int


class RetrievalProvenance(ResultsModel):
    """The model whose expansions were searched; `sampling` only for sampled generation."""

    model: str | None = None
    model_sha256: str | None = None
    adapters: list[str] = Field(default_factory=list)
    backend: str | None = None
    generation: dict[str, Any] = Field(default_factory=dict)
    generation_seconds: float | None = None
    sampling: Sampling | None = None
    exported_from: ExportedFrom | None = None


class RetrievalResults(ResultsModel):
    """The whole `eval --retrieval` document."""

    corpus: Corpus | None = None
    settings: RetrievalSettings | None = None
    missing_expansions: dict[str, list[str]] = Field(default_factory=dict)
    systems: dict[str, SystemSummary] = Field(default_factory=dict)
    comparisons: dict[str, dict[str, MetricComparison]] = Field(default_factory=dict)
    per_query: list[QueryRow]
    timings: dict[str, float] = Field(default_factory=dict)
    provenance: RetrievalProvenance = Field(default_factory=RetrievalProvenance)
    expansions: dict[str, str] | list[dict[str, str]] | None = None
    """Query id -> the model's expansion; k such maps for a sampled run."""


def load_retrieval_results(path: str | Path) -> RetrievalResults:
    """Read and check an `eval --retrieval` results file; one clear line when it is not one."""
    return read_document(path, RetrievalResults, "retrieval results")
