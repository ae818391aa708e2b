"""Ranking metrics with graded relevance, and a paired bootstrap for the difference of means.

Judgments grade a note 2 (answers the query) or 1 (partially relevant); unlisted notes are 0.

- recall@k: share of the judged notes (grade >= 1) found in the top k. Both grades count, so
  recall asks "did the right material surface at all".
- MRR: 1 / rank of the first judged note (0 when none is returned).
- nDCG@10: gains 2^grade - 1 (3 for an answer, 1 for a partial), log2 discount, normalised by
  the ideal ordering of all judged notes, so ranking an answer above a partial match pays.

Two systems are compared per query (same queries, same judgments) with the gates' paired
bootstrap (`qmd_ft.stats`): a fixed seed, so the same inputs always give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from qmd_ft.stats import BOOTSTRAP_SAMPLES, BOOTSTRAP_SEED, paired_delta

METRICS = ("recall@5", "recall@10", "mrr", "ndcg@10")


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """Share of notes with grade >= 1 that appear in the first k; 0 when none are judged."""
    judged = {name for name, grade in relevant.items() if grade > 0}
    if not judged:
        return 0.0
    return len(judged.intersection(ranked[:k])) / len(judged)


def reciprocal_rank(ranked: Sequence[str], relevant: Mapping[str, int]) -> float:
    """1 / position of the first note with grade >= 1, or 0 if none is ranked."""
    for position, name in enumerate(ranked, start=1):
        if relevant.get(name, 0) > 0:
            return 1.0 / position
    return 0.0


def _dcg(grades: Sequence[int]) -> float:
    return sum((2**grade - 1) / math.log2(position + 2) for position, grade in enumerate(grades))


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """DCG of the first k over the DCG of the ideal first k (exponential gains)."""
    ideal = _dcg(sorted((g for g in relevant.values() if g > 0), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return _dcg([relevant.get(name, 0) for name in ranked[:k]]) / ideal


def score_ranking(ranked: Sequence[str], relevant: Mapping[str, int]) -> dict[str, float]:
    """All four metrics for one query's ranking, keyed as in `METRICS`."""
    return {
        "recall@5": recall_at_k(ranked, relevant, 5),
        "recall@10": recall_at_k(ranked, relevant, 10),
        "mrr": reciprocal_rank(ranked, relevant),
        "ndcg@10": ndcg_at_k(ranked, relevant, 10),
    }


def mean_metrics(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each metric over per-query rows (0 for an empty set)."""
    return {m: (sum(row[m] for row in rows) / len(rows) if rows else 0.0) for m in METRICS}


def compare(
    candidate: Sequence[Mapping[str, float]],
    baseline: Sequence[Mapping[str, float]],
    n_resamples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, dict[str, float]]:
    """Per metric: mean delta (candidate - baseline), its bootstrap interval, wins and losses.

    Both sequences hold one row per query in the same order; the interval is the gate's own
    (`qmd_ft.stats.paired_delta`), so a gate reading these numbers sees the same interval.
    """
    out = {}
    for metric in METRICS:
        d = paired_delta(
            [c[metric] for c in candidate],
            [b[metric] for b in baseline],
            samples=n_resamples,
            seed=seed,
        )
        out[metric] = {
            "mean_delta": d.mean,
            "ci_low": d.ci_low,
            "ci_high": d.ci_high,
            "wins": d.wins,
            "losses": d.losses,
        }
    return out
