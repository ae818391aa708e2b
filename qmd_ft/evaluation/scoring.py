"""Scoring completions with the rubric: rows, summaries, k samples merged, re-scoring."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Callable

from qmd_ft import prompt, reward
from qmd_ft.config import EvalConfig
from qmd_ft.evaluation.results import (
    RATINGS,
    EvalResults,
    EvalRow,
    Rescored,
    SampleRow,
    Summary,
)
from qmd_ft.queries import Query


def score_row(query: Query, completion: str) -> EvalRow:
    """One results row: the query, its completion, every sub-score and why points were lost."""
    r = reward.score(query.text, completion)
    return EvalRow(
        query=query.text,
        category=query.category,
        completion=completion,
        **r.sub_scores(),
        deductions=list(r.deductions),
        entities=list(r.entities),
        only_mode=r.only_mode,
    )


def summarize(rows: list[EvalRow]) -> Summary:
    """Mean reward/percentage, rating histogram and per-category means."""
    n = len(rows)
    by_cat: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        by_cat[row.category].append(row.reward)
    ratings = Counter(row.rating for row in rows)
    return Summary(
        n=n,
        mean_reward=round(sum(r.reward for r in rows) / n, 6) if n else 0.0,
        mean_percentage=round(sum(r.percentage or 0.0 for r in rows) / n, 2) if n else 0.0,
        ratings={k: ratings.get(k, 0) for k in RATINGS},
        categories={c: round(sum(v) / len(v), 6) for c, v in by_cat.items()},
    )


def evaluate(
    generate: Callable[[list[str]], list[str]],
    queries: list[Query],
    gen: EvalConfig,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> list[EvalRow]:
    """Generate in batches of `gen.batch_size` and score each completion."""
    rows: list[EvalRow] = []
    for start in range(0, len(queries), gen.batch_size):
        batch = queries[start : start + gen.batch_size]
        completions = generate([prompt.render_prompt(q.text) for q in batch])
        if len(completions) != len(batch):
            raise RuntimeError(f"generator returned {len(completions)} for {len(batch)} prompts")
        rows.extend(score_row(q, c) for q, c in zip(batch, completions, strict=True))
        if on_batch:
            on_batch(len(batch))
    return rows


def rescore(doc: EvalResults) -> EvalResults:
    """The same document re-scored with this rubric; notes which rows changed."""
    rows = []
    changed = 0
    for old in doc.results:
        new = score_row(Query(old.query, old.category, 0), old.completion)
        changed += new.reward != old.reward
        rows.append(new)
    return doc.model_copy(
        update={
            "results": rows,
            "summary": summarize(rows),
            "rubric_version": reward.RUBRIC_VERSION,
            "rescored": Rescored(from_rubric=doc.rubric_version, rows_changed=changed),
        }
    )


def _mode_rating(ratings: list[str | None]) -> str:
    """The rating most samples got (ties go to the worse one): no threshold copied here."""
    counts = Counter(ratings)
    return max(RATINGS, key=lambda r: (counts.get(r, 0), RATINGS.index(r)))


def merge_samples(samples: list[list[EvalRow]]) -> list[EvalRow]:
    """Per query: the mean reward over the k samples, their spread, and every sample's row.

    The row's own fields (completion, sub-scores) are the first sample's, so the document
    stays readable by everything that reads one completion per query.
    """
    rows = []
    for per_query in zip(*samples, strict=True):
        rewards = [r.reward for r in per_query]
        mean = sum(rewards) / len(rewards)
        rows.append(
            per_query[0].model_copy(
                update={
                    "reward": round(mean, 6),
                    "percentage": round(
                        sum(r.percentage or 0.0 for r in per_query) / len(per_query), 2
                    ),
                    "rating": _mode_rating([r.rating for r in per_query]),
                    "reward_std": round(statistics.pstdev(rewards), 6),
                    "samples": [
                        SampleRow.model_validate(
                            r.model_dump(include={"completion", "reward", "percentage", "rating"})
                        )
                        for r in per_query
                    ],
                }
            )
        )
    return rows
