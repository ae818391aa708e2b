"""Eval: one expansion per eval query, scored with the rubric, saved with provenance.

A results file is what the gate compares and what a release carries, so it holds everything
needed to trust and reproduce the number: every completion and sub-score, the model's content
hash, the queries file hash, the rubric version, the generation settings, backend and versions.
`rescore` recomputes the scores from the saved completions without a model.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from qmd_ft import prompt, reward
from qmd_ft.config import EvalConfig, ServingConfig
from qmd_ft.errors import UserError
from qmd_ft.manifest import dir_sha256, file_sha256, package_versions
from qmd_ft.queries import Query

RESULTS_FORMAT = 1
RATINGS = ("Excellent", "Good", "Acceptable", "Poor", "Failed")


def model_hash(model: str) -> str | None:
    """Content hash of a local model (dir or file); None for a hub id (not on disk)."""
    p = Path(model)
    if p.is_dir():
        return dir_sha256(p)
    if p.is_file():
        return file_sha256(p)
    return None


def score_row(query: Query, completion: str) -> dict[str, Any]:
    """One results row: the query, its completion, every sub-score and why points were lost."""
    r = reward.score(query.text, completion)
    return {
        "query": query.text,
        "category": query.category,
        "completion": completion,
        **r.sub_scores(),
        "deductions": list(r.deductions),
        "entities": list(r.entities),
        "only_mode": r.only_mode,
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean reward/percentage, rating histogram and per-category means."""
    n = len(rows)
    by_cat: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        by_cat[row["category"]].append(row["reward"])
    ratings = Counter(row["rating"] for row in rows)
    return {
        "n": n,
        "mean_reward": round(sum(r["reward"] for r in rows) / n, 6) if n else 0.0,
        "mean_percentage": round(sum(r["percentage"] for r in rows) / n, 2) if n else 0.0,
        "ratings": {k: ratings.get(k, 0) for k in RATINGS},
        "categories": {c: round(sum(v) / len(v), 6) for c, v in by_cat.items()},
    }


def evaluate(
    generate: Callable[[list[str]], list[str]],
    queries: list[Query],
    gen: EvalConfig,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> list[dict[str, Any]]:
    """Generate in batches of `gen.batch_size` and score each completion."""
    rows: list[dict[str, Any]] = []
    for start in range(0, len(queries), gen.batch_size):
        batch = queries[start : start + gen.batch_size]
        completions = generate([prompt.render_prompt(q.text) for q in batch])
        if len(completions) != len(batch):
            raise RuntimeError(f"generator returned {len(completions)} for {len(batch)} prompts")
        rows.extend(score_row(q, c) for q, c in zip(batch, completions, strict=True))
        if on_batch:
            on_batch(len(batch))
    return rows


def build_results(
    rows: list[dict[str, Any]],
    *,
    model: str,
    adapters: Iterable[str],
    queries_file: Path,
    gen: EvalConfig,
    backend: str,
    device: str | None,
    seconds: float,
) -> dict[str, Any]:
    """The results document: rows, summary and provenance."""
    adapters = list(adapters)
    return {
        "format": RESULTS_FORMAT,
        "rubric_version": reward.RUBRIC_VERSION,
        "summary": summarize(rows),
        "results": rows,
        "provenance": {
            "model": model,
            "model_sha256": model_hash(model),
            "adapters": [{"path": a, "sha256": model_hash(a)} for a in adapters],
            "queries_file": str(queries_file),
            "queries_sha256": file_sha256(queries_file),
            "generation": gen.model_dump(),
            "backend": backend,
            "device": device,
            "versions": package_versions(),
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "seconds": round(seconds, 2),
        },
    }


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and sanity-check a results file; a clear error when it is not one."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise UserError(f"{p}: cannot read ({e.strerror})") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{p}: not a JSON results file ({e})") from e
    except RecursionError as e:
        raise UserError(f"{p}: not a results file (JSON nested too deeply)") from e
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        raise UserError(f"{p}: not a qmd-ft results file (no 'results' list)")
    for i, row in enumerate(data["results"]):
        if not isinstance(row, dict) or not all(
            isinstance(row.get(k), str) for k in ("query", "completion")
        ):
            raise UserError(f"{p}: results[{i}] lacks a query or completion string")
        if not isinstance(row.get("reward"), int | float):
            raise UserError(f"{p}: results[{i}] lacks a numeric reward")
    if "rubric_version" not in data:
        raise UserError(f"{p}: no rubric_version")
    return data


def rescore(data: dict[str, Any]) -> dict[str, Any]:
    """The same document re-scored with this rubric; notes which rows changed."""
    rows = []
    changed = 0
    for old in data["results"]:
        q = Query(old["query"], old.get("category", "uncategorized"), 0)
        new = score_row(q, old["completion"])
        changed += new["reward"] != old["reward"]
        rows.append(new)
    out = dict(data)
    out["results"] = rows
    out["summary"] = summarize(rows)
    out["rubric_version"] = reward.RUBRIC_VERSION
    out["rescored"] = {"from_rubric": data["rubric_version"], "rows_changed": changed}
    return out


def write_results(data: dict[str, Any], path: Path) -> None:
    """Write a results document (UTF-8, indented, stable key order)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


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
) -> dict[str, Any]:
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


def sampling_record(serving: ServingConfig) -> dict[str, Any]:
    """How a sampled eval was generated; the gate pairs only evals generated the same way."""
    return serving.model_dump(include={"temperature", "top_k", "top_p", "samples", "seed"})


def _mode_rating(ratings: list[str]) -> str:
    """The rating most samples got (ties go to the worse one): no threshold copied here."""
    counts = Counter(ratings)
    return max(RATINGS, key=lambda r: (counts.get(r, 0), RATINGS.index(r)))


def merge_samples(samples: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per query: the mean reward over the k samples, their spread, and every sample's row.

    The row's own fields (completion, sub-scores) are the first sample's, so the document
    stays readable by everything that reads one completion per query.
    """
    rows = []
    for per_query in zip(*samples, strict=True):
        rewards = [r["reward"] for r in per_query]
        mean = sum(rewards) / len(rewards)
        rows.append(
            {
                **per_query[0],
                "reward": round(mean, 6),
                "percentage": round(sum(r["percentage"] for r in per_query) / len(per_query), 2),
                "rating": _mode_rating([r["rating"] for r in per_query]),
                "reward_std": round(statistics.pstdev(rewards), 6),
                "samples": [
                    {k: r[k] for k in ("completion", "reward", "percentage", "rating")}
                    for r in per_query
                ],
            }
        )
    return rows


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
) -> dict[str, Any]:
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
    means = [sum(r["reward"] for r in run) / len(run) for run in runs] if queries else []
    doc["summary"]["samples"] = {
        "k": len(runs),
        "mean_rewards": [round(m, 6) for m in means],
        "std": round(statistics.pstdev(means), 6) if means else 0.0,
    }
    doc["provenance"]["sampling"] = sampling_record(serving)
    return doc
