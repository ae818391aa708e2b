"""Ranking metrics with graded relevance, and a paired bootstrap for the difference of means.

Judgments grade a note 2 (answers the query) or 1 (partially relevant); unlisted notes are 0.

- recall@k: share of the judged notes (grade >= 1) found in the top k. Both grades count, so
  recall asks "did the right material surface at all".
- MRR: 1 / rank of the first judged note (0 when none is returned).
- nDCG@10: gains 2^grade - 1 (3 for an answer, 1 for a partial), log2 discount, normalised by
  the ideal ordering of all judged notes, so ranking an answer above a partial match pays.

Two systems are compared per query (same queries, same judgments), so the interval is a
paired bootstrap of the mean per-query delta with a fixed seed: the same inputs always give
the same interval, which a publish gate needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

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


def paired_bootstrap(
    deltas: Sequence[float], n_resamples: int = 10_000, seed: int = 0, confidence: float = 0.95
) -> tuple[float, float]:
    """Percentile interval of the mean of paired per-query deltas.

    Queries are resampled with replacement `n_resamples` times from a seeded generator, so the
    interval is deterministic for given inputs. An interval above 0 means the candidate beats
    the baseline on this query set with the stated confidence.
    """
    import numpy as np

    values = np.asarray(deltas, dtype=np.float64)
    if values.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_resamples, values.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return (float(low), float(high))


def compare(
    candidate: Sequence[Mapping[str, float]],
    baseline: Sequence[Mapping[str, float]],
    n_resamples: int = 10_000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Per metric: mean delta (candidate - baseline), its bootstrap interval, wins and losses.

    Both sequences hold one row per query in the same order.
    """
    if len(candidate) != len(baseline):
        raise ValueError(f"paired rows differ in length: {len(candidate)} vs {len(baseline)}")
    out = {}
    for metric in METRICS:
        deltas = [c[metric] - b[metric] for c, b in zip(candidate, baseline, strict=True)]
        low, high = paired_bootstrap(deltas, n_resamples=n_resamples, seed=seed)
        out[metric] = {
            "mean_delta": sum(deltas) / len(deltas) if deltas else 0.0,
            "ci_low": low,
            "ci_high": high,
            "wins": sum(d > 0 for d in deltas),
            "losses": sum(d < 0 for d in deltas),
        }
    return out
