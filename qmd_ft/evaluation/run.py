"""Running an eval: a model through a backend, one expansion per query, scored and documented.

`run_eval` generates greedily once; `run_sampled_eval` scores what ships, sampled as QMD
serves it, k seeded runs merged per query. Both return the `EvalResults` document.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from qmd_ft import reward
from qmd_ft.config import EvalConfig, ServingConfig
from qmd_ft.evaluation.results import (
    RESULTS_FORMAT,
    AdapterRef,
    EvalProvenance,
    EvalResults,
    EvalRow,
    SampleSpread,
)
from qmd_ft.evaluation.scoring import evaluate, merge_samples, summarize
from qmd_ft.manifest import dir_sha256, file_sha256, package_versions
from qmd_ft.queries import Query
from qmd_ft.results import Sampling


def model_hash(model: str) -> str | None:
    """Content hash of a local model (dir or file); None for a hub id (not on disk)."""
    p = Path(model)
    if p.is_dir():
        return dir_sha256(p)
    if p.is_file():
        return file_sha256(p)
    return None


def build_results(
    rows: list[EvalRow],
    *,
    model: str,
    adapters: Iterable[str],
    queries_file: Path,
    gen: EvalConfig,
    backend: str,
    device: str | None,
    seconds: float,
) -> EvalResults:
    """The results document: rows, summary and provenance."""
    return EvalResults(
        format=RESULTS_FORMAT,
        rubric_version=reward.RUBRIC_VERSION,
        summary=summarize(rows),
        results=rows,
        provenance=EvalProvenance(
            model=model,
            model_sha256=model_hash(model),
            adapters=[AdapterRef(path=a, sha256=model_hash(a)) for a in adapters],
            queries_file=str(queries_file),
            queries_sha256=file_sha256(queries_file),
            generation=gen.model_dump(),
            backend=backend,
            device=device,
            versions=package_versions(),
            timestamp=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            seconds=round(seconds, 2),
        ),
    )


def backend_for(model: str, backend: str) -> str:
    """`auto` picks gguf for a .gguf file, else the training backend rule."""
    from qmd_ft.backend import resolve_name

    if backend == "auto" and model.endswith(".gguf"):
        return "gguf"
    return resolve_name(backend)


def run_eval(
    model: str,
    adapters: list[str],
    queries_file: Path,
    gen: EvalConfig,
    *,
    backend: str = "auto",
    device: str | None = None,
    on_batch: Callable[[int], None] | None = None,
    queries: list[Query] | None = None,
) -> EvalResults:
    """Load the model through a backend, generate, score, and build the results document."""
    from qmd_ft.backend import get_backend
    from qmd_ft.queries import read_queries

    name = backend_for(model, backend)
    queries = queries if queries is not None else read_queries(queries_file)
    generate = get_backend(name).generator(model, adapters, gen, device)
    start = time.perf_counter()
    rows = evaluate(generate, queries, gen, on_batch=on_batch)
    return build_results(
        rows,
        model=model,
        adapters=adapters,
        queries_file=queries_file,
        gen=gen,
        backend=name,
        device=device,
        seconds=time.perf_counter() - start,
    )


def sampled_settings(gen: EvalConfig, serving: ServingConfig) -> list[EvalConfig]:
    """One generation config per sample: QMD's sampling, seeds `serving.seed`, +1, ..."""
    return [
        gen.model_copy(
            update={
                "temperature": serving.temperature,
                "top_k": serving.top_k,
                "top_p": serving.top_p,
                "seed": serving.seed + i,
            }
        )
        for i in range(serving.samples)
    ]


def sampling_record(serving: ServingConfig) -> Sampling:
    """How a sampled eval was generated; the gate pairs only evals generated the same way."""
    return Sampling.model_validate(
        serving.model_dump(include={"temperature", "top_k", "top_p", "samples", "seed"})
    )


def run_sampled_eval(
    model: str,
    queries_file: Path,
    gen: EvalConfig,
    serving: ServingConfig,
    *,
    backend: str = "gguf",
    device: str | None = None,
    on_batch: Callable[[int], None] | None = None,
    queries: list[Query] | None = None,
) -> EvalResults:
    """The eval of what ships: `serving.samples` seeded sampled runs, merged per query.

    `summary.mean_reward` is the mean over queries of each query's mean over samples (what the
    gate pairs); `summary.samples` gives each run's mean reward and their standard deviation,
    so the spread of one sampled run is visible beside the mean.
    """
    from qmd_ft.backend import get_backend
    from qmd_ft.queries import read_queries

    name = backend_for(model, backend)
    queries = queries if queries is not None else read_queries(queries_file)
    settings = sampled_settings(gen, serving)
    start = time.perf_counter()
    runs = []
    for g in settings:
        generate = get_backend(name).generator(model, [], g, device)
        runs.append(evaluate(generate, queries, g, on_batch=on_batch))
    doc = build_results(
        merge_samples(runs),
        model=model,
        adapters=[],
        queries_file=queries_file,
        gen=settings[0],
        backend=name,
        device=device,
        seconds=time.perf_counter() - start,
    )
    means = [sum(r.reward for r in run) / len(run) for run in runs] if queries else []
    spread = SampleSpread(
        k=len(runs),
        mean_rewards=[round(m, 6) for m in means],
        std=round(statistics.pstdev(means), 6) if means else 0.0,
    )
    summary = doc.need_summary().model_copy(update={"samples": spread})
    provenance = doc.provenance.model_copy(update={"sampling": sampling_record(serving)})
    return doc.model_copy(update={"summary": summary, "provenance": provenance})
