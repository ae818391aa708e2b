"""The eval results document: one row per query, the summary, the provenance.

A results file is what the gate compares and what a release carries, so it holds everything
needed to trust and reproduce the number: every completion and sub-score, the model's content
hash, the queries file hash, the rubric version, the generation settings, backend and versions.
A file needs only what the gate reads (each row's query, completion and reward, and the rubric
version); everything else is typed when present and written back as it was read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, StrictFloat

from qmd_ft.errors import UserError
from qmd_ft.results import ExportedFrom, ResultsModel, Sampling, read_document, write_document

RESULTS_FORMAT = 1
RATINGS = ("Excellent", "Good", "Acceptable", "Poor", "Failed")


class SampleRow(ResultsModel):
    """One of a sampled eval's k completions of a query, with its score."""

    completion: str
    reward: float
    percentage: float
    rating: str


class EvalRow(ResultsModel):
    """One query's completion with every sub-score of the rubric and why points were lost.

    A sampled eval's row carries the first sample's completion and sub-scores, the mean
    reward, percentage and modal rating over the samples, their spread and every sample.
    """

    query: str
    category: str = "uncategorized"
    completion: str
    format: int | None = None
    diversity: int | None = None
    hyde: int | None = None
    quality: int | None = None
    entity: int | None = None
    think_bonus: int | None = None
    total: int | None = None
    max_possible: int | None = None
    percentage: float | None = None
    rating: str | None = None
    reward: StrictFloat
    deductions: list[str] = Field(default_factory=list)
    entities: list[str] = Field(default_factory=list)
    only_mode: str | None = None
    reward_std: float | None = None
    samples: list[SampleRow] | None = None


class SampleSpread(ResultsModel):
    """A sampled eval's runs: each run's mean reward and their standard deviation."""

    k: int
    mean_rewards: list[float]
    std: float


class Summary(ResultsModel):
    """Mean reward and percentage, rating histogram and per-category mean reward."""

    n: int
    mean_reward: float
    mean_percentage: float
    ratings: dict[str, int]
    categories: dict[str, float]
    samples: SampleSpread | None = None


class AdapterRef(ResultsModel):
    """An adapter applied on the model, with its content hash (None: not on disk)."""

    path: str
    sha256: str | None


class EvalProvenance(ResultsModel):
    """Where the numbers came from; `sampling` only for a sampled eval."""

    model: str | None = None
    model_sha256: str | None = None
    adapters: list[AdapterRef] = Field(default_factory=list)
    queries_file: str | None = None
    queries_sha256: str | None = None
    generation: dict[str, Any] = Field(default_factory=dict)
    backend: str | None = None
    device: str | None = None
    versions: dict[str, str | None] = Field(default_factory=dict)
    timestamp: str | None = None
    seconds: float | None = None
    sampling: Sampling | None = None
    exported_from: ExportedFrom | None = None


class Rescored(ResultsModel):
    """Set by `score --results`: which rubric the saved scores came from, how many changed."""

    from_rubric: str
    rows_changed: int


class EvalResults(ResultsModel):
    """The results document `qmd-ft eval` writes and the gate, card and publish read."""

    format: int = RESULTS_FORMAT
    rubric_version: str
    summary: Summary | None = None
    results: list[EvalRow]
    provenance: EvalProvenance = Field(default_factory=EvalProvenance)
    rescored: Rescored | None = None

    def need_summary(self) -> Summary:
        """The summary, or a clear error for a file written without one."""
        if self.summary is None:
            raise UserError("the eval results have no summary: write them with `qmd-ft eval`")
        return self.summary


def load_results(path: str | Path) -> EvalResults:
    """Read and check a results file; one clear line when it is not one."""
    return read_document(path, EvalResults, "results")


def write_results(doc: BaseModel, path: Path) -> None:
    """Write a results document (eval, retrieval or a verdict) with the document's own keys."""
    write_document(doc, path)
